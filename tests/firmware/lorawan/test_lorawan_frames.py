"""LoRaWAN 1.0.4 PHYPayload building and parsing (citynode.lorawan.frames).

Bit-exact vectors were produced once by lora-packet 0.9.3 (tests/firmware/lorawan/lorapacket.js) and are fixed
here; the live cross-check against lora-packet is in test_lorawan_xval.py. Every case is an expression
evaluated on the real MicroPython unix port and on CPython; error cases evaluate to "ErrorClass: message".
"""


from __future__ import annotations

import json
import sys

import pytest

from gateway.paths import firmware_dir

sys.path.insert(0, str(firmware_dir() / "lib"))

PRELUDE = """
from binascii import hexlify, unhexlify
from citynode.lorawan import frames as F
from citynode.lorawan import crypto
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
def ja(k, phy):
    j = F.parse_join_accept(u(k), u(phy))
    return [j.join_nonce, j.net_id, j.dev_addr, j.rx1_dr_offset, j.rx2_dr, j.rx_delay_s, j.cflist_type, j.frequencies]
def df(f):
    return [F.MTYPE_NAMES[f.mtype], f.dev_addr, f.fcnt, f.fport, h(f.fopts), h(f.payload), f.adr, f.adr_ack_req,
            f.ack, f.fpending, f.uplink, f.confirmed, f.mic_ok]
NWK = u("44024241ed4ce9a68c6a8bc055233fd3")
APP = u("ec925802ae430ca77fd3dd73cb2cc588")
OTHER = u("000102030405060708090a0b0c0d0e0f")
def up(fcnt, **kw):
    return F.build_uplink(NWK, APP, 0x26011234, fcnt, 10, b"\\x01\\x02", **kw)
def down(fcnt, **kw):
    return F.build_downlink(NWK, APP, 0x26011234, fcnt, 2, b"\\x09", **kw)
"""

APPKEY = "2b7e151628aed2a6abf7158809cf4f3c"
JR0 = "00010000d07ed5b37030051c000ba3040000005484d702"
JR300 = "00010000d07ed5b37030051c000ba304002c01aa8afda6"
JA_PLAIN = "20a1b1c3a420359c1610db5fd65836d747"  # JoinNonce 1, NetID 0, DevAddr 00A1B2C3, DL 0, RXDelay 1
JA_CFLIST = "20b38ccec91c2d4101f4532f32ee4f0872f4ea0dcc9112813f769d94ab5ae4bb14"  # AppKey 00..0f, see below
EU868_EXTRA = [867100000, 867300000, 867500000, 867700000, 867900000]  # RP002 §2.4: a typical CFList

# (id, expression, expected)
CASES = [
    # §4.2.1 Table 2 and §4.2.2: MHDR
    ("MHDR JoinRequest", "F.mhdr(F.JOIN_REQUEST)", 0x00),
    ("MHDR JoinAccept", "F.mhdr(F.JOIN_ACCEPT)", 0x20),
    ("MHDR UnconfirmedDataUp", "F.mhdr(F.UNCONFIRMED_UP)", 0x40),
    ("MHDR UnconfirmedDataDown", "F.mhdr(F.UNCONFIRMED_DOWN)", 0x60),
    ("MHDR ConfirmedDataUp", "F.mhdr(F.CONFIRMED_UP)", 0x80),
    ("MHDR ConfirmedDataDown", "F.mhdr(F.CONFIRMED_DOWN)", 0xA0),
    ("MHDR RFU", "F.mhdr(F.RFU)", 0xC0),
    ("MHDR Proprietary", "F.mhdr(F.PROPRIETARY)", 0xE0),
    ("MType of every MHDR", "[F.MTYPE_NAMES[F.mtype_of(bytes([m << 5]))] for m in range(8)]",
     ["JoinRequest", "JoinAccept", "UnconfirmedDataUp", "UnconfirmedDataDown", "ConfirmedDataUp",
      "ConfirmedDataDown", "RFU", "Proprietary"]),
    ("Major other than LoRaWAN R1 is rejected", "err(lambda: F.mtype_of(b'\\x41'))",
     "FrameError: MHDR: Major 1 is not LoRaWAN R1 (0)"),
    ("empty frame", "err(lambda: F.mtype_of(b''))", "FrameError: PHYPayload: empty frame"),
    # §6.2.5 join-request
    ("join-request DevNonce 0 is bit-exact with lora-packet",
     f"h(F.build_join_request(u('{APPKEY}'), u('70b3d57ed0000001'), u('0004a30b001c0530'), 0))", JR0),
    ("join-request DevNonce 300 is bit-exact with lora-packet",
     f"h(F.build_join_request(u('{APPKEY}'), u('70b3d57ed0000001'), u('0004a30b001c0530'), 300))", JR300),
    ("join-request parsed back", f"(lambda r: [h(r.join_eui), h(r.dev_eui), r.dev_nonce, r.mic_ok])"
     f"(F.parse_join_request(u('{JR300}'), u('{APPKEY}')))", ["70b3d57ed0000001", "0004a30b001c0530", 300, True]),
    ("join-request with the wrong AppKey", f"err(lambda: F.parse_join_request(u('{JR300}'), OTHER))",
     "MICError: join-request: MIC mismatch (wrong AppKey or corrupted frame)"),
    ("join-request DevNonce out of range", f"err(lambda: F.build_join_request(u('{APPKEY}'), bytes(8), bytes(8), 65536))",
     "FrameError: DevNonce: 65536 is not a 16-bit value"),
    ("join-request DevEUI of 7 bytes", f"err(lambda: F.build_join_request(u('{APPKEY}'), bytes(8), bytes(7), 1))",
     "FrameError: DevEUI: need 8 bytes, got 7"),
    # §6.2.6 join-accept
    ("join-accept from lora-packet, no CFList", f"ja('{APPKEY}', '{JA_PLAIN}')",
     [1, 0, 0x00A1B2C3, 0, 0, 1, None, None]),
    ("join-accept from lora-packet, CFList type 0 (EU868 channels 3..7)",
     f"ja('000102030405060708090a0b0c0d0e0f', '{JA_CFLIST}')", [7, 0x13, 0x26011234, 1, 3, 5, 0, EU868_EXTRA]),
    ("join-accept built by citynode is bit-exact with lora-packet (no CFList)",
     f"h(F.build_join_accept(u('{APPKEY}'), 1, 0, 0x00A1B2C3))", JA_PLAIN),
    ("join-accept built by citynode is bit-exact with lora-packet (CFList)",
     f"h(F.build_join_accept(OTHER, 7, 0x13, 0x26011234, 1, 3, 5, {EU868_EXTRA}))", JA_CFLIST),
    ("RXDelay 0 on air means 1 s (§5.7)", f"ja('{APPKEY}', h(F.build_join_accept(u('{APPKEY}'), 2, 0, 1, rx_delay_s=0)))[5]", 1),
    ("CFList type 1 yields channel masks",
     "(lambda j: [j.cflist_type, j.ch_masks, j.frequencies])(F.parse_join_accept(OTHER, "
     "F.build_join_accept(OTHER, 2, 0, 1, cflist=u('ff00' + '0000' * 4 + '000000000001'))))", [1, [0xFF, 0, 0, 0, 0], None]),
    ("join-accept with the wrong AppKey", f"err(lambda: F.parse_join_accept(OTHER, u('{JA_PLAIN}')))",
     "MICError: join-accept: MIC mismatch (wrong AppKey, or a join-accept for another device)"),
    ("join-accept of a wrong length", f"err(lambda: F.parse_join_accept(OTHER, u('{JA_PLAIN}00')))",
     "FrameError: join-accept: need 17 or 33 bytes, got 18"),
    ("a data frame is not a join-accept", "err(lambda: F.parse_join_accept(OTHER, up(1)))",
     "FrameError: MType: UnconfirmedDataUp, not JoinAccept"),
    ("CFList frequency not in 100 Hz steps", "err(lambda: F.build_join_accept(OTHER, 1, 0, 1, frequencies=[868100050]))",
     "FrameError: CFList frequency 868100050 Hz: must be a multiple of 100 Hz below 1.68 GHz"),
    # §4.3 data frames, bit-exact with lora-packet
    ("uplink 'test' (lora-packet README)", "h(F.build_uplink(NWK, APP, 0x49BE7DF1, 2, 1, b'test'))",
     "40f17dbe4900020001954378762b11ff0d"),
    ("confirmed uplink, ADR, FOpts LinkADRAns, FCnt 0x10000",
     "h(F.build_uplink(NWK, APP, 0x26011234, 0x10000, 10, u('8219086a'), u('0307'), confirmed=True, adr=True))",
     "803412012682000003070ab510087bb245f7ac"),
    ("FPort 0 downlink (MAC commands encrypted with NwkSKey), FCnt 0x12345",
     "h(F.build_downlink(NWK, APP, 0x26011234, 0x12345, 0, u('0602')))", "603412012600452300211099c695cd"),
    # §4.3.1 FCtrl bits (byte 5 of the PHYPayload)
    ("FCtrl uplink ADR", "up(1, adr=True)[5]", 0x80),
    ("FCtrl uplink ADRACKReq", "up(1, adr_ack_req=True)[5]", 0x40),
    ("FCtrl uplink ACK", "up(1, ack=True)[5]", 0x20),
    ("FCtrl uplink ClassB", "up(1, class_b=True)[5]", 0x10),
    ("FCtrl downlink FPending", "down(1, fpending=True)[5]", 0x10),
    ("FCtrl downlink ignores ADRACKReq (RFU)", "F.build_data(F.UNCONFIRMED_DOWN, NWK, APP, 1, 1, adr_ack_req=True)[5]", 0),
    ("FCtrl FOptsLen", "up(1, fopts=b'\\x02\\x06\\x00\\x00')[5]", 0x04),
    ("FCnt: 16 low bits on air", "h(up(0x12345678)[6:8])", "7856"),
    ("frame without FPort (FOpts only): FHDR then MIC", "(lambda p: [h(p[:9]), len(p)])(F.build_uplink(NWK, APP, 1, 0, None, b'', b'\\x02'))",
     ["400100000001000002", 13]),
    # parsing with MIC check and 32-bit FCnt reconstruction (§4.3.1.5)
    ("downlink parsed back", "df(F.parse_downlink(down(5, ack=True, fpending=True), NWK, APP, 0x26011234, 4))",
     ["UnconfirmedDataDown", 0x26011234, 5, 2, "", "09", False, False, True, True, False, False, True]),
    ("confirmed uplink with FOpts parsed back", "df(F.parse_uplink(up(9, confirmed=True, fopts=b'\\x02'), NWK, APP))",
     ["ConfirmedDataUp", 0x26011234, 9, 10, "02", "0102", False, False, False, False, True, True, True]),
    ("first downlink after join (no last FCnt)", "F.parse_downlink(down(0), NWK, APP).fcnt", 0),
    ("FCnt rolls into the next 64 Ki epoch", "F.parse_downlink(down(0x10002), NWK, APP, None, 0xFFF0).fcnt", 0x10002),
    ("FCnt keeps its epoch", "F.parse_downlink(down(0x2000A), NWK, APP, None, 0x20001).fcnt", 0x2000A),
    ("replayed downlink", "err(lambda: F.parse_downlink(down(5), NWK, APP, None, 5))",
     "ReplayError: FCnt 5 is not above the last accepted 5: replayed or old frame"),
    ("old downlink", "err(lambda: F.parse_downlink(down(0x20003), NWK, APP, None, 0x20007))",
     "ReplayError: FCnt 131075 is not above the last accepted 131079: replayed or old frame"),
    ("a 32-bit counter never wraps", "err(lambda: F.parse_downlink(down(0x10), NWK, APP, None, 0xFFFFFFFF))",
     "ReplayError: FCnt space exhausted (last accepted 4294967295): the session must be renewed by a join"),
    ("wrong NwkSKey", "err(lambda: F.parse_downlink(down(5), OTHER, APP, None, 4))",
     "MICError: data frame: MIC mismatch for DevAddr 26011234 FCnt 5 (wrong NwkSKey, or corrupted)"),
    ("a flipped payload bit", "err(lambda: F.parse_downlink(bytes(down(5)[:9]) + bytes([down(5)[9] ^ 1]) + down(5)[10:], NWK, APP))",
     "MICError: data frame: MIC mismatch for DevAddr 26011234 FCnt 5 (wrong NwkSKey, or corrupted)"),
    ("wrong AppSKey passes the MIC but garbles the payload", "F.parse_downlink(down(5), NWK, OTHER).payload != b'\\x09'", True),
    ("downlink for another device", "err(lambda: F.parse_downlink(down(5), NWK, APP, 0x26010000))",
     "FrameError: DevAddr: frame is for 26011234, not 26010000"),
    ("an uplink is not a downlink", "err(lambda: F.parse_downlink(up(5), NWK, APP))",
     "FrameError: MType: UnconfirmedDataUp, expected a downlink"),
    ("too short", "err(lambda: F.unpack_data(u('40010000000000')))",
     "FrameError: data frame: 7 bytes, at least 12 needed (MHDR, FHDR, MIC)"),
    ("FOptsLen past the end", "err(lambda: F.unpack_data(u('4001000000050000aabbccdd')))",
     "FrameError: FOptsLen: 5 bytes of FOpts do not fit in a 12-byte frame"),
    ("MAC commands in FOpts and on FPort 0 at once", "err(lambda: F.unpack_data(u('60010000000100000200ffaabbccdd')))",
     "FrameError: FOpts: MAC commands in FOpts and on FPort 0 at once; frame ignored (§4.3.1.6)"),
    ("join-request is not a data frame", f"err(lambda: F.unpack_data(u('{JR0}')))",
     "FrameError: MType: JoinRequest is not a data frame"),
    # building refuses what the spec forbids
    ("16 bytes of FOpts", "err(lambda: up(1, fopts=bytes(16)))",
     "FrameError: FOpts: 16 bytes, at most 15 fit (§4.3.1.6); send them on FPort 0"),
    ("payload without FPort", "err(lambda: F.build_uplink(NWK, APP, 1, 1, None, b'x'))",
     "FrameError: FPort: a FRMPayload needs an FPort (§4.3.2)"),
    ("FOpts with FPort 0", "err(lambda: F.build_uplink(NWK, APP, 1, 1, 0, b'x', b'\\x02'))",
     "FrameError: FOpts: MAC commands may not be in FOpts and on FPort 0 at once (§4.3.1.6)"),
    ("FCnt beyond 32 bits", "err(lambda: up(1 << 32))", "FrameError: FCnt: 4294967296 is not a 32-bit counter value"),
    ("PHYPayload beyond 255 bytes", "err(lambda: F.build_uplink(NWK, APP, 1, 1, 1, bytes(243)))",
     "FrameError: PHYPayload: 256 bytes is longer than 255"),
    ("a join-accept MType is not a data MType", "err(lambda: F.build_data(F.JOIN_ACCEPT, NWK, APP, 1, 1))",
     "FrameError: MType: 1 is not a data frame type"),
    # §4.3.1.5 reconstruction table
    ("reconstruct_fcnt", "[F.reconstruct_fcnt(7, None), F.reconstruct_fcnt(7, 6), F.reconstruct_fcnt(7, 7), "
     "F.reconstruct_fcnt(0, 0xFFFF), F.reconstruct_fcnt(0x10, 0x1FFF0)]", [7, 7, 0x10007, 0x10000, 0x20010]),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def on_micropython(micropython):
    # One statement per case, one JSON line each: a 96 KiB heap never holds all results at once.
    code = PRELUDE + "import json\n" + "".join("print(json.dumps(%s))\n" % c[1] for c in CASES)
    lines = micropython.run(code).splitlines()
    assert len(lines) == len(CASES), lines[-3:]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_frame_on_micropython(on_micropython, i):
    assert on_micropython[i] == CASES[i][2]


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_frame_on_cpython(i):
    env: dict[str, object] = {}
    exec(PRELUDE, env)
    assert json.loads(json.dumps(eval(CASES[i][1], env))) == CASES[i][2]


def test_a_session_of_frames_fits_an_esp32_heap(micropython):
    """300 uplinks and downlinks built and parsed in a 96 KiB heap: nothing accumulates."""
    out = micropython.eval_json(PRELUDE + """
import gc, json
gc.collect()
before = gc.mem_free()
last = None
for n in range(300):
    up(n, fopts=b'\\x03\\x07')
    last = F.parse_downlink(down(n), NWK, APP, 0x26011234, last).fcnt
gc.collect()
print(json.dumps([last, before - gc.mem_free() < 2048]))
""")
    assert out == [299, True]


def test_a_frame_allocates_little_more_than_itself(micropython):
    """RAM budget per frame on MicroPython (cached CMAC/AES, preallocated B0/A blocks): an uplink with a
    20-byte payload allocates under 1 KiB, parsing a downlink under 1.5 KiB (2 KiB each before caching)."""
    out = micropython.eval_json(PRELUDE + """
import gc, json
up(1, fopts=b'\\x03\\x07')
d = down(5)
F.parse_downlink(d, NWK, APP, 0x26011234, 4)
gc.collect()
gc.disable()
m0 = gc.mem_alloc()
F.build_uplink(NWK, APP, 0x26011234, 2, 10, bytes(20), b'\\x03\\x07')
m1 = gc.mem_alloc()
F.parse_downlink(d, NWK, APP, 0x26011234, 4)
m2 = gc.mem_alloc()
gc.enable()
print(json.dumps([m1 - m0, m2 - m1]))
""")
    build, parse = out
    assert build < 1024, f"build_uplink allocated {build} bytes"
    assert parse < 1536, f"parse_downlink allocated {parse} bytes"
