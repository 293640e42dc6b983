"""Puts firmware/lib and gateway/sim/mpy on sys.path so CPython-side tests can import the firmware's
citynode package and the simulation package citynode_sim (pytest runs with --import-mode=importlib, so test directories are not on sys.path by themselves)."""

from __future__ import annotations

import sys
from pathlib import Path

FIRMWARE_LIB = Path(__file__).resolve().parents[2] / "firmware" / "lib"
if str(FIRMWARE_LIB) not in sys.path:
    sys.path.insert(0, str(FIRMWARE_LIB))
SIM_LIB = Path(__file__).resolve().parents[2] / "gateway" / "sim" / "mpy"
if str(SIM_LIB) not in sys.path:
    sys.path.insert(1, str(SIM_LIB))
