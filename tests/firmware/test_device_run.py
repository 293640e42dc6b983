"""`citynode device run`: every role runs on the virtual device and its uplinks decode in the gateway."""

from __future__ import annotations

import pytest

from gateway.contract import codec
from gateway.field.micropython import node_heap
from gateway.sim.device_run import run_device

# Every node runs at its role's budget on the chosen interpreter, `citynode device run`'s default
# (node_heap: 64k on the 32-bit frozen build, 256k on the 64-bit PyPI port); the console link needs
# less than the LoRaWAN one (bench/RESULTS.md, firmware heap); the sim peripherals run on the host.

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
    run = run_device(role, cycles=3, heapsize=node_heap(role), values=VALUES.get(role))
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
    run = run_device("passenger_count", cycles=4, heapsize=node_heap("passenger_count"))
    readings = [codec.decode(p, d)["readings"][0] for p, d in run.uplinks if p == 12]
    assert sum(door["boardings"] for r in readings for door in r["doors"]) > 0, readings
    assert all("latitude" in r and "longitude" in r for r in readings), readings


def test_deep_sleep_roles_schedule_the_next_slot() -> None:
    run = run_device("bin_fill", cycles=2, heapsize=node_heap("bin_fill"))
    assert "sleep deep 3600 s" in run.lines


def test_bad_config_stops_at_boot_naming_the_field(tmp_path) -> None:
    run = run_device("bin_fill", cycles=1, heapsize=node_heap("bin_fill"), config={"interval": 30})
    assert run.lines[0].startswith("ConfigError: config interval: expected an integer 60..86400, got 30")
    assert not run.uplinks


# ---- --lorawan: the real MAC over the virtual radio to a network-server simulator ------------------

def _citynode(*args: str):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=240, env=dict(os.environ))


def test_lorawan_run_joins_through_the_simulator_then_sends_and_gets_a_config_downlink() -> None:
    # no --heapsize: the node runs at its role's budget (node_heap), the command's default
    proc = _citynode("device", "run", "--board", "sim", "--role", "bin_fill", "--lorawan", "--cycles", "3",
                     "--decode")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    uplinks = [i for i, line in enumerate(lines) if line.startswith("uplink fport=")]
    assert lines.count("joined") == 1 and lines.index("joined") < uplinks[0]
    assert len([i for i in uplinks if lines[i].startswith("uplink fport=11 ")]) == 3
    assert "downlink applied: adr" in lines
    assert lines[-1].startswith("network joins=1 uplinks=4 ")  # status + 3 readings, all received


def test_lorawan_run_never_says_joined_without_a_join_accept(tmp_path) -> None:
    """A node whose AppKey the network does not know: its join-requests fail the MIC check, no Join
    Accept comes, and the node says so instead of `joined`."""
    import json

    from gateway.sim.device_run import prepare_fs, stream_device
    from gateway.sim.nssim import NetworkServerSim
    from gateway.sim.nssim.registry import DeviceKeys

    prepare_fs(tmp_path, "bin_fill", cycles=1, lorawan=True)
    cfg = json.loads((tmp_path / "config.json").read_text())
    real_key = cfg["app_key"]
    cfg["app_key"] = "00" * 16  # the node sends under a key the network does not know
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    server = NetworkServerSim([DeviceKeys(dev_eui=cfg["dev_eui"], join_eui=cfg["join_eui"],
                                          app_key=bytes.fromhex(real_key))], port=0)
    handle = server.run_in_thread()
    try:
        scenario = json.loads((tmp_path / "sim.json").read_text())
        scenario.update(network={"port": server.port}, time_scale=100, skip_ms=1500)
        (tmp_path / "sim.json").write_text(json.dumps(scenario))
        out = list(stream_device(tmp_path, heapsize=node_heap(), timeout=120))
    finally:
        handle.stop()
    assert "joined" not in out
    assert any(line.startswith("join") and "no join-accept" in line for line in out), out[-10:]
    assert not server.events_of("join")


@pytest.mark.parametrize(("args", "message"), [
    (["--cycles", "0"], "--cycles: expected at least 1"),
    (["--lorawan", "--board", "heltec_wifi_lora_32_v3"], "heltec_wifi_lora_32_v3 is a real board"),
    (["--board", "sim_rak3172"], "--board sim_rak3172: its AT modem needs a network; add --lorawan"),
    (["--values", "/nonexistent/values.json"], "--values /nonexistent/values.json"),
])
def test_device_run_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = _citynode("device", "run", "--role", "bin_fill", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr
