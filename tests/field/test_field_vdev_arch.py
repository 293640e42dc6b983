"""The virtual device times its SIGINTs from the system call the interpreter waits in, numbered by the
interpreter's own architecture: a 32-bit (i386) build on an x86_64 host makes i386 system calls."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from gateway.field.micropython import find_micropython, interpreter
from gateway.sim.virtual_device import _WAIT_SYSCALLS, _syscall, interpreter_arch


def test_the_architecture_comes_from_the_interpreter_not_the_host() -> None:
    info = interpreter()
    arch = interpreter_arch(info.path)
    if os.uname().machine == "x86_64":
        assert arch == ("i386" if info.bits == 32 else "x86_64")
    assert arch in _WAIT_SYSCALLS, f"no system-call table for {arch}"


@pytest.mark.parametrize(("code", "what"), [
    ("import time\ntime.sleep(5)", "time.sleep"),
    ("import time\ntime.sleep_ms(5000)", "time.sleep_ms"),
    ("import sys\nsys.stdin.read(1)", "read"),
])
def test_the_interpreter_waits_in_a_system_call_of_its_table(code: str, what: str) -> None:
    read_nr, waits = _WAIT_SYSCALLS[interpreter_arch(find_micropython())]
    proc = subprocess.Popen([find_micropython(), "-c", code], stdin=subprocess.PIPE, cwd="/")
    try:
        nr = None
        for _ in range(100):  # the interpreter starts, then blocks
            time.sleep(0.05)
            nr = _syscall(proc.pid)
            if nr is None:
                pytest.skip("/proc/<pid>/syscall is not readable here")
            if (what == "read" and nr == read_nr) or (what != "read" and nr in waits):
                break
        assert (nr == read_nr) if what == "read" else (nr in waits), f"{what}: system call {nr}"
    finally:
        proc.kill()
        proc.wait()
