"""The virtual device gives its node the node's heap budget by default (issue 13).

It used to give every node 96k (and a node on the LoRaWAN link, with a network in ``sim.json``, needed
``--heapsize 512k`` on the 64-bit interpreter). Now the app gets ``node_heap(role)`` for the role in the
device's config.json, read at every start, plus the 24k the REPL takes (C code in flash on a board).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import serial

from gateway.field.firmware_build import build_firmware
from gateway.field.flash import flash_node
from gateway.field.inventory import ROLES
from gateway.field.micropython import node_heap
from gateway.sim.nssim import NetworkServerSim
from gateway.sim.nssim.registry import device_from_mapping
from gateway.sim.virtual_device import VirtualDevice

EUI = "70B3D57ED0000013"
APP_KEY = "2B7E151628AED2A6ABF7158809CF4F3C"
REPL_KB = 24  # virtual_device._REPL_HEAP_KB


def kb(size: str) -> int:
    assert size.endswith("k"), size
    return int(size[:-1])


def write_config(fs: Path, role: str) -> None:
    fs.mkdir(parents=True, exist_ok=True)
    (fs / "config.json").write_text(json.dumps({"role": role, "board": "sim"}))


@pytest.mark.parametrize("role", ROLES)
def test_a_flashed_device_gets_its_roles_budget(tmp_path: Path, role: str) -> None:
    write_config(tmp_path, role)
    assert VirtualDevice(tmp_path).app_heap() == node_heap(role)


def test_a_device_not_yet_flashed_gets_the_largest_role_budget(tmp_path: Path) -> None:
    """`citynode flash` starts the node it wrote by a soft reset in the same interpreter, whatever role."""
    largest = max(kb(node_heap(role)) for role in ROLES)
    assert kb(VirtualDevice(tmp_path).app_heap()) == largest
    (tmp_path / "config.json").write_text("{not json")
    assert kb(VirtualDevice(tmp_path).app_heap()) == largest


def test_a_given_heapsize_wins(tmp_path: Path) -> None:
    write_config(tmp_path, "bin_fill")
    assert VirtualDevice(tmp_path, "40k").app_heap() == "40k"


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _read_until(port: serial.Serial, pattern: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while pattern not in seen and time.monotonic() < deadline:
        seen += port.read(4096)
    return seen


@pytest.mark.slow
def test_a_node_flashed_onto_a_virtual_device_joins_the_network_and_sends_at_its_budget(tmp_path: Path) -> None:
    """docs/network-engineer.md: ns-sim, `citynode virtual-device --fs vdev` with a network in sim.json,
    `citynode flash --board sim`: the self-test passes, the node joins and sends, at the default heap."""
    bundles = tmp_path / "bundles"
    bundles.mkdir(mode=0o700)
    (bundles / f"{EUI}.json").write_text(json.dumps({
        "format": "citynode-node-bundle/1", "dev_eui": EUI, "join_eui": "70B3D57ED0001000", "app_key": APP_KEY,
        "name": "budget", "role": "bin_fill", "board": "sim", "region": "EU868", "lorawan": "1.0.4",
        "intervals": {"interval": 60, "status_interval": 24}, "location": None,
    }))
    sim = NetworkServerSim([device_from_mapping(
        {"dev_eui": EUI, "join_eui": "70B3D57ED0001000", "app_key": APP_KEY, "name": "budget", "role": "bin_fill"},
        "budget")], port=0)
    handle = sim.run_in_thread()
    app = tmp_path / "app"
    build_firmware(app)
    fs = tmp_path / "vdev"
    fs.mkdir()
    (fs / "sim.json").write_text(json.dumps({"network": {"port": sim.port}, "time_scale": 5, "skip_ms": 1500}))
    try:
        with VirtualDevice(fs) as device:
            result = flash_node(device.port, "sim", EUI, bundles=bundles, app_dir=app)
            assert result.selftest is not None and result.selftest.ok, result.selftest
            with serial.Serial(device.port, timeout=0.5) as port:
                out = _read_until(port, b"uplink fport=11 ", timeout=120)
            assert b"joined" in out and b"uplink fport=11 " in out, out.decode(errors="replace")[-2000:]
            assert b"MemoryError" not in out
            assert device.pid is not None
            largest = max(kb(node_heap(role)) for role in ROLES)  # started before the flash wrote a role
            assert f"heapsize={largest + REPL_KB}k" in _cmdline(device.pid)
        assert sim.events_of("join", EUI.lower()) and sim.events_of("up", EUI.lower())
    finally:
        handle.stop()
