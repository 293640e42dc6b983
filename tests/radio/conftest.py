"""Fixtures for the radio tests: run a snippet on MicroPython (and on CPython) with the simulators importable.

The simulators in this directory (``radiosim_*.py``) are plain Python so that the same driver code and the
same simulated chip run on the real MicroPython unix port and under CPython.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.micropython import find_micropython, run_code

HERE = Path(__file__).resolve().parent
FIRMWARE_LIB = HERE.parent.parent / "firmware" / "lib"


class Runner:
    """Runs a snippet whose last printed line is JSON, on one interpreter."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, code: str) -> str:
        if self.name == "micropython":
            return run_code(code, extra_paths=[HERE]).stdout
        env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{FIRMWARE_LIB}")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"CPython exited with {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
        return proc.stdout

    def json(self, code: str) -> Any:
        out = self.run(code).strip().splitlines()
        assert out, f"{self.name} printed nothing"
        return json.loads(out[-1])


@pytest.fixture(scope="session")
def mpy() -> Runner:
    """The real MicroPython unix port (ESP32-sized heap) with firmware/lib and the simulators on the path."""
    find_micropython()
    return Runner("micropython")


@pytest.fixture(scope="session", params=["micropython", "cpython"])
def both(request: pytest.FixtureRequest) -> Runner:
    """The same snippet on MicroPython and on CPython: the drivers must behave identically."""
    if request.param == "micropython":
        find_micropython()
    return Runner(request.param)
