"""The demo's verdict per node: what it should have sent in the time it ran against what it sent.

Plain bookkeeping on :class:`gateway.sim.fleet.VirtualFleet` (no node processes): each case sets a
node's join time, uplink times and exit the way the output reader records them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.sim.fleet import VirtualFleet

T0 = 1000.0  # time.monotonic() when the nodes started


@pytest.fixture
def fleet(tmp_path: Path) -> VirtualFleet:
    # pace 120: a bus (300 s interval) cycles every 2.5 s, a bin (1800 s) every 15 s
    fleet = VirtualFleet(tmp_path, 4, ns_port=1, pace=120.0)
    for node in fleet.nodes:
        node.started_at = T0
    return fleet


def send(node, start: float, every: float, until: float) -> None:
    t = start
    while t <= until:
        node.uplink_times.append(t)
        node.uplinks += 1
        t += every


def verdict(fleet: VirtualFleet, role: str, end: float):
    return next(v for v in fleet.verdicts(end) if v.role == role)


def test_a_node_that_keeps_its_interval_is_ok(fleet):
    bus = next(n for n in fleet.nodes if n.role == "passenger_count")
    bus.interval_s, bus.joined_at = 300, T0 + 5
    send(bus, T0 + 6, 3.0, T0 + 60)
    v = verdict(fleet, "passenger_count", T0 + 60)
    assert v.ok and v.sent == bus.uplinks and v.expected == int(55 / 2.5 / 2)


def test_a_node_that_never_joined_is_named(fleet):
    v = verdict(fleet, "bin_fill", T0 + 60)
    assert not v.ok and v.problem == "never joined" and v.sent == 0


def test_a_node_that_ran_out_of_memory_is_named_with_its_error(fleet):
    aq = next(n for n in fleet.nodes if n.role == "air_quality")
    aq.exit_code, aq.ended_at, aq.last_error = 1, T0 + 1, "MemoryError: memory allocation failed"
    v = verdict(fleet, "air_quality", T0 + 60)
    assert v.problem == "crashed (exit 1: MemoryError: memory allocation failed)"


def test_a_node_that_sends_too_little_or_stops_is_named(fleet):
    bus = next(n for n in fleet.nodes if n.role == "passenger_count")
    bus.interval_s, bus.joined_at = 300, T0 + 5
    send(bus, T0 + 6, 20.0, T0 + 60)  # one every 20 s where 2.5 s is asked for
    assert verdict(fleet, "passenger_count", T0 + 60).problem == "sent 3 of at least 11 expected"
    crowd = next(n for n in fleet.nodes if n.role == "crowd_count")
    crowd.interval_s, crowd.joined_at = 300, T0 + 5  # a 2.5 s cycle
    send(crowd, T0 + 6, 2.5, T0 + 90)  # on time (the last at +88.5 s), then nothing
    assert verdict(fleet, "crowd_count", T0 + 130).problem == "stopped: nothing for 42 s"


def test_each_fleet_has_fresh_deveuis_and_tags_its_configured_interval(tmp_path):
    first, second = VirtualFleet(tmp_path / "a", 8, 1), VirtualFleet(tmp_path / "b", 8, 1)
    assert not {n.dev_eui for n in first.nodes} & {n.dev_eui for n in second.nodes}
    assert not {n.name for n in first.nodes} & {n.name for n in second.nodes}
    entry = first.registry()[0]
    assert entry["tags"]["uplink_interval_s"] == str(first.nodes[0].interval_s)
