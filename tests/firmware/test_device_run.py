"""`citynode device run`: every role runs on the virtual device and its uplinks decode in the gateway."""

from __future__ import annotations

import pytest

from gateway.contract import codec
from gateway.sim.device_run import VIRTUAL_DEVICE_HEAP, run_device

# The app's bytecode is held in RAM on the unix port (an ESP32 build freezes it into flash), and the
# unix port is 64-bit: twice the bytes per object of an ESP32; the sim peripherals run on the host.
# Every role fits in `citynode device run`'s default heap, 96k (crowd_count, with its 8 KB of anonymiser
# sets, needs the most: 91k); tests/firmware/test_heap_roles.py runs each for 1000 cycles and
# bench/RESULTS.md has the figures.
HEAP = VIRTUAL_DEVICE_HEAP

PLAUSIBLE = {
    "air_quality": lambda r: -40 <= r["temperature"] <= 85 and 300 <= r["pressure"] <= 1100,
    "bin_fill": lambda r: 0 <= r["fill_level"] <= 100 and r["distance"] > 0,
    "passenger_count": lambda r: (
        r["interval"] > 0 and r["occupancy"] >= 0 and len(r["doors"]) >= 1
        and 51.50 <= r["latitude"] <= 51.58 and 7.05 <= r["longitude"] <= 7.12  # Gelsenkirchen
    ),
    "crowd_count": lambda r: r["interval"] > 0,
}
VALUES = {"bin_fill": {"distance_mm": [850, 845, 852, 848, 850]}}
PORTS = {"air_quality": 10, "bin_fill": 11, "passenger_count": 12, "crowd_count": 13}


@pytest.mark.parametrize("role", sorted(PLAUSIBLE))
def test_role_produces_decodable_uplinks(role: str) -> None:
    run = run_device(role, cycles=3, heapsize=HEAP, values=VALUES.get(role))
    assert run.returncode == 0, "\n".join(run.lines)
    assert run.lines[0].startswith(f"citynode 0.1.0 role={role} board=sim")
    ports = [fport for fport, _ in run.uplinks]
    assert ports[0] == 1, "a device_status uplink comes first after power-on"
    readings = [codec.decode(fport, data) for fport, data in run.uplinks if fport == PORTS[role]]
    assert len(readings) == 3
    for decoded in readings:
        assert decoded["type"] == role
        reading = decoded["readings"][0]
        assert 3.0 <= reading["battery"] <= 4.3
        assert PLAUSIBLE[role](reading), reading


def test_passengers_are_counted_over_a_few_cycles() -> None:
    run = run_device("passenger_count", cycles=4, heapsize=HEAP)
    readings = [codec.decode(p, d)["readings"][0] for p, d in run.uplinks if p == 12]
    assert sum(door["boardings"] for r in readings for door in r["doors"]) > 0, readings
    assert all("latitude" in r and "longitude" in r for r in readings), readings


def test_deep_sleep_roles_schedule_the_next_slot() -> None:
    run = run_device("bin_fill", cycles=2, heapsize=HEAP)
    assert "sleep deep 3600 s" in run.lines


def test_bad_config_stops_at_boot_naming_the_field(tmp_path) -> None:
    run = run_device("bin_fill", cycles=1, heapsize=HEAP, config={"interval": 30})
    assert run.lines[0].startswith("ConfigError: config interval: expected an integer 60..86400, got 30")
    assert not run.uplinks
