"""Cross-verification with an independent LoRaWAN implementation: the npm package lora-packet.

Frames built by citynode on the real MicroPython unix port (join-requests, unconfirmed and confirmed
uplinks with MAC answers in FOpts, FPort 0, 32-bit counters) are decoded and MIC-checked by
lora-packet; frames built by lora-packet (join-accepts, downlinks with MAC commands in FOpts and on
FPort 0) are accepted by citynode on MicroPython. Tampered, replayed and wrongly keyed frames are
rejected by citynode with the reason. Needs Node.js and `make nodedeps` (lora-packet 0.9.3).
"""


from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
NODE_MODULES = ROOT / "tests" / "js" / "node_modules"
BRIDGE = Path(__file__).with_name("lorapacket.js")

pytestmark = pytest.mark.node

APPKEY = "2b7e151628aed2a6abf7158809cf4f3c"
JOIN_EUI = "70b3d57ed0000001"
DEV_EUI = "0004a30b001c0530"
DEV_ADDR = "26011234"


def lorapacket(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run a batch of requests through tests/firmware/lorawan/lorapacket.js (lora-packet) and return the results."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "lora-packet").is_dir():
        pytest.skip("needs Node.js and lora-packet: run `make nodedeps`")
    proc = subprocess.run(
        [node, str(BRIDGE)], input=json.dumps(requests), capture_output=True, text=True, timeout=60,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert proc.returncode == 0, f"lorapacket.js failed:\n{proc.stderr}"
    results = json.loads(proc.stdout)
    for q, r in zip(requests, results, strict=True):
        assert "error" not in r, f"lora-packet rejected {q}: {r['error']}"
    return results


PRELUDE = """
import json
from binascii import hexlify, unhexlify
from citynode.lorawan import frames as F, crypto, maccmd as M
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
"""


@pytest.fixture(scope="module")
def session(micropython) -> dict[str, Any]:
    """An OTAA handshake across the two implementations: citynode's join-request, lora-packet's join-accept."""
    ja_fields = {"appnonce": "00002a", "netid": "000013", "devaddr": DEV_ADDR, "dlsettings": 0x13, "rxdelay": 1,
                 "cflist": "184f84e85684b85e84886684586e8400"}
    jr_hex = micropython.eval_json(PRELUDE + f"print(json.dumps(h(F.build_join_request(u('{APPKEY}'), u('{JOIN_EUI}'), u('{DEV_EUI}'), 7))))")
    decoded, ja, keys = lorapacket([
        {"op": "decode", "phy": jr_hex, "appkey": APPKEY},
        {"op": "build_join_accept", "appkey": APPKEY, **ja_fields},
        {"op": "session_keys", "appkey": APPKEY, "netid": "000013", "appnonce": "00002a", "devnonce": "0007"},
    ])
    mine = micropython.eval_json(PRELUDE + f"""
ja = F.parse_join_accept(u('{APPKEY}'), u('{ja['phy']}'))
nwk, app = crypto.derive_session_keys(u('{APPKEY}'), ja.join_nonce, ja.net_id, 7)
print(json.dumps({{"join_nonce": ja.join_nonce, "net_id": ja.net_id, "dev_addr": ja.dev_addr, "rx1_dr_offset": ja.rx1_dr_offset,
    "rx2_dr": ja.rx2_dr, "rx_delay_s": ja.rx_delay_s, "frequencies": ja.frequencies, "nwkskey": h(nwk), "appskey": h(app)}}))
""")
    return {"join_request": decoded, "join_accept": mine, "lp_keys": keys, "nwkskey": mine["nwkskey"], "appskey": mine["appskey"]}


def test_lora_packet_verifies_citynode_join_request(session):
    jr = session["join_request"]
    assert jr["mtype"] == "Join Request"
    assert (jr["appeui"], jr["deveui"], jr["devnonce"]) == (JOIN_EUI, DEV_EUI, "0007")
    assert jr["mic_ok"] is True


def test_citynode_accepts_lora_packet_join_accept(session):
    ja = session["join_accept"]
    assert {k: ja[k] for k in ("join_nonce", "net_id", "dev_addr", "rx1_dr_offset", "rx2_dr", "rx_delay_s")} == {
        "join_nonce": 42, "net_id": 0x13, "dev_addr": int(DEV_ADDR, 16), "rx1_dr_offset": 1, "rx2_dr": 3, "rx_delay_s": 1}
    assert ja["frequencies"] == [867100000, 867300000, 867500000, 867700000, 867900000]


def test_both_derive_the_same_session_keys(session):
    assert (session["nwkskey"], session["appskey"]) == (session["lp_keys"]["nwkskey"], session["lp_keys"]["appskey"])


# Uplinks built by citynode: (id, build_uplink keyword source, expected lora-packet view)
UPLINKS = [
    ("unconfirmed uplink FPort 10", "fcnt=0, fport=10, payload=u('8219086a')",
     {"mtype": "Unconfirmed Data Up", "fcnt16": 0, "fport": 10, "fopts": "", "payload": "8219086a", "confirmed": False}),
    ("confirmed uplink with LinkADRAns + DevStatusAns in FOpts, ADR", "fcnt=1, fport=11, payload=b'hello', confirmed=True, adr=True, "
     "fopts=M.encode_all([('LinkADRAns', {'power_ack': True, 'data_rate_ack': True, 'channel_mask_ack': True}), ('DevStatusAns', {'battery': 200, 'snr_db': -3})])",
     {"mtype": "Confirmed Data Up", "fcnt16": 1, "fport": 11, "fopts": "030706c83d", "payload": "68656c6c6f", "confirmed": True, "adr": True}),
    ("uplink with ADRACKReq and ACK", "fcnt=2, fport=12, payload=b'\\x01', adr=True, adr_ack_req=True, ack=True",
     {"mtype": "Unconfirmed Data Up", "fcnt16": 2, "adr_ack_req": True, "ack": True, "payload": "01"}),
    ("uplink beyond 16-bit FCnt", "fcnt=0x1000A, fport=13, payload=bytes(range(40))",
     {"fcnt16": 0x000A, "fport": 13, "payload": bytes(range(40)).hex()}),
    ("MAC commands on FPort 0 (NwkSKey)", "fcnt=0x2FFFF, fport=0, payload=M.encode_all([('LinkCheckReq', {}), ('DeviceTimeReq', {})])",
     {"fcnt16": 0xFFFF, "fport": 0, "payload": "020d"}),
]
UPLINK_FCNT = [0, 1, 2, 0x1000A, 0x2FFFF]


@pytest.fixture(scope="module")
def uplinks(micropython, session):
    calls = ", ".join(
        f"h(F.build_uplink(NWK, APP, 0x{DEV_ADDR}, {src}))" for _, src, _ in UPLINKS
    )
    code = PRELUDE + f"NWK = u('{session['nwkskey']}')\nAPP = u('{session['appskey']}')\nprint(json.dumps([{calls}]))"
    phys = micropython.eval_json(code)
    decoded = lorapacket([
        {"op": "decode", "phy": phy, "nwkskey": session["nwkskey"], "appskey": session["appskey"], "fcnt": fcnt}
        for phy, fcnt in zip(phys, UPLINK_FCNT, strict=True)
    ])
    wrong = lorapacket([{"op": "decode", "phy": phys[0], "nwkskey": APPKEY, "appskey": session["appskey"], "fcnt": 0}])
    return decoded, wrong[0]


@pytest.mark.parametrize("i", range(len(UPLINKS)), ids=[u[0] for u in UPLINKS])
def test_lora_packet_verifies_and_decrypts_citynode_uplink(uplinks, i):
    got = uplinks[0][i]
    assert got["mic_ok"] is True
    assert got["dir"] == "up"
    assert got["devaddr"] == DEV_ADDR
    assert {k: got.get(k) for k in UPLINKS[i][2]} == UPLINKS[i][2]


def test_lora_packet_rejects_citynode_uplink_under_another_key(uplinks):
    assert uplinks[1]["mic_ok"] is False


# Downlinks built by lora-packet: (id, lora-packet fields, 32-bit FCnt)
DOWNLINKS = [
    ("LinkADRReq + DevStatusReq in FOpts, FPort 2 payload",
     {"mtype": "Unconfirmed Data Down", "fport": 2, "payload": "a1", "fopts": "035107000106", "adr": True}, 0),
    ("confirmed downlink with ACK and FPending", {"mtype": "Confirmed Data Down", "fport": 2, "payload": "0102", "ack": True, "fpending": True}, 1),
    ("MAC commands on FPort 0: NewChannelReq + RXTimingSetupReq + DeviceTimeAns",
     {"mtype": "Unconfirmed Data Down", "fport": 0, "payload": "0703184f8450" "0805" "0d004e725380"}, 2),
    ("FOpts only (no FPort), beyond 16-bit FCnt", {"mtype": "Unconfirmed Data Down", "fopts": "021403"}, 0x10005),
]


@pytest.fixture(scope="module")
def downlinks(micropython, session):
    reqs = []
    for _, fields, fcnt in DOWNLINKS:
        reqs.append({"op": "build_data", "devaddr": DEV_ADDR, "fcnt": fcnt, "nwkskey": session["nwkskey"],
                     "appskey": session["appskey"], **fields})
    phys = [r["phy"] for r in lorapacket(reqs)]
    last = [None, 0, 1, 0xFFFF]
    code = PRELUDE + f"NWK = u('{session['nwkskey']}')\nAPP = u('{session['appskey']}')\nOTHER = u('000102030405060708090a0b0c0d0e0f')\n"
    code += f"PHYS = {phys!r}\nLAST = {last!r}\n" + """
out = []
for phy, last in zip(PHYS, LAST):
    f = F.parse_downlink(u(phy), NWK, APP, 0x%s, last)
    cmds, problem = M.decode(f.payload if f.fport == 0 else f.fopts)
    out.append({"mtype": F.MTYPE_NAMES[f.mtype], "fcnt": f.fcnt, "fport": f.fport, "adr": f.adr, "ack": f.ack,
                "fpending": f.fpending, "payload": h(f.payload), "commands": [[n, c] for n, c in cmds], "problem": problem})
bad_mic = bytearray(u(PHYS[0])); bad_mic[-1] ^= 0x01
tampered = bytearray(u(PHYS[1])); tampered[9] ^= 0x80
rej = {
    "bad MIC": err(lambda: F.parse_downlink(bytes(bad_mic), NWK, APP, 0x%s, None)),
    "tampered payload": err(lambda: F.parse_downlink(bytes(tampered), NWK, APP, 0x%s, 0)),
    "replayed": err(lambda: F.parse_downlink(u(PHYS[1]), NWK, APP, 0x%s, 1)),
    "old counter": err(lambda: F.parse_downlink(u(PHYS[0]), NWK, APP, 0x%s, 2)),
    "wrong NwkSKey": err(lambda: F.parse_downlink(u(PHYS[2]), OTHER, APP, 0x%s, 1)),
    "wrong AppKey for the join-accept": err(lambda: F.parse_join_accept(OTHER, u(JA))),
    "another device": err(lambda: F.parse_downlink(u(PHYS[0]), NWK, APP, 0x26010001, None)),
}
print(json.dumps([out, rej]))
""".replace("0x%s", "0x" + DEV_ADDR)
    ja = lorapacket([{"op": "build_join_accept", "appkey": APPKEY, "appnonce": "00002a", "netid": "000013",
                      "devaddr": DEV_ADDR, "dlsettings": 0, "rxdelay": 1, "cflist": ""}])[0]["phy"]
    return micropython.eval_json(code.replace("u(JA)", f"u('{ja}')"))


EXPECTED_DOWNLINKS = [
    {"mtype": "UnconfirmedDataDown", "fcnt": 0, "fport": 2, "adr": True, "ack": False, "fpending": False, "payload": "a1",
     "commands": [["LinkADRReq", {"data_rate": 5, "tx_power": 1, "ch_mask": 7, "ch_mask_cntl": 0, "nb_trans": 1}], ["DevStatusReq", {}]],
     "problem": None},
    {"mtype": "ConfirmedDataDown", "fcnt": 1, "fport": 2, "adr": False, "ack": True, "fpending": True, "payload": "0102",
     "commands": [], "problem": None},
    {"mtype": "UnconfirmedDataDown", "fcnt": 2, "fport": 0, "adr": False, "ack": False, "fpending": False,
     "payload": "0703184f84500805" "0d004e725380",
     "commands": [["NewChannelReq", {"ch_index": 3, "frequency_hz": 867100000, "max_dr": 5, "min_dr": 0}],
                  ["RXTimingSetupReq", {"delay_s": 5}], ["DeviceTimeAns", {"gps_seconds": 1400000000, "fraction_256": 128}]],
     "problem": None},
    {"mtype": "UnconfirmedDataDown", "fcnt": 0x10005, "fport": None, "adr": False, "ack": False, "fpending": False, "payload": "",
     "commands": [["LinkCheckAns", {"margin_db": 20, "gw_cnt": 3}]], "problem": None},
]


@pytest.mark.parametrize("i", range(len(DOWNLINKS)), ids=[d[0] for d in DOWNLINKS])
def test_citynode_accepts_lora_packet_downlink(downlinks, i):
    assert downlinks[0][i] == EXPECTED_DOWNLINKS[i]


REJECTIONS = [
    ("bad MIC", "MICError: data frame: MIC mismatch for DevAddr 26011234 FCnt 0 (wrong NwkSKey, or corrupted)"),
    ("tampered payload", "MICError: data frame: MIC mismatch for DevAddr 26011234 FCnt 1 (wrong NwkSKey, or corrupted)"),
    ("replayed", "ReplayError: FCnt 1 is not above the last accepted 1: replayed or old frame"),
    ("old counter", "ReplayError: FCnt 0 is not above the last accepted 2: replayed or old frame"),
    ("wrong NwkSKey", "MICError: data frame: MIC mismatch for DevAddr 26011234 FCnt 2 (wrong NwkSKey, or corrupted)"),
    ("wrong AppKey for the join-accept", "MICError: join-accept: MIC mismatch (wrong AppKey, or a join-accept for another device)"),
    ("another device", "FrameError: DevAddr: frame is for 26011234, not 26010001"),
]


@pytest.mark.parametrize("case,reason", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_citynode_rejects_bad_lora_packet_frames_with_the_reason(downlinks, case, reason):
    assert downlinks[1][case] == reason


def _random_frames(seed: int, n: int) -> list[dict[str, Any]]:
    """Seeded random data frames: counters across 16-bit epochs, FOpts, FPort 0/none/application."""
    import random

    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = rnd.choice(["app", "app", "port0", "fopts-only"])
        fport = {"app": rnd.randint(1, 223), "port0": 0, "fopts-only": None}[kind]
        fopts = "" if kind == "port0" else bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 15))).hex()
        if kind == "fopts-only" and not fopts:
            fopts = "02"
        payload = "" if fport is None else bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1 if kind == "port0" else 0, 60))).hex()
        out.append({
            "i": i, "fport": fport, "fopts": fopts, "payload": payload, "confirmed": rnd.random() < 0.5,
            "adr": rnd.random() < 0.5, "ack": rnd.random() < 0.5, "flag": rnd.random() < 0.5,
            "devaddr": f"{rnd.getrandbits(32):08x}", "fcnt": rnd.choice([rnd.randint(0, 0xFFFF), rnd.randint(0x10000, 0xFFFFFFFF)]),
        })
    return out


def test_random_citynode_uplinks_agree_with_lora_packet(micropython, session):
    cases = _random_frames(seed=4, n=40)
    code = PRELUDE + f"NWK = u('{session['nwkskey']}')\nAPP = u('{session['appskey']}')\n" + """
import sys
while True:
    line = sys.stdin.readline()  # one frame per line: the heap never holds the whole batch as text
    if not line:
        break
    c = json.loads(line)
    print(h(F.build_uplink(NWK, APP, int(c["devaddr"], 16), c["fcnt"], c["fport"], u(c["payload"]), u(c["fopts"]),
                           c["confirmed"], adr=c["adr"], adr_ack_req=c["flag"], ack=c["ack"])))
"""
    phys = micropython.run(code, stdin="".join(json.dumps(c) + "\n" for c in cases)).split()
    decoded = lorapacket([
        {"op": "decode", "phy": phy, "nwkskey": session["nwkskey"], "appskey": session["appskey"], "fcnt": c["fcnt"]}
        for phy, c in zip(phys, cases, strict=True)
    ])
    for c, d in zip(cases, decoded, strict=True):
        want = {"mtype": "Confirmed Data Up" if c["confirmed"] else "Unconfirmed Data Up", "devaddr": c["devaddr"],
                "fcnt16": c["fcnt"] & 0xFFFF, "fport": c["fport"], "fopts": c["fopts"], "adr": c["adr"], "ack": c["ack"],
                "adr_ack_req": c["flag"], "mic_ok": True, "payload": c["payload"] or None}
        assert {k: d.get(k) for k in want} == want, f"case {c}"


def test_random_lora_packet_downlinks_are_accepted_by_citynode(micropython, session):
    cases = _random_frames(seed=5, n=40)
    reqs = [{"op": "build_data", "mtype": "Confirmed Data Down" if c["confirmed"] else "Unconfirmed Data Down",
             "devaddr": c["devaddr"], "fcnt": c["fcnt"], "fport": c["fport"], "fopts": c["fopts"], "payload": c["payload"],
             "adr": c["adr"], "ack": c["ack"], "fpending": c["flag"], "nwkskey": session["nwkskey"], "appskey": session["appskey"]}
            for c in cases]
    phys = [r["phy"] for r in lorapacket(reqs)]
    frames = [[phy, int(c["devaddr"], 16), c["fcnt"] - 1 if c["fcnt"] else None] for phy, c in zip(phys, cases, strict=True)]
    code = PRELUDE + f"NWK = u('{session['nwkskey']}')\nAPP = u('{session['appskey']}')\n" + """
import sys
while True:
    line = sys.stdin.readline()
    if not line:
        break
    phy, addr, last = json.loads(line)
    f = F.parse_downlink(u(phy), NWK, APP, addr, last)
    print(json.dumps([f.confirmed, f.fcnt, f.fport, h(f.fopts), h(f.payload), f.adr, f.ack, f.fpending]))
"""
    out = micropython.run(code, stdin="".join(json.dumps(f) + "\n" for f in frames))
    got = [json.loads(line) for line in out.splitlines()]
    for c, g in zip(cases, got, strict=True):
        assert g == [c["confirmed"], c["fcnt"], c["fport"], c["fopts"], c["payload"], c["adr"], c["ack"], c["flag"]], f"case {c}"
