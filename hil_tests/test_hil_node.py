"""The node, seen from its USB console: boot, config, self-test, cycles, downlinks, sleep, resets."""

from __future__ import annotations

import json
import re

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


# ---- an update over the air --------------------------------------------------------------------

@pytest.mark.virtual_only
@pytest.mark.network
@pytest.mark.fuota
@pytest.mark.scenario({})  # runs until the test ends (a reboot into the new version included)
def test_an_update_over_the_air_is_installed_rebooted_into_confirmed_and_reported(
        dut, network_server, fuota_update) -> None:
    """A deployment through the ChirpStack API simulator's FuotaService, carried out by the network-server
    simulator with 10 % of the fragments lost: the node takes the Class C session, checks the signed
    package, installs it in a slot, reboots into it, passes its self-test and reports the new version
    and `update: installed` in its device_status; ChirpStack sees the device complete and tags it."""
    from chirpstack_api import api

    from gateway.field import fuota_deploy
    from gateway.field.chirpstack_client import ChirpStackClient
    from gateway.field.provision import desired_profile, load_codec_script
    from gateway.sim.chirpstack import DEFAULT_TENANT_ID, ChirpStackSimulator
    from gateway.sim.nssim.fuota import FuotaRunner

    eui, scale, interval_s = fuota_update["dev_eui"], fuota_update["scale"], fuota_update["interval_s"]
    target = fuota_update["target"]
    dut.expect(r"joined", timeout=60)
    with ChirpStackSimulator(token="hil") as api_sim, ChirpStackClient(api_sim.address, "hil") as cs:
        runner = FuotaRunner(api_sim.state, network_server, uplink_interval_s=4.0 * interval_s / scale,
                             session_lead_s=3.0 * interval_s, fragment_spacing_s=5.0, fragment_loss=0.1,
                             exact_loss=True, seed=1, node_time_scale=scale).attach()
        try:
            app = cs.create_application(api.Application(tenant_id=DEFAULT_TENANT_ID, name="hil"))
            profile = cs.create_device_profile(desired_profile(DEFAULT_TENANT_ID, "bin_fill", load_codec_script()))
            cs.create_device(api.Device(dev_eui=eui, name="dut", application_id=app, device_profile_id=profile))
            key = fuota_update["app_key"]
            cs.create_keys(api.DeviceKeys(dev_eui=eui, nwk_key=key, app_key=key,
                                          gen_app_key=fuota_update["gen_app_key"]))
            [(dep, _profile, _n)] = fuota_deploy.deploy(cs, fuota_update["package"], app, list(cs.list_devices(app)),
                                                        redundancy_pct=100, target=target)
            dut.expect(r"update received \(\d+ bytes\): rebooting to check and install it", timeout=120)
            dut.expect(rf"update {re.escape(target)} installed in slot [ab]", timeout=60)  # the boot step
            dut.expect(r"update confirmed", timeout=60)
            status = uplink(dut, 1)["readings"][0]
            assert status["firmware"] == target and status["update"] == "installed"
            runner.wait(dep, timeout_s=120)
            [row] = cs.list_fuota_devices(dep)
            assert row.error_msg == "" and row.HasField("completed_at")
            assert cs.get_device(eui).tags["app_version"] == target  # type: ignore[union-attr]
            sent, dropped = runner.fragments_sent(dep)
            assert dropped[eui] == round(0.1 * (sent[eui] + dropped[eui]))
        finally:
            runner.close()
