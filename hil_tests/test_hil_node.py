"""The node, seen from its USB console: boot, config, self-test, cycles, downlinks, sleep, resets."""

from __future__ import annotations

import json

import pytest

from gateway.contract.codec import decode, encode_downlink

VERSION = r"0\.1\.0"
UPLINK = r"uplink fport=(\d+) len=(\d+) hex=([0-9a-f]+)"


def uplink(dut, fport: int) -> dict:
    """The next uplink on fport, decoded by the gateway's decoder (which rejects anything malformed)."""
    while True:
        match = dut.expect(UPLINK)
        if int(match.group(1)) == fport:
            payload = bytes.fromhex(match.group(3))
            assert len(payload) == int(match.group(2))
            return decode(fport, payload)


# ---- boot and configuration --------------------------------------------------------------------

@pytest.mark.role("bin_fill")  # expects bin_fill output: skipped on a DUT of another role
def test_boot_announces_version_role_board_and_deveui(dut) -> None:
    dut.expect(rf"citynode {VERSION} role=bin_fill board=\w+ dev_eui=[0-9A-F]{{16}}")


@pytest.mark.virtual_only
@pytest.mark.parametrize(("field", "value", "message"), [
    # config.json field, bad value, what the node must say (firmware/lib/citynode/config.py)
    ("interval", 5, r"ConfigError: config interval: expected an integer"),
    ("role", "weather", r"ConfigError: config role: expected one of air_quality, bin_fill"),
    ("dev_eui", "70B3D5", r"ConfigError: config dev_eui: expected 16 hex digits"),
    ("region", "US915", r"ConfigError: config region: only EU868 is supported"),
])
def test_a_bad_config_stops_the_boot_with_one_line_naming_the_field(dut, field: str, value, message: str) -> None:
    dut.expect(r"citynode .* role=")  # the good config boots first
    config = json.loads((dut.device.fs_dir / "config.json").read_text())
    config[field] = value
    dut.put("config.json", json.dumps(config))
    dut.reset()
    dut.expect(message)


# ---- self-test ---------------------------------------------------------------------------------

@pytest.mark.role("bin_fill")  # expects bin_fill output: skipped on a DUT of another role
def test_self_test_reads_every_sensor_once_and_the_radio_responds(dut) -> None:
    dut.expect(r">>> ", timeout=30)  # one cycle, then main.py ends and the REPL waits
    dut.write("import citynode.selftest as s; r = s.run()\n")
    report = json.loads(dut.expect(r"SELFTEST (\{.*\})").group(1))
    assert report["version"] == "0.1.0" and report["role"] == "bin_fill"
    names = [c["name"] for c in report["checks"]]
    assert names[0] == "config" and "bin_fill" in names and "radio" in names
    failed = [c for c in report["checks"] if not c["ok"]]
    assert failed == []


# ---- one cycle per role ------------------------------------------------------------------------

@pytest.mark.role("bin_fill")  # expects bin_fill output: skipped on a DUT of another role
def test_bin_fill_cycle_sends_status_then_a_plausible_fill_level(dut) -> None:
    status = uplink(dut, 1)
    assert status["type"] == "device_status"
    assert status["readings"][0]["reset_cause"] == "power_on"
    reading = uplink(dut, 11)["readings"][0]
    assert 0 <= reading["fill_level"] <= 100
    assert 20 <= reading["distance"] <= 4500  # mm: inside the ultrasonic sensors' range


@pytest.mark.role("air_quality")
def test_air_quality_cycle_sends_plausible_readings(dut) -> None:
    reading = uplink(dut, 10)["readings"][0]
    assert -40 <= reading["temperature"] <= 85  # BME680 datasheet 1.1: operating range
    assert 300 <= reading["pressure"] <= 1100  # hPa
    assert 0 <= reading["relative_humidity"] <= 100


@pytest.mark.role("passenger_count")
def test_passenger_count_cycle_sends_door_counts(dut) -> None:
    msg = uplink(dut, 12)
    assert msg["type"] == "passenger_count"
    assert msg["readings"][0]["occupancy"] >= 0


@pytest.mark.role("crowd_count")
def test_crowd_count_cycle_sends_device_counts(dut) -> None:
    reading = uplink(dut, 13)["readings"][0]
    assert reading["wifi_devices"] >= 0 and reading["ble_devices"] >= 0


# ---- downlinks, sleep, resets ------------------------------------------------------------------

def _config_downlink(settings: dict) -> dict:
    fport, data = encode_downlink(settings)
    return {"after": 1, "fport": fport, "hex": data.hex()}


@pytest.mark.virtual_only
@pytest.mark.scenario({"cycles": 2, "downlinks": [_config_downlink({"interval": 900})]})
def test_a_config_downlink_is_applied_and_saved(dut) -> None:
    dut.expect(r"downlink applied: interval")
    dut.expect(r"config saved: interval")
    dut.expect(r"sleep deep (\d+) s")
    assert json.loads((dut.device.fs_dir / "config.json").read_text())["interval"] == 900


@pytest.mark.virtual_only
@pytest.mark.scenario({"cycles": 2, "downlinks": [{"after": 1, "fport": 2, "hex": "a1186300"}]})
def test_a_bad_downlink_is_rejected_and_the_config_kept(dut) -> None:
    dut.expect(r"downlink rejected: ")
    assert json.loads((dut.device.fs_dir / "config.json").read_text())["interval"] == 3600  # the bundle's


@pytest.mark.scenario({"cycles": 2})
def test_deep_sleep_is_scheduled_for_the_rest_of_the_interval(dut) -> None:
    dut.expect(r"uplink fport=11 ")
    seconds = int(dut.expect(r"sleep deep (\d+) s").group(1))
    assert 3600 - 60 <= seconds <= 3600  # bin_fill's 3600 s interval minus the time the cycle took


@pytest.mark.virtual_only
def test_a_watchdog_reset_is_reported_in_the_next_device_status(dut) -> None:
    uplink(dut, 1)
    dut.expect(r">>> ", timeout=30)
    dut.write("import sys; sys.exit(65)\n")  # what the sim HAL's watchdog does when a cycle hangs
    status = uplink(dut, 1)["readings"][0]
    assert status["reset_cause"] == "watchdog"
    assert "watchdog" in status["faults"]


# ---- LoRaWAN through the network-server simulator ----------------------------------------------

@pytest.mark.virtual_only
@pytest.mark.network
@pytest.mark.scenario({"cycles": 1})
def test_join_through_the_network_server_simulator_then_uplink(dut, network_server) -> None:
    dut.expect(r"joined", timeout=60)
    reading = uplink(dut, 11)["readings"][0]
    assert 0 <= reading["fill_level"] <= 100
    eui = "70b3d57ed0000042"
    assert network_server.events_of("join", eui)
    assert network_server.wait_for(lambda: network_server.events_of("up", eui), timeout_s=30)
