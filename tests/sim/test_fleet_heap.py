"""The demo fleet's nodes run at their role's heap budget, nothing added (issue 13).

The fleet used to give each node its budget plus 64 KB: at the bare budget every demo node ran out of
memory in its first cycles (``MemoryError`` in ``session.encode_record``, 64 KB on the 32-bit frozen
build). The cause was the fleet, not the firmware: it started its nodes without a
:class:`~gateway.sim.simhost.SimHost`, so the sim board's simulators (sensor register maps, transit,
WiFi and BLE populations) ran inside each node and took 7-15 KB of its heap that a board never spends
(resident after a cycle: 50-62 KB instead of 42-55 KB). ``citynode device run`` and the heap tests
(tests/firmware/test_heap_lorawan.py) always ran them on the host.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.contract import codec
from gateway.field.micropython import node_heap
from gateway.sim.demo import DEMO_DOWNLINK
from gateway.sim.fleet import DEFAULT_MIX, VirtualFleet
from gateway.sim.nssim import NetworkServerSim
from gateway.sim.nssim.registry import device_from_mapping

CYCLES = 8
HEAP_LINE = re.compile(r"heap cycle=(\d+) alloc=(\d+) free=(\d+)")


def test_every_fleet_node_gets_its_roles_budget_and_nothing_more(tmp_path: Path) -> None:
    fleet = VirtualFleet(tmp_path, 8, ns_port=1)
    assert {node.role for node in fleet.nodes} == set(DEFAULT_MIX)
    for node in fleet.nodes:
        assert fleet.heap(node) == node_heap(node.role)


def test_a_given_heapsize_overrides_the_budget_for_every_node(tmp_path: Path) -> None:
    fleet = VirtualFleet(tmp_path, 4, ns_port=1, heapsize="24k")
    assert [fleet.heap(node) for node in fleet.nodes] == ["24k"] * 4


@pytest.mark.slow
def test_one_node_per_role_runs_the_demos_cycles_and_config_downlink_at_its_bare_budget(tmp_path: Path) -> None:
    """Each role joins, takes the demo's config downlink (the counters) and runs its cycles at the
    demo's pace with ``-X heapsize=node_heap(role)``: no MemoryError, one heap line per cycle."""
    sim = NetworkServerSim([], port=0)
    handle = sim.run_in_thread()
    try:
        # pace 300 with 300 s intervals: a cycle a second (the demo: pace 120, intervals 300-3600 s)
        fleet = VirtualFleet(tmp_path, len(DEFAULT_MIX), sim.port, pace=300.0, seed=0x13)
        for node in fleet.nodes:
            node.interval_s = 300
        for i, entry in enumerate(fleet.registry()):
            sim.add_device(device_from_mapping(entry, f"node {i}"))
        fleet.prepare()
        for node in fleet.nodes:
            scenario = json.loads((node.fs / "sim.json").read_text())
            scenario.update(cycles=CYCLES, heap_report=True)
            (node.fs / "sim.json").write_text(json.dumps(scenario))
            if node.role in ("passenger_count", "crowd_count"):  # as the demo: a new interval
                sim.queue_downlink(node.dev_eui, *codec.encode_downlink(DEMO_DOWNLINK))
        fleet.start()
        try:
            for node in fleet.nodes:
                assert node.process is not None
                node.process.wait(timeout=300)
        finally:
            fleet.stop()
    finally:
        handle.stop()
    for node in fleet.nodes:
        lines = list(node.lines)
        tail = f"{node.role}:\n" + "\n".join(lines[-12:])
        assert node.process is not None and f"heapsize={node_heap(node.role)}" in node.process.args, tail
        assert node.process.returncode == 0 and not node.last_error, tail
        assert not any("MemoryError" in line for line in lines), tail
        assert "joined" in lines, tail
        cycles = [int(m.group(1)) for line in lines if (m := HEAP_LINE.match(line))]
        assert cycles == list(range(1, CYCLES + 1)), tail
        if node.role in ("passenger_count", "crowd_count"):
            assert "downlink applied: interval" in lines, tail
