"""Shared fixtures: the real MicroPython unix port, and the checkout's paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.micropython import MicroPythonNotFound, find_micropython, run_code

ROOT = Path(__file__).resolve().parent.parent


class MicroPython:
    """Runs snippets on the real ``micropython`` unix port with the firmware importable.

    ``run`` returns stdout; ``eval_json`` runs code whose last printed line is JSON and returns it.
    A failing run raises with MicroPython's stdout and stderr in the message.
    """

    def __init__(self, heapsize: str = "96k") -> None:
        self.heapsize = heapsize

    def run(self, code: str, *, stdin: str | None = None, timeout: float = 60.0, cwd: Path | None = None) -> str:
        return run_code(code, heapsize=self.heapsize, stdin=stdin, timeout=timeout, cwd=cwd).stdout

    def eval_json(self, code: str, **kwargs: Any) -> Any:
        out = self.run(code, **kwargs).strip().splitlines()
        assert out, "MicroPython printed nothing"
        return json.loads(out[-1])


@pytest.fixture(scope="session")
def micropython() -> MicroPython:
    """The MicroPython unix port with an ESP32-sized heap. Fails (never skips) when it is missing."""
    try:
        find_micropython()
    except MicroPythonNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    return MicroPython()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
