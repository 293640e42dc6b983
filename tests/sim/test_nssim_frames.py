"""The simulator's join server and frame checks, frame by frame, with a hand-driven device on CPython.

The device builds its frames with the firmware's own ``frames`` module and talks through the same
UdpRadio the nodes use (it runs on CPython too).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chirpstack_api import integration

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nssim_harness import KEYS, PyDevice

from gateway.errors import ConfigError
from gateway.sim.nssim import NetworkServerSim
from gateway.sim.nssim._firmware import frames, maccmd, udp

EUI = KEYS.dev_eui


@pytest.fixture
def sim() -> Iterator[NetworkServerSim]:
    s = NetworkServerSim([KEYS], port=0)
    with s.run_in_thread():
        yield s


@pytest.fixture
def dev(sim: NetworkServerSim) -> Iterator[PyDevice]:
    d = PyDevice(sim.port)
    yield d
    d.close()


def rejections(sim: NetworkServerSim) -> list[str]:
    return [e.reason for e in sim.log if e.kind in ("dropped", "join-rejected")]


def test_join_accept_carries_dlsettings_rxdelay_and_the_eu868_cflist(sim: NetworkServerSim, dev: PyDevice) -> None:
    phy = dev.join(dev_nonce=0)
    assert phy is not None
    ja = frames.parse_join_accept(KEYS.app_key, phy)
    assert (ja.join_nonce, ja.rx1_dr_offset, ja.rx2_dr, ja.rx_delay_s) == (1, 0, 0, 1)
    assert ja.cflist_type == 0 and ja.frequencies == [867100000, 867300000, 867500000, 867700000, 867900000]
    assert f"{ja.dev_addr:08x}" == sim.events_of("join", EUI)[0].message.dev_addr


def test_a_replayed_join_request_is_rejected(sim: NetworkServerSim, dev: PyDevice) -> None:
    assert dev.join(dev_nonce=5) is not None
    assert dev.join(dev_nonce=5) is None  # the same DevNonce again: LoRaWAN 1.0.4 §6.2.5
    assert dev.join(dev_nonce=4) is None  # an older one
    assert dev.join(dev_nonce=6) is not None  # a fresh one, with the next JoinNonce
    assert rejections(sim) == [
        "DevNonce 5 already used (last accepted 5); LoRaWAN 1.0.4 §6.2.5 requires a new, increasing DevNonce "
        "(replayed join-request?)",
        "DevNonce 4 already used (last accepted 5); LoRaWAN 1.0.4 §6.2.5 requires a new, increasing DevNonce "
        "(replayed join-request?)",
    ]
    assert [e.fields["join_nonce"] for e in sim.log if e.kind == "join"] == [1, 2]
    logs = sim.events_of("log", EUI)
    assert [integration.LogCode.Name(e.message.code) for e in logs] == ["OTAA", "OTAA"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong AppKey", "join-request: MIC mismatch (wrong AppKey or corrupted frame)"),
        ("unknown DevEUI", "unknown DevEUI (not in the registry)"),
        ("wrong JoinEUI", "JoinEUI 0000000000000001 does not match the registry's 70b3d57ed0000000"),
    ],
)
def test_join_requests_that_cannot_be_answered(sim: NetworkServerSim, case: str, expected: str) -> None:
    keys = KEYS
    app_key = None
    if case == "wrong AppKey":
        app_key = bytes(16)
    elif case == "unknown DevEUI":
        keys = type(KEYS)("0000000000000099", KEYS.join_eui, KEYS.app_key)
    else:
        keys = type(KEYS)(KEYS.dev_eui, "0000000000000001", KEYS.app_key)
    d = PyDevice(sim.port, keys)
    try:
        assert d.join(0, app_key=app_key) is None
    finally:
        d.close()
    assert rejections(sim) == [expected]
    assert sim.events_of("join") == []


def test_uplink_with_a_bad_mic_is_dropped_and_logged_with_the_reason(sim: NetworkServerSim, dev: PyDevice) -> None:
    dev.join(0)
    dev.uplink(0, 10, b"\x01", nwk_skey=bytes(16))
    (reason,) = rejections(sim)
    assert reason == f"data frame: MIC mismatch for DevAddr {dev.dev_addr:08X} FCnt 0 (wrong NwkSKey, or corrupted)"
    assert sim.events_of("up") == []
    (log_ev,) = sim.events_of("log", EUI)
    assert integration.LogCode.Name(log_ev.message.code) == "UPLINK_MIC"
    dev.uplink(0, 10, b"\x01")  # the genuine frame with the same counter is still accepted
    assert [e.message.data for e in sim.events_of("up")] == [b"\x01"]


def test_frame_counters_retransmission_replay_and_32_bit_roll_over(sim: NetworkServerSim, dev: PyDevice) -> None:
    dev.join(0)
    dev.uplink(0xFFFE, 10, b"\x01")
    dev.uplink(0xFFFE, 10, b"\x01")  # NbTrans repetition: same FCnt, a new transmission
    dev.uplink(0x10001, 10, b"\x02")  # 16 bits on air: 0x0001, after 0xFFFE -> 65537
    dev.uplink(0x10000, 10, b"\x03")  # older than 65537: replay
    dev.uplink(0xFFFF, 10, b"\x04")  # 0xFFFF on air now means 131071: the MIC (computed with 65535) fails
    ups = sim.events_of("up", EUI)
    assert [(e.message.f_cnt, e.message.data) for e in ups] == [(0xFFFE, b"\x01"), (0x10001, b"\x02")]
    assert [e.reason for e in sim.log if e.kind == "uplink"] == [
        "accepted", "retransmission (same FCnt): not forwarded", "accepted"]
    assert rejections(sim) == [
        "replayed or old frame: FCnt 0 (16 bits on air) is not above the last accepted 65537",
        "data frame: MIC mismatch for DevAddr 000A0001 FCnt 131071 (wrong NwkSKey, or corrupted)",
    ]


def test_the_same_transmission_heard_twice_is_deduplicated(sim: NetworkServerSim, dev: PyDevice) -> None:
    dev.join(0)
    phy = frames.build_uplink(dev.nwk_skey, dev.app_skey, dev.dev_addr, 1, 10, b"\x07")
    header = {"v": 1, "dir": "up", "freq_hz": 868100000, "sf": 7, "bw_hz": 125000, "tmst_ms": 123456}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(2):  # as two gateways would forward it
            s.sendto(udp.encode_datagram(header, phy), ("127.0.0.1", sim.port))
    sim.wait_for(lambda: len(sim.log) >= 3, 5)
    assert len(sim.events_of("up", EUI)) == 1
    assert rejections(sim) == ["duplicate (the same transmission received twice)"]


def test_unknown_devaddr_and_malformed_datagrams_are_dropped_with_a_reason(sim: NetworkServerSim) -> None:
    phy = frames.build_uplink(bytes(16), bytes(16), 0x01020304, 0, 10, b"\x01")
    header = {"v": 1, "dir": "up", "freq_hz": 868100000, "sf": 7, "bw_hz": 125000, "tmst_ms": 0}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(udp.encode_datagram(header, phy), ("127.0.0.1", sim.port))
        s.sendto(b"not a datagram", ("127.0.0.1", sim.port))
        s.sendto(udp.encode_datagram(header, b"\xe0\x00"), ("127.0.0.1", sim.port))
    sim.wait_for(lambda: len(sim.log) >= 3, 5)
    assert sorted(rejections(sim)) == sorted([
        "unknown DevAddr 01020304 (no session)",
        "datagram: no header line",
        "MType Proprietary is not an uplink",
    ])


def test_link_check_answer_in_the_downlink(sim: NetworkServerSim, dev: PyDevice) -> None:
    dev.join(0)
    dl = dev.uplink(0, 10, b"\x01", fopts=maccmd.encode("LinkCheckReq"))
    f = frames.parse_downlink(dl, dev.nwk_skey, dev.app_skey, dev.dev_addr)
    assert f.fport == 0  # MAC commands only: on FPort 0, encrypted with the NwkSKey
    assert maccmd.decode_strict(f.payload) == [("LinkCheckAns", {"margin_db": 14, "gw_cnt": 1})]


def test_queueing_rejects_bad_input_naming_it(sim: NetworkServerSim) -> None:
    with pytest.raises(ConfigError, match="fport: 0 not in 1..223"):
        sim.queue_downlink(EUI, 0, b"")
    with pytest.raises(ConfigError, match="LinkADRAns is sent by devices"):
        sim.queue_mac(EUI, "LinkADRAns", {})
    with pytest.raises(ConfigError, match="data_rate"):
        sim.queue_mac(EUI, "LinkADRReq", {"data_rate": 16})
    with pytest.raises(ConfigError, match="dev_eui: 0000000000000000 is not in the simulator's registry"):
        sim.queue_downlink("0000000000000000", 2, b"\x01")
