"""``citynode lorawan decode``: what a network engineer sees for each kind of frame.

Frames come from the lora-packet README (an independent implementation) and from the firmware's own
frame builder (cross-checked against lora-packet in test_lorawan_xval.py).
"""


from __future__ import annotations

import base64
import json

import pytest

from gateway.cli import main
from gateway.field.lorawan_tools import decode_phy, firmware_lorawan

FW = firmware_lorawan()
F, M = FW["frames"], FW["maccmd"]

APPKEY = "2b7e151628aed2a6abf7158809cf4f3c"
NWKSKEY = "44024241ed4ce9a68c6a8bc055233fd3"
APPSKEY = "ec925802ae430ca77fd3dd73cb2cc588"
OTHER = "000102030405060708090a0b0c0d0e0f"
README_UPLINK = "40F17DBE4900020001954378762B11FF0D"  # lora-packet README: DevAddr 49be7df1, FCnt 2, "test"
JOIN_ACCEPT = "20a1b1c3a420359c1610db5fd65836d747"  # lora-packet: JoinNonce 1, DevAddr 00a1b2c3, AppKey APPKEY
BIN_FILL = "8601190352183e1855f4183d"  # citynode bin_fill reading (codec README example), fPort 11

NWK, APP = bytes.fromhex(NWKSKEY), bytes.fromhex(APPSKEY)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["lorawan", "decode", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_uplink_with_session_keys_shows_every_header_field_payload_and_valid_mic(capsys):
    code, out, _ = run(capsys, README_UPLINK, "--nwkskey", NWKSKEY, "--appskey", APPSKEY)
    assert code == 0
    for line in ["MType: UnconfirmedDataUp", "Major: 0", "Direction: uplink", "DevAddr: 49be7df1", "FCtrl: 00",
                 "FCtrl.ADR: False", "FCtrl.ADRACKReq: False", "FCtrl.ACK: False", "FCtrl.FOptsLen: 0",
                 "FCnt (on air, 16 bit): 2", "FPort: 1", "FRMPayload (encrypted): 95437876",
                 "Payload (decrypted): 74657374", "MIC: 2b11ff0d valid"]:
        assert line in out.splitlines(), f"{line!r} missing from:\n{out}"


def test_keys_are_never_printed(capsys):
    for extra in ([], ["--json"]):
        _, out, err = run(capsys, README_UPLINK, "--nwkskey", NWKSKEY, "--appskey", APPSKEY, *extra)
        assert NWKSKEY not in out.lower() + err.lower() and APPSKEY not in out.lower() + err.lower()
    _, out, err = run(capsys, README_UPLINK, "--appskey", APPSKEY[:30])
    assert APPSKEY[:30] not in out + err


def test_wrong_nwkskey_says_mic_invalid_and_exits_1(capsys):
    code, out, _ = run(capsys, README_UPLINK, "--nwkskey", OTHER)
    assert code == 1
    assert "MIC: 2b11ff0d INVALID (wrong NwkSKey, wrong DevAddr/FCnt, or a corrupted frame; a counter above 65535 needs --fcnt with the full value)" in out


def test_without_keys_nothing_is_claimed(capsys):
    code, out, _ = run(capsys, README_UPLINK)
    assert code == 0
    assert "Payload: encrypted: give --appskey to decrypt" in out
    assert "MIC: 2b11ff0d not checked (no key given)" in out


def test_base64_as_in_chirpstack_events(capsys):
    b64 = base64.b64encode(bytes.fromhex(README_UPLINK)).decode()
    code, out, _ = run(capsys, b64, "--nwkskey", NWKSKEY, "--appskey", APPSKEY)
    assert code == 0 and "Payload (decrypted): 74657374" in out


def test_keys_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("CITYNODE_NWKSKEY", NWKSKEY)
    monkeypatch.setenv("CITYNODE_APPSKEY", APPSKEY)
    code, out, _ = run(capsys, README_UPLINK)
    assert code == 0 and "MIC: 2b11ff0d valid" in out


def test_join_accept_is_decrypted_with_the_appkey(capsys):
    code, out, _ = run(capsys, JOIN_ACCEPT, "--appkey", APPKEY)
    assert code == 0
    for line in ["MType: JoinAccept", "JoinNonce: 1", "NetID: 000000", "DevAddr: 00a1b2c3", "DLSettings.RX1DRoffset: 0",
                 "DLSettings.RX2DataRate: 0", "RXDelay (s): 1"]:
        assert line in out.splitlines()
    assert out.splitlines()[-1].endswith(" valid")


def test_join_accept_with_cflist_lists_the_frequencies():
    phy = F.build_join_accept(bytes.fromhex(APPKEY), 9, 0x13, 0x26011234, 1, 3, 5, [867100000, 867300000, 867500000, 0, 0])
    d = decode_phy(phy, appkey=bytes.fromhex(APPKEY))
    assert (d["cflist_type"], d["cflist_frequencies_hz"], d["rx_delay_s"], d["mic_valid"]) == (0, [867100000, 867300000, 867500000, 0, 0], 5, True)


def test_join_accept_with_the_wrong_appkey(capsys):
    code, out, _ = run(capsys, JOIN_ACCEPT, "--appkey", OTHER)
    assert code == 1
    assert "INVALID (after decryption with the AppKey: wrong AppKey, or a join-accept for another device)" in out


def test_join_accept_without_appkey_says_what_is_needed(capsys):
    code, out, _ = run(capsys, JOIN_ACCEPT)
    assert code == 0 and "Note: a join-accept is encrypted with the AppKey: give --appkey to read it" in out


def test_join_request(capsys):
    phy = F.build_join_request(bytes.fromhex(APPKEY), bytes.fromhex("70b3d57ed0000001"), bytes.fromhex("0004a30b001c0530"), 300).hex()
    code, out, _ = run(capsys, phy, "--appkey", APPKEY)
    assert code == 0
    for line in ["MType: JoinRequest", "JoinEUI: 70b3d57ed0000001", "DevEUI: 0004a30b001c0530", "DevNonce: 300"]:
        assert line in out.splitlines()
    assert run(capsys, phy, "--appkey", OTHER)[0] == 1


def test_downlink_mac_commands_in_fopts(capsys):
    fopts = M.encode_all([("LinkADRReq", {"data_rate": 5, "tx_power": 1, "ch_mask": 7, "nb_trans": 1}), ("DevStatusReq", {})])
    phy = F.build_downlink(NWK, APP, 0x26011234, 3, None, b"", fopts, adr=True, fpending=True).hex()
    code, out, _ = run(capsys, phy, "--nwkskey", NWKSKEY)
    assert code == 0
    assert "MAC command: LinkADRReq (data_rate=5, tx_power=1, ch_mask=7, ch_mask_cntl=0, nb_trans=1)" in out
    assert "MAC command: DevStatusReq" in out.splitlines()
    assert "FCtrl.FPending: True" in out and "FPort: -" in out


def test_mac_commands_on_fport_0_are_decrypted_with_the_nwkskey(capsys):
    phy = F.build_downlink(NWK, APP, 0x26011234, 4, 0, M.encode("RXTimingSetupReq", {"delay_s": 2}) + b"\x0b\x00").hex()
    code, out, _ = run(capsys, phy, "--nwkskey", NWKSKEY)
    assert code == 0
    assert "MAC command: RXTimingSetupReq (delay_s=2)" in out
    assert "MAC commands stopped: unknown CID 0x0B at byte 2 ends MAC command processing (§5); 2 bytes ignored" in out


def test_uplink_answers_in_fopts(capsys):
    phy = F.build_uplink(NWK, APP, 0x26011234, 7, 10, b"\x01", M.encode("LinkADRAns", {"power_ack": True, "data_rate_ack": True}), confirmed=True).hex()
    code, out, _ = run(capsys, phy, "--nwkskey", NWKSKEY)
    assert "MAC command: LinkADRAns (power_ack=True, data_rate_ack=True, channel_mask_ack=False)" in out
    assert "Confirmed: True" in out


def test_a_32_bit_counter_needs_fcnt(capsys):
    phy = F.build_uplink(NWK, APP, 0x26011234, 0x10002, 20, b"xy").hex()
    assert run(capsys, phy, "--nwkskey", NWKSKEY)[0] == 1
    code, out, _ = run(capsys, phy, "--nwkskey", NWKSKEY, "--appskey", APPSKEY, "--fcnt", str(0x10002))
    assert code == 0 and "FCnt (32 bit): 65538" in out and "Payload (decrypted): 7879" in out
    code, _, err = run(capsys, phy, "--nwkskey", NWKSKEY, "--fcnt", "5")
    assert code == 2 and "--fcnt 5: its 16 low bits (5) are not the FCnt on air (2)" in err


def test_citynode_port_shows_the_reading(capsys):
    phy = F.build_uplink(NWK, APP, 0x26011234, 8, 11, bytes.fromhex(BIN_FILL)).hex()
    code, out, _ = run(capsys, phy, "--nwkskey", NWKSKEY, "--appskey", APPSKEY, "--json")
    d = json.loads(out)
    try:
        import gateway.contract.codec  # noqa: F401
    except ImportError:
        assert d["reading_error"] == "fPort 11 is citynode bin_fill, but gateway.contract.codec is not installed"
    else:
        assert d["reading"]["type"] == "bin_fill"
        assert d["reading"]["readings"][0]["fill_level"] == 62


def test_a_non_citynode_port_is_left_alone():
    phy = F.build_uplink(NWK, APP, 1, 1, 99, b"\x00")
    d = decode_phy(phy, nwkskey=NWK, appskey=APP)
    assert "reading" not in d and "reading_error" not in d


@pytest.mark.parametrize(
    "argv,message",
    [
        (["40F1"], "citynode lorawan decode: error: UnconfirmedDataUp: data frame: 2 bytes, at least 12 needed (MHDR, FHDR, MIC)"),
        (["zz!"], "citynode lorawan decode: error: PHYPayload: 'zz!' is neither hex nor base64"),
        (["41F17DBE4900020001954378762B11FF0D"], "citynode lorawan decode: error: MHDR: Major 1 is not LoRaWAN R1 (0)"),
        ([README_UPLINK, "--appskey", "12 34"], "citynode lorawan decode: error: --appskey: need 32 hex digits (a 16-byte AES-128 key), got 4 characters"),
        (["20a1b1c3a4"], "citynode lorawan decode: error: JoinAccept: join-accept: need 17 or 33 bytes, got 5"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.strip() == message


def test_outside_a_checkout_without_the_bundled_firmware_the_error_says_so(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CITYNODE_ROOT", str(tmp_path))
    code, _, err = run(capsys, README_UPLINK)
    assert code == 2
    assert f"CITYNODE_ROOT: {tmp_path} is not a citynode checkout" in err
