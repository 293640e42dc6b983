"""Every HAL and environment-driver module imports on CPython (tools and tests) and on the
MicroPython unix port; none imports machine/busio/board at module level."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import env_sim_paths

MODULES = [
    "citynode.hal", "citynode.hal.mpy", "citynode.hal.cpy", "citynode.hal.cpy_bme680", "citynode_sim.sim",
    "citynode_sim.simbus", "citynode_sim.simio", "citynode_sim.simdev", "citynode_sim.simcrowd", "citynode_sim.sim_bme680",
    "citynode_sim.simuart", "citynode_sim.simextra", "citynode_sim.simrtc", "citynode_sim.simble", "citynode_sim.simtransit", "citynode_sim.simpm",
    "citynode_sim.simdistance", "citynode_sim.simrandom", "citynode_sim.simlink",
    "citynode.drivers", "citynode.drivers.bme680", "citynode.drivers.bme680_calc", "citynode.drivers.bme680_float",
    "citynode.drivers.particulate", "citynode.drivers.sds011", "citynode.drivers.pms5003", "citynode.drivers.distance",
    "citynode.drivers.hcsr04",
    "citynode.drivers.a02yyuw", "citynode.drivers.battery", "citynode.drivers.bin",
]


def test_the_list_covers_every_module():
    lib = env_sim_paths.FIRMWARE_LIB
    owned = {"__init__", "bme680", "bme680_calc", "bme680_float", "particulate", "sds011", "pms5003", "distance",
             "hcsr04", "a02yyuw", "battery", "bin"}
    found = {f"citynode.hal.{p.stem}" for p in (lib / "citynode" / "hal").glob("*.py") if p.stem != "__init__"}
    found |= {f"citynode.drivers.{p.stem}" for p in (lib / "citynode" / "drivers").glob("*.py") if p.stem in owned - {"__init__"}}
    found |= {f"citynode_sim.{p.stem}" for p in (env_sim_paths.SIM_LIB / "citynode_sim").glob("sim*.py")}
    assert found <= set(MODULES)


HARDWARE = {"machine", "busio", "board", "digitalio", "analogio", "alarm", "microcontroller", "pulseio", "keypad"}


@pytest.mark.parametrize("module", MODULES)
def test_imports_on_cpython_without_hardware_modules_at_top_level(module):
    mod = importlib.import_module(module)
    tree = ast.parse(Path(mod.__file__).read_text())
    top_level = set()
    for node in tree.body:  # module-level statements only: lazy imports inside functions are the point
        if isinstance(node, ast.Import):
            top_level |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
    assert not top_level & HARDWARE, f"{module} imports {top_level & HARDWARE} at module level"


@pytest.mark.parametrize("module", MODULES)
def test_imports_on_micropython(micropython, module):
    code = f"""
import sys
import {module}
print(int(any(m in sys.modules for m in ("machine", "busio", "board"))))
"""
    assert micropython.eval_json(code) == 0
