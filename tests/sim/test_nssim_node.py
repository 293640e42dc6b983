"""A real node (citynode ClassA MAC on the MicroPython unix port, UdpRadio) against the network-server simulator.

Time runs 20x faster on the node (nssim_harness.SCALE): RX1 at 1 s node time is 50 ms real, and the
simulator answers in real time through the same UDP sockets. Each test starts its own simulator and node.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chirpstack_api import integration
from google.protobuf import json_format

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nssim_harness import KEYS, SimNode, compile_firmware

from gateway.contract import codec
from gateway.sim.nssim import NetworkServerSim, SimHandle

EUI = KEYS.dev_eui


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_firmware(tmp_path_factory.mktemp("nssim-mpy"))


@pytest.fixture
def sim() -> Iterator[NetworkServerSim]:
    s = NetworkServerSim([KEYS], port=0)
    handle: SimHandle = s.run_in_thread()
    yield s
    handle.stop()


@pytest.fixture
def node(lib: Path, sim: NetworkServerSim) -> Iterator[SimNode]:
    n = SimNode(lib, sim.port, adr_ack_limit=4, adr_ack_delay=2)
    yield n
    n.close()


def uplinks(sim: NetworkServerSim) -> list[dict]:
    return [e.fields for e in sim.log if e.kind == "uplink"]


def test_join_then_uplink_becomes_a_chirpstack_up_event_with_the_payload_intact(
    sim: NetworkServerSim, node: SimNode
) -> None:
    r = node.join()
    assert r["ok"] and r["joined"], r
    payload = codec.encode_uplink("air_quality", {"temperature": 21.5, "relative_humidity": 48.0})
    node.send(10, payload)

    (join,) = sim.events_of("join", EUI)
    assert join.message.dev_addr == r["dev_addr"]
    (up,) = sim.events_of("up", EUI)
    doc = json.loads(up.json())  # ChirpStack's JSON marshaling, as the HTTP/MQTT integrations send it
    assert doc["deviceInfo"]["devEui"] == EUI
    assert doc["deviceInfo"]["deviceProfileName"] == "citynode-air_quality"
    assert doc["deviceInfo"]["tags"] == {"role": "air_quality"}
    assert doc["devAddr"] == r["dev_addr"]
    assert doc["fPort"] == 10 and doc.get("fCnt", 0) == 0 and doc["adr"] is True
    assert doc["dr"] == r["dr"]
    assert doc["txInfo"]["modulation"]["lora"] == {
        "bandwidth": 125000, "spreadingFactor": r["sf"], "codeRate": "CR_4_5"}
    assert doc["rxInfo"][0]["gatewayId"] == sim.gateway_id and doc["rxInfo"][0]["rssi"] == -80
    assert doc["deduplicationId"] and doc["time"]
    data = base64.b64decode(doc["data"])
    assert data == payload
    assert codec.decode(doc["fPort"], data)["readings"][0]["temperature"] == 21.5
    # The JSON parses back into the protobuf message a ChirpStack consumer would get.
    assert json_format.Parse(up.json(), integration.UplinkEvent()).data == payload


def test_config_downlink_on_fport_2_reaches_the_node(sim: NetworkServerSim, node: SimNode) -> None:
    assert node.join()["ok"]
    fport, data = codec.encode_downlink({"interval": 600})
    item = sim.queue_downlink(EUI, fport, data)
    r = node.send(10, b"\x01")
    assert r["dl"]["port"] == 2 and bytes.fromhex(r["dl"]["hex"]) == data and r["dl"]["window"] == 1
    (txack,) = sim.events_of("txack", EUI)
    assert txack.message.queue_item_id == item


def test_confirmed_downlink_is_acknowledged_in_the_next_uplink(sim: NetworkServerSim, node: SimNode) -> None:
    assert node.join()["ok"]
    item = sim.queue_downlink(EUI, 2, b"\x82\x01\xa0", confirmed=True)
    assert node.send(10, b"\x01")["dl"]["confirmed"] is True
    node.send(10, b"\x02")
    (ack,) = sim.events_of("ack", EUI)
    assert ack.message.queue_item_id == item and ack.message.acknowledged is True


def test_link_adr_req_changes_the_data_rate_and_adr_brings_it_back(sim: NetworkServerSim, node: SimNode) -> None:
    assert node.join()["sf"] == 7  # the first join-request goes out at DR5
    node.send(10, b"\x01")  # ADR: SNR 7 dB at SF7 leaves 4.5 dB of margin -> one step: TXPower 1
    sim.queue_mac(EUI, "LinkADRReq", {"data_rate": 3, "tx_power": 1, "ch_mask": 0x00FF, "nb_trans": 1})
    r = node.send(10, b"\x02")
    assert r["dr"] == 3 and r["sf"] == 9
    node.send(10, b"\x03")  # LinkADRAns; SNR 5 dB at SF9: 7.5 dB margin -> two steps up to DR5
    r = node.send(10, b"\x04")
    sfs = [u["sf"] for u in uplinks(sim)]
    assert sfs == [7, 7, 9, 7], sfs
    assert r["dr"] == 5
    assert sim.devices[EUI].session.dr == 5  # the simulator applied it once the device acknowledged


def test_confirmed_uplink_gets_an_ack(sim: NetworkServerSim, node: SimNode) -> None:
    assert node.join()["ok"]
    r = node.send(11, b"\x10\x20", confirmed=True)
    assert r["dl"]["ack"] is True
    (up,) = sim.events_of("up", EUI)
    assert up.message.confirmed is True


def test_link_check_device_time_and_device_status(sim: NetworkServerSim, node: SimNode) -> None:
    assert node.join()["ok"]
    node.cmd("link_check")
    node.cmd("device_time")
    sim.queue_mac(EUI, "DevStatusReq")
    r = node.send(10, b"\x01")
    # LinkCheckAns: SNR 7 dB at SF7 (floor -7.5 dB) -> margin 14 dB, one gateway (LoRaWAN 1.0.4 §5.2)
    assert r["link_check"] == [14, 1] and r["device_time"] is True
    node.send(10, b"\x02")  # carries DevStatusAns
    (status,) = sim.events_of("status", EUI)
    assert status.message.battery_level == pytest.approx(200 / 254 * 100, abs=0.01)
    assert status.message.external_power_source is False


def test_rx_timing_and_rx_param_setup_take_effect_on_both_sides(sim: NetworkServerSim, node: SimNode) -> None:
    assert node.join()["ok"]
    sim.queue_mac(EUI, "RXTimingSetupReq", {"delay_s": 2})
    sim.queue_mac(EUI, "RXParamSetupReq", {"rx1_dr_offset": 1, "rx2_data_rate": 3, "frequency_hz": 869525000})
    node.send(10, b"\x01")
    r = node.send(10, b"\x02")  # answers (sticky until a downlink): the simulator answers with a downlink
    assert r["rx1_delay_ms"] == 2000 and r["rx2_dr"] == 3
    s = sim.devices[EUI].session
    assert (s.rx1_delay_s, s.rx1_dr_offset, s.rx2_dr) == (2, 1, 3)
    sim.queue_downlink(EUI, 2, b"\x01")
    r = node.send(10, b"\x03")  # the downlink now comes 2 s after the uplink, one DR lower
    assert r["dl"]["port"] == 2


@pytest.mark.slow
def test_link_loss_adr_backoff_then_rejoin_with_a_fresh_devnonce(sim: NetworkServerSim, node: SimNode) -> None:
    first = node.join()
    assert first["ok"]
    node.send(10, b"\x01")  # ADR lowers the power one step (TXPower 1)
    sim.link_loss(1000, EUI)
    sent = 0
    r = {"joined": True}
    while r["joined"] and sent < 40:
        r = node.send(10, b"\x02")
        sent += 1
    assert not r["joined"], "the node never gave up its session"
    # ADR backoff with ADR_ACK_LIMIT 4, ADR_ACK_DELAY 2 (the test node's region): full power at 6 uplinks
    # without a downlink, then one DR down every 2, DR0 (SF12) at 16, session dropped at 4 + 10 * 2 = 24.
    assert sent == 24
    lost = [e.fields for e in sim.log if e.kind == "dropped" and "link loss" in e.reason]
    sfs = [f["sf"] for f in lost[:24]]
    assert sfs == [7] * 8 + [8, 8, 9, 9, 10, 10, 11, 11] + [12] * 8, sfs
    assert lost[24]["sf"] == 8  # then a join-request (second DevNonce: DR4), also lost
    sim.link_loss(0, EUI)
    r = node.join(attempts=3)
    assert r["ok"] and r["devnonce_next"] == 3
    joins = [e.fields for e in sim.log if e.kind == "join"]
    assert [j["dev_nonce"] for j in joins] == [0, 2]
    assert r["dev_addr"] != first["dev_addr"]
    node.send(10, b"\x03")
    assert len(sim.events_of("join", EUI)) == 2 and sim.events_of("up", EUI)[-1].message.data == b"\x03"


def test_wrong_appkey_join_is_rejected_and_the_node_hears_nothing(lib: Path, sim: NetworkServerSim) -> None:
    with SimNode(lib, sim.port, app_key=bytes(16)) as n:
        r = n.join()
    assert r["ok"] is False and r["joined"] is False
    # What the technician sees on the node: nothing came back, and where it listened.
    assert re.fullmatch(r"join: no join-accept for DevNonce 0 in RX1 \(868[135]00000 Hz DR5\) "
                        r"or RX2 \(869525000 Hz DR0\)", r["error"]), r["error"]
    (entry,) = [e for e in sim.log if e.kind == "join-rejected"]
    assert "MIC mismatch (wrong AppKey" in entry.reason
    (log_ev,) = sim.events_of("log", EUI)
    assert integration.LogCode.Name(log_ev.message.code) == "OTAA"


def test_a_network_answering_too_late_misses_the_receive_windows(lib: Path) -> None:
    s = NetworkServerSim([KEYS], port=0, answer_delay_ms=1000)  # 1 s backhaul: RX1/RX2 are 0.25/0.3 s away
    with s.run_in_thread(), SimNode(lib, s.port) as n:
        r = n.join()
        assert r["ok"] is False
        assert [e.kind for e in s.log] == ["join"]  # the simulator did answer, too late


def test_join_backoff_is_reported_when_the_node_may_not_wait(lib: Path, sim: NetworkServerSim) -> None:
    sim.link_loss(2, EUI)  # two join-requests are lost
    with SimNode(lib, sim.port) as n:
        assert n.join(attempts=2)["ok"] is False  # DR5, then DR4: ~0.1 s on air, 1 % back-off -> ~10 s off
        r = n.cmd("join", wait=False)  # 6 s later: the join back-off (LoRaWAN 1.0.4 §7) forbids it
    assert re.fullmatch(r"DutyCycleWait: duty cycle: next transmission allowed in \d+ ms", r["exception"]), r


def test_new_channel_dl_channel_and_duty_cycle_requests(sim: NetworkServerSim, node: SimNode) -> None:
    assert node.join()["ok"]
    sim.queue_mac(EUI, "NewChannelReq", {"ch_index": 8, "frequency_hz": 868800000, "min_dr": 0, "max_dr": 5})
    sim.queue_mac(EUI, "DutyCycleReq", {"max_duty_cycle": 1})
    sim.queue_mac(EUI, "DlChannelReq", {"ch_index": 8, "frequency_hz": 869100000})
    sim.queue_mac(EUI, "LinkADRReq", {"data_rate": 5, "tx_power": 0, "ch_mask": 0x0100, "nb_trans": 1})
    node.send(10, b"\x01")
    r = node.send(10, b"\x02")  # on channel 8 with the answers; DlChannelAns is repeated until a downlink
    assert r["ch_mask"] == 0x0100 and r["max_dcycle"] == 1
    s = sim.devices[EUI].session
    assert s.channels[8] == 868800000 and s.ch_mask == 0x0100 and s.dl_freqs == {8: 869100000}
    sim.queue_downlink(EUI, 2, b"\x05")
    r = node.send(10, b"\x03")
    assert r["dl"]["port"] == 2 and r["radio_event"].startswith("rx 14 bytes at 869100000 Hz SF7"), r
    assert [u["freq_hz"] for u in uplinks(sim)][1:] == [868800000, 868800000]


def test_join_and_downlinks_in_rx2(lib: Path) -> None:
    s = NetworkServerSim([KEYS], port=0, rx_window=2)
    with s.run_in_thread(), SimNode(lib, s.port) as n:
        assert n.join()["ok"]
        r = n.send(10, b"\x01", confirmed=True)
    assert r["dl"]["ack"] is True and r["dl"]["window"] == 2
    assert r["radio_event"].startswith("rx 18 bytes at 869525000 Hz SF12")  # ACK + LinkADRReq (ADR)


def test_several_nodes_share_the_simulator(lib: Path) -> None:
    keys = [type(KEYS)(f"70b3d57ed00600{i:02x}", KEYS.join_eui, bytes([i]) * 16, f"n{i}") for i in range(1, 4)]
    s = NetworkServerSim(keys, port=0)
    nodes = []
    with s.run_in_thread():
        try:
            for k in keys:
                nodes.append(SimNode(lib, s.port, k))
            for n in nodes:
                assert n.join()["ok"]
            for i, n in enumerate(nodes):
                n.send(10, bytes([i]))
        finally:
            for n in nodes:
                n.close()
    ups = {e.dev_eui: e.message.data for e in s.events_of("up")}
    assert ups == {k.dev_eui: bytes([i]) for i, k in enumerate(keys)}
    assert len({e.message.dev_addr for e in s.events_of("join")}) == 3
