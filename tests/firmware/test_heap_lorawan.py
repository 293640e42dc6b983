"""The node on its real budget: every role, the real LoRaWAN link (citynode's MAC over the UDP virtual
radio to the network-server simulator, `citynode device run --lorawan`), 1000 cycles, no heap growth.

Budgets (issue 13): an ESP32 without PSRAM starts MicroPython with a 64 KB heap that may grow to about
108 KB. On the 32-bit unix port with citynode frozen in (`make firmware-unix`,
build/micropython-unix32) a node must run in 64 KB; on a 32-bit build without citynode frozen
(build/micropython-unix32-stock: the .mpy files `citynode flash` copies, their bytecode in the heap)
in 108 KB. Heap sizes are deterministic (no timing in the assertions); the smallest heaps measured
are in bench/RESULTS.md (firmware heap, LoRaWAN link).

Not met, and marked so (strict: it fails the suite once it passes, so the mark cannot go stale):
every role on the stock build needs 146-149 KB (bench/RESULTS.md, "What the heap holds"): the .mpy
bytecode and the ~1,170 names it interns (23 KB of qstrs) are in the heap. What would be needed is
in docs/nodes.md ("A stock image: what the heap holds"): a ROMFS partition, measured here too.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from gateway.contract import codec
from gateway.field.firmware_build import build_romfs, built_firmware
from gateway.paths import repo_root
from gateway.sim.device_run import prepare_fs, stream_lorawan_device

FROZEN = repo_root() / "build" / "micropython-unix32" / "micropython"
STOCK = repo_root() / "build" / "micropython-unix32-stock" / "micropython"
FROZEN_BUDGET = "64k"
STOCK_BUDGET = "108k"
ROLES = ("air_quality", "bin_fill", "passenger_count", "crowd_count")
PORTS = {"air_quality": 10, "bin_fill": 11, "passenger_count": 12, "crowd_count": 13}
CYCLES = 1000
GROWTH_LIMIT = 1024  # bytes between cycle 10 and cycle 1000, as in test_heap_roles
TIME_SCALE = 100  # receive windows 100x faster than real time: 1000 cycles in about a minute
HEAP_LINE = re.compile(r"heap cycle=(\d+) alloc=(\d+) free=(\d+)")


def run_node(interpreter: Path, role: str, heapsize: str, cycles: int, romfs: bool = False) -> list[str]:
    """The node's output; ``romfs``: the device package in a ROMFS image, imported in place."""
    if not interpreter.exists():
        pytest.skip(f"{interpreter} is missing: run `make firmware-unix`")
    config = {"interval": 60} if role in ("passenger_count", "crowd_count") else None
    old = os.environ.get("CITYNODE_MICROPYTHON")
    os.environ["CITYNODE_MICROPYTHON"] = str(interpreter)
    try:
        with tempfile.TemporaryDirectory(prefix="citynode-heap-") as tmp:
            fs = Path(tmp) / "fs"
            image = build_romfs(built_firmware(), Path(tmp) / "citynode.romfs") if romfs else None
            prepare_fs(fs, role, cycles=cycles, heap_report=True, lorawan=True, config=config)
            return list(stream_lorawan_device(fs, heapsize=heapsize, time_scale=TIME_SCALE, romfs=image,
                                              downlinks=[codec.encode_downlink({"adr": True})]))
    finally:
        if old is None:
            os.environ.pop("CITYNODE_MICROPYTHON", None)
        else:
            os.environ["CITYNODE_MICROPYTHON"] = old


def check_run(lines: list[str], role: str, cycles: int) -> None:
    tail = "\n".join(lines[-15:])
    assert not any("MemoryError" in line or line.startswith("exit status") for line in lines), tail
    assert "joined" in lines, tail
    first_uplink = next(i for i, line in enumerate(lines) if line.startswith("uplink fport="))
    assert lines.index("joined") < first_uplink, "joined is printed once the Join Accept came, before any uplink"
    heap = {}
    for line in lines:
        m = HEAP_LINE.match(line)
        if m:
            heap[int(m.group(1))] = int(m.group(2))
    assert sorted(heap) == list(range(1, cycles + 1)), "a heap line per cycle"
    assert abs(heap[cycles] - heap[10]) <= GROWTH_LIMIT, f"heap cycle 10: {heap[10]} B, cycle {cycles}: {heap[cycles]} B"
    assert max(heap[c] for c in range(10, cycles + 1)) - heap[10] <= GROWTH_LIMIT
    readings = [line for line in lines if line.startswith(f"uplink fport={PORTS[role]} ")]
    assert len(readings) == cycles, "one reading uplink per cycle"
    assert "downlink applied: adr" in lines, "the config downlink came through the network"
    network = lines[-1].split()
    assert network[:2] == ["network", "joins=1"], lines[-1]
    assert int(network[2].split("=")[1]) >= cycles, "the network server received every uplink"


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_every_role_runs_1000_lorawan_cycles_in_64k_on_the_32_bit_frozen_build(role: str) -> None:
    check_run(run_node(FROZEN, role, FROZEN_BUDGET, CYCLES), role, CYCLES)


@pytest.mark.xfail(strict=True, reason="needs 146-149 KB: the .mpy bytecode is in the heap (module docstring)")
@pytest.mark.parametrize("role", ROLES)
def test_every_role_runs_lorawan_in_108k_on_a_32_bit_build_without_citynode_frozen(role: str) -> None:
    check_run(run_node(STOCK, role, STOCK_BUDGET, 20), role, 20)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_runs_lorawan_in_108k_on_the_stock_build_with_the_device_package_in_romfs(role: str) -> None:
    """What the stock budget needs: the .mpy files in a ROMFS partition (MicroPython >= 1.25), where
    their bytecode and names run in place from flash (docs/nodes.md, "A stock image")."""
    check_run(run_node(STOCK, role, STOCK_BUDGET, 20, romfs=True), role, 20)
