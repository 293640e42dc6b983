"""LoRaWAN 1.0.4 MAC commands (citynode.lorawan.maccmd): every command, both directions.

Each row of COMMANDS is one command as the spec lays it out (§5.1-§5.9, bit fields written out by hand
from the payload tables): encoding the fields must give the bytes, decoding the bytes must give the
fields. Everything runs on the real MicroPython unix port and on CPython.
"""


from __future__ import annotations

import json
import sys

import pytest

from gateway.paths import firmware_dir

sys.path.insert(0, str(firmware_dir() / "lib"))

PRELUDE = """
from binascii import hexlify, unhexlify
from citynode.lorawan import maccmd as M
def u(s):
    return unhexlify(s)
def h(b):
    return hexlify(bytes(b)).decode()
def err(f):
    try:
        f()
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
    return "no error"
def dec(s, up=False):
    cmds, problem = M.decode(u(s), up)
    return [[[n, f] for n, f in cmds], problem]
"""

# (name, sent by the device?, fields, bytes on air: CID + payload)
COMMANDS = [
    # sent by the network (FOpts / FPort 0 of a downlink)
    ("LinkCheckAns", False, {"margin_db": 20, "gw_cnt": 3}, "021403"),  # §5.1
    ("LinkADRReq", False, {"data_rate": 5, "tx_power": 1, "ch_mask": 0x0007, "ch_mask_cntl": 0, "nb_trans": 1}, "0351070001"),  # §5.2
    ("LinkADRReq", False, {"data_rate": 0, "tx_power": 7, "ch_mask": 0xFF00, "ch_mask_cntl": 6, "nb_trans": 3}, "030700ff63"),
    ("DutyCycleReq", False, {"max_duty_cycle": 7}, "0407"),  # §5.3: 1/128
    ("RXParamSetupReq", False, {"rx1_dr_offset": 2, "rx2_data_rate": 3, "frequency_hz": 869525000}, "0523d2ad84"),  # §5.4: 8695250 = 0x84ADD2
    ("DevStatusReq", False, {}, "06"),  # §5.5
    ("NewChannelReq", False, {"ch_index": 3, "frequency_hz": 867100000, "max_dr": 5, "min_dr": 0}, "0703184f8450"),  # §5.6: 8671000 = 0x844F18
    ("NewChannelReq", False, {"ch_index": 4, "frequency_hz": 0, "max_dr": 0, "min_dr": 0}, "070400000000"),  # frequency 0 disables
    ("RXTimingSetupReq", False, {"delay_s": 5}, "0805"),  # §5.7
    ("TxParamSetupReq", False, {"downlink_dwell_time": True, "uplink_dwell_time": False, "max_eirp": 5}, "0925"),  # §5.8
    ("DlChannelReq", False, {"ch_index": 0, "frequency_hz": 868500000}, "0a00c88584"),  # §5.6: 8685000 = 0x8485C8
    ("DeviceTimeAns", False, {"gps_seconds": 1400000000, "fraction_256": 128}, "0d004e7253" "80"),  # §5.9: 1400000000 = 0x53724E00
    ("PingSlotInfoAns", False, {}, "10"),
    ("PingSlotChannelReq", False, {"frequency_hz": 869525000, "data_rate": 3}, "11d2ad8403"),
    ("BeaconTimingAns", False, {"delay": 300, "channel": 2}, "122c0102"),
    ("BeaconFreqReq", False, {"frequency_hz": 869525000}, "13d2ad84"),
    # sent by the device (FOpts / FPort 0 of an uplink)
    ("LinkCheckReq", True, {}, "02"),
    ("LinkADRAns", True, {"power_ack": True, "data_rate_ack": True, "channel_mask_ack": True}, "0307"),
    ("LinkADRAns", True, {"power_ack": True, "data_rate_ack": True, "channel_mask_ack": False}, "0306"),
    ("DutyCycleAns", True, {}, "04"),
    ("RXParamSetupAns", True, {"rx1_dr_offset_ack": True, "rx2_data_rate_ack": False, "channel_ack": True}, "0505"),
    ("DevStatusAns", True, {"battery": 254, "snr_db": -5}, "06fe3b"),  # 6-bit two's complement
    ("DevStatusAns", True, {"battery": 0, "snr_db": 31}, "06001f"),  # 0 = external power
    ("DevStatusAns", True, {"battery": 255, "snr_db": -32}, "06ff20"),  # 255 = cannot measure
    ("NewChannelAns", True, {"data_rate_range_ok": True, "channel_frequency_ok": True}, "0703"),
    ("RXTimingSetupAns", True, {}, "08"),
    ("TxParamSetupAns", True, {}, "09"),
    ("DlChannelAns", True, {"uplink_frequency_exists": True, "channel_frequency_ok": False}, "0a02"),
    ("DeviceTimeReq", True, {}, "0d"),
    ("PingSlotInfoReq", True, {"periodicity": 3}, "1003"),
    ("PingSlotChannelAns", True, {"data_rate_ok": False, "channel_frequency_ok": True}, "1101"),
    ("BeaconTimingReq", True, {}, "12"),
    ("BeaconFreqAns", True, {"beacon_frequency_ok": True}, "1301"),
]
COMMAND_IDS = [f"{'up' if up else 'down'} {name} {hexs}" for name, up, _, hexs in COMMANDS]

CASES = []
for name, up, fields, hexs in COMMANDS:
    CASES.append((f"encode {name} {hexs}", f"h(M.encode({name!r}, {fields!r}))", hexs))
    CASES.append((f"decode {name} {hexs}", f"dec({hexs!r}, {up})", [[[name, fields]], None]))
CASES += [
    ("a ChirpStack-style FOpts: LinkADRReq + DevStatusReq + RXTimingSetupReq", "dec('035107000106' '0801')",
     [[["LinkADRReq", {"data_rate": 5, "tx_power": 1, "ch_mask": 7, "ch_mask_cntl": 0, "nb_trans": 1}],
       ["DevStatusReq", {}], ["RXTimingSetupReq", {"delay_s": 1}]], None]),
    ("answers piggy-backed in an uplink", "dec('0307' '06fe3b' '0d', True)",
     [[["LinkADRAns", {"power_ack": True, "data_rate_ack": True, "channel_mask_ack": True}],
       ["DevStatusAns", {"battery": 254, "snr_db": -5}], ["DeviceTimeReq", {}]], None]),
    ("the direction decides the name: 0x02 from the device is LinkCheckReq", "dec('02', True)", [[["LinkCheckReq", {}]], None]),
    ("RXTimingSetupReq Del 0 means 1 s", "dec('0800')", [[["RXTimingSetupReq", {"delay_s": 1}]], None]),
    ("an RFU CID stops processing; earlier commands are kept", "dec('06' '0b01' '02')",
     [[["DevStatusReq", {}]], "unknown CID 0x0B at byte 1 ends MAC command processing (§5); 3 bytes ignored"]),
    ("a proprietary CID stops processing", "dec('80ff', True)",
     [[], "proprietary CID 0x80 at byte 0 ends MAC command processing (§5); 2 bytes ignored"]),
    ("a 1.1-only command (ResetInd 0x01) is unknown in 1.0.4", "dec('01', True)",
     [[], "unknown CID 0x01 at byte 0 ends MAC command processing (§5); 1 bytes ignored"]),
    ("a command cut short", "dec('0603510700')",
     [[["DevStatusReq", {}]], "LinkADRReq at byte 1: needs 4 payload bytes, only 3 left"]),
    ("the same bytes as a downlink are a truncated LinkADRReq", "dec('0307')[1]",
     "LinkADRReq at byte 0: needs 4 payload bytes, only 1 left"),
    ("decode_strict raises", "err(lambda: M.decode_strict(u('0b')))",
     "MACCommandError: unknown CID 0x0B at byte 0 ends MAC command processing (§5); 1 bytes ignored"),
    ("empty FOpts", "dec('')", [[], None]),
    ("encode_all builds the answers for FOpts",
     "h(M.encode_all([('LinkADRAns', {'power_ack': True, 'data_rate_ack': True, 'channel_mask_ack': True}), ('DevStatusAns', {'battery': 200, 'snr_db': 7})]))",
     "030706c807"),
    ("sizes for the 15-byte FOpts budget", "[M.size('LinkADRAns'), M.size('DevStatusAns'), M.size('LinkCheckReq'), M.size('NewChannelReq')]",
     [2, 3, 1, 6]),
    ("info: CID, sent by device, payload length", "[list(M.info('DeviceTimeAns')), list(M.info('DeviceTimeReq'))]",
     [[13, False, 5], [13, True, 0]]),
    ("missing fields encode as 0", "h(M.encode('LinkADRAns', {'channel_mask_ack': True}))", "0301"),
    ("unknown command name", "err(lambda: M.encode('ResetInd'))",
     "MACCommandError: MAC command 'ResetInd' is not a LoRaWAN 1.0.4 command"),
    ("unknown field", "err(lambda: M.encode('DutyCycleReq', {'duty': 3}))",
     "MACCommandError: DutyCycleReq: no field 'duty' (fields: max_duty_cycle)"),
    ("TXPower beyond 4 bits", "err(lambda: M.encode('LinkADRReq', {'tx_power': 16}))",
     "MACCommandError: LinkADRReq.tx_power: 16 does not fit (max 15)"),
    ("frequency not in 100 Hz steps", "err(lambda: M.encode('NewChannelReq', {'frequency_hz': 867100050}))",
     "MACCommandError: NewChannelReq.frequency_hz: 867100050 Hz is not a multiple of 100 Hz"),
    ("SNR beyond 6-bit signed", "err(lambda: M.encode('DevStatusAns', {'snr_db': 32}))",
     "MACCommandError: DevStatusAns.snr_db: 32 not in -32..31"),
    ("RX delay beyond 15 s", "err(lambda: M.encode('RXTimingSetupReq', {'delay_s': 16}))",
     "MACCommandError: RXTimingSetupReq.delay_s: 16 s not in 1..15"),
    ("MaxEIRP table", "[M.MAX_EIRP_DBM[0], M.MAX_EIRP_DBM[5], M.MAX_EIRP_DBM[15]]", [8, 16, 36]),
]
IDS = [c[0] for c in CASES]


def test_the_table_covers_every_lorawan_104_command():
    names = {name for name, _, _, _ in COMMANDS}
    for cmd in ("LinkCheck", "LinkADR", "DutyCycle", "RXParamSetup", "DevStatus", "NewChannel", "RXTimingSetup",
                "TxParamSetup", "DlChannel", "DeviceTime"):
        assert {cmd + "Req", cmd + "Ans"} <= names, cmd


@pytest.mark.parametrize(
    "name,expected",
    [
        ("LinkADRReq", [("data_rate", 0, 1, 4, 0x0F, "uint"), ("tx_power", 0, 1, 0, 0x0F, "uint"),
                        ("ch_mask", 1, 2, 0, 0xFFFF, "uint"), ("ch_mask_cntl", 3, 1, 4, 0x07, "uint"),
                        ("nb_trans", 3, 1, 0, 0x0F, "uint")]),
        ("DevStatusAns", [("battery", 0, 1, 0, 0xFF, "uint"), ("snr_db", 1, 1, 0, 0x3F, "signed")]),
        ("NewChannelReq", [("ch_index", 0, 1, 0, 0xFF, "uint"), ("frequency_hz", 1, 3, 0, 0xFFFFFF, "hz"),
                           ("max_dr", 4, 1, 4, 0x0F, "uint"), ("min_dr", 4, 1, 0, 0x0F, "uint")]),
        ("RXTimingSetupReq", [("delay_s", 0, 1, 0, 0x0F, "s")]),
        ("TxParamSetupReq", [("downlink_dwell_time", 0, 1, 5, 1, "bool"), ("uplink_dwell_time", 0, 1, 4, 1, "bool"),
                             ("max_eirp", 0, 1, 0, 0x0F, "uint")]),
        ("DeviceTimeAns", [("gps_seconds", 0, 4, 0, 0xFFFFFFFF, "uint"), ("fraction_256", 4, 1, 0, 0xFF, "uint")]),
        ("DevStatusReq", []),
    ],
)
def test_layouts_read_as_the_spec_tables(name, expected):
    from citynode.lorawan import maccmd

    assert list(maccmd.layout(name)) == expected


@pytest.fixture(scope="module")
def on_micropython(micropython):
    # One statement per case, one JSON line each: a 96 KiB heap never holds all results at once.
    code = PRELUDE + "import json\n" + "".join("print(json.dumps(%s))\n" % c[1] for c in CASES)
    lines = micropython.run(code).splitlines()
    assert len(lines) == len(CASES), lines[-3:]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_maccmd_on_micropython(on_micropython, i):
    assert on_micropython[i] == CASES[i][2]


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_maccmd_on_cpython(i):
    env: dict[str, object] = {}
    exec(PRELUDE, env)
    assert json.loads(json.dumps(eval(CASES[i][1], env))) == CASES[i][2]
