"""FUOTA application-layer packages (citynode.fuota): every message, both versions, both interpreters.

Each row is one downlink as ChirpStack v4 encodes it (lrwn/src/applayer/{clocksync,multicastsetup,
fragmentation}/{v1,v2}.rs; layouts in docs/design/fuota.md) and the answer the node must send, written
out by hand from those layouts. Every row runs on the real MicroPython unix port and on CPython, which
must agree. Key-derivation vectors are ChirpStack's own test values (lrwn multicastsetup v1 tests).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.paths import firmware_module


def _server_side():
    # the network side of the tests (tests/firmware/fuota/server_side.py), loaded by path
    spec = importlib.util.spec_from_file_location("fuota_server_side", Path(__file__).with_name("server_side.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SERVER = _server_side()

# ChirpStack's multicastsetup test constants (lrwn/src/applayer/multicastsetup/v1.rs, tests)
GEN_APP_KEY = bytes([3, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
APP_KEY = bytes([2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
MC_ROOT_KEY = bytes([4, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
MC_KEY = bytes(range(1, 17))
MC_ADDR = 0x01020304  # DevAddr::from_be_bytes([1, 2, 3, 4]); on air little-endian 04030201


def _aes(key: bytes, block: bytes, decrypt: bool = False) -> bytes:
    c = Cipher(algorithms.AES(key), modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(block) + op.finalize()


# The server side of McGroupSetupReq, from the spec's formulas (TS005 §3.3 / docs/design/fuota.md):
_NODE_KE = _aes(_aes(GEN_APP_KEY, bytes(16)), bytes(16))  # McKEKey of a 1.0.x node from its GenAppKey
MC_KEY_ENC = _aes(_NODE_KE, MC_KEY, decrypt=True).hex()  # McKey_encrypted = aes128_decrypt(McKEKey, McKey)

PRELUDE = """
import json
from binascii import hexlify, unhexlify
from citynode.fuota import clock as C, multicast as M, fragmentation as F, store as S
def u(s):
    return unhexlify(s.replace(" ", ""))
def h(b):
    return None if b is None else hexlify(bytes(b)).decode()
GEN = u("%s")
""" % GEN_APP_KEY.hex()

# (name, object, steps before, downlink (hex), node GPS time, answer (hex) or None, state expression, state)
ROWS = [
    # --- TS003 clock synchronization (fPort 202) ------------------------------------------------
    ("clock v1 PackageVersionReq", "C.ClockSync(1)", [], "00", 0, "000101", "0", 0),  # PackageIdentifier 1, v1
    ("clock v2 PackageVersionReq", "C.ClockSync(2)", [], "00", 0, "000102", "0", 0),
    # AppTimeAns: TimeCorrection 34 (ChirpStack's example: gateway 1234 s, DeviceTime 1200), TokenAns 0
    ("AppTimeAns with the right token", "C.ClockSync(2)", [], "01 22000000 00", 0, None,
     "[o.correction, o.synced, o.token]", [34, True, 1]),
    ("AppTimeAns with a stale token is ignored", "C.ClockSync(2)", [], "01 22000000 05", 0, None,
     "[o.correction, o.synced, o.token]", [0, False, 0]),
    ("AppTimeAns negative correction", "C.ClockSync(1)", [], "01 feffffff 00", 0, None, "o.correction", -2),
    ("AppTimeAns truncated", "C.ClockSync(2)", [], "01 2200", 0, None, "[o.correction, o.synced]", [0, False]),
    # DeviceAppTimePeriodicityReq Period 3 -> 128 * 2^3 s; Ans: Status 0 | Time 1400000000 = 0x53724E00
    ("DeviceAppTimePeriodicityReq", "C.ClockSync(2)", [], "02 03", 1400000000, "02 00 004e7253", "o.period_s", 1024),
    ("ForceDeviceResyncReq NbTransmissions 5", "C.ClockSync(1)", [], "03 05", 0, None, "o.resync_left", 5),
    ("ForceDeviceResyncCmd keeps bits 2..0", "C.ClockSync(2)", [], "03 0f", 0, None, "o.resync_left", 7),
    ("two commands, answers in order", "C.ClockSync(2)", [], "00 02 00", 7, "000102 0200 07000000", "o.period_s", 128),
    ("unknown CID", "C.ClockSync(2)", [], "09 00", 0, None, "0", 0),
    ("empty payload", "C.ClockSync(2)", [], "", 0, None, "0", 0),
    # AppTimeReq (uplink): DeviceTime 1200 = 0x4B0 | Param TokenReq 0, AnsRequired bit 4
    ("AppTimeReq", "C.ClockSync(2)", [], "", 0, None, "h(o.app_time_req(1200, True))", "01b004000010"),
    ("AppTimeReq after a correction carries the next token", "C.ClockSync(2)", ["01 00000000 00"], "", 0, None,
     "h(o.app_time_req(1200))", "01b004000001"),
    # --- TS005 remote multicast setup (fPort 200) -----------------------------------------------
    ("multicast v1 PackageVersionReq", "M.MulticastSetup(GEN, 1)", [], "00", 0, "000201", "0", 0),
    ("multicast v2 PackageVersionReq", "M.MulticastSetup(GEN, 2)", [], "00", 0, "000202", "0", 0),
    # McGroupSetupReq: group 0, McAddr 01020304, McKey encrypted for this node, FCount 0..2^32-1
    ("McGroupSetupReq derives McAppSKey/McNwkSKey", "M.MulticastSetup(GEN, 2)", [],
     "02 00 04030201 " + MC_KEY_ENC + " 00000000 ffffffff", 0, "0200",
     "[h(o.groups[0][1]), h(o.groups[0][2]), o.groups[0][0], o.groups[0][4]]",
     ["95cb4518ee375606735bbacbdce837fa", "c3f6b388bad6c000b23291ad52c11c7b", MC_ADDR, 0xFFFFFFFF]),
    ("McGroupSetupReq for a group the node does not keep: IDerror", "M.MulticastSetup(GEN, 2, 1)", [],
     "02 03 04030201 " + MC_KEY_ENC + " 00000000 ffffffff", 0, "0207", "o.groups", [None]),
    ("McGroupSetupReq truncated", "M.MulticastSetup(GEN, 2)", [], "02 00 04030201", 0, None, "o.groups", [None]),
    ("McGroupStatusReq, one group defined", "M.MulticastSetup(GEN, 1, 4)",
     ["02 01 04030201 " + MC_KEY_ENC + " 00000000 ffffffff"], "01 0f", 0, "01 12 01 04030201", "0", 0),
    ("McGroupStatusReq, none asked", "M.MulticastSetup(GEN, 1, 4)",
     ["02 01 04030201 " + MC_KEY_ENC + " 00000000 ffffffff"], "01 00", 0, "01 10", "0", 0),
    ("McGroupDeleteReq", "M.MulticastSetup(GEN, 1)", ["02 00 04030201 " + MC_KEY_ENC + " 00000000 ffffffff"],
     "03 00", 0, "0300", "o.groups", [None]),
    ("McGroupDeleteReq of an undefined group", "M.MulticastSetup(GEN, 1)", [], "03 00", 0, "0304", "0", 0),
    # McClassCSessionReq, ChirpStack's vector: group 2, SessionTime 1024, TimeOut 15, 868.1 MHz, DR5;
    # McClassCSessionAns, ChirpStack's vector: group 2, TimeToStart 1024 -> 04 02 000400
    ("McClassCSessionReq", "M.MulticastSetup(GEN, 1, 4)", ["02 02 04030201 " + MC_KEY_ENC + " 00000000 ffffffff"],
     "04 02 00040000 0f 287684 05", 0, "04 02 000400", "o.class_c[2]", [1024, 1024 + 32768, 868100000, 5]),
    ("McClassCSessionReq for an undefined group", "M.MulticastSetup(GEN, 1, 4)", [],
     "04 02 00040000 0f 287684 05", 0, "04 12", "o.class_c[2]", None),
    # ChirpStack's error vector 04 1e: group 2 + DR error + freq error + group undefined
    ("McClassCSessionReq, region refuses DR and frequency",
     "M.MulticastSetup(GEN, 1, 4, freq_ok=lambda f: f < 868000000, dr_ok=lambda d: d < 5)", [],
     "04 02 00040000 0f 287684 05", 0, "04 1e", "0", 0),
    ("McClassCSessionReq already started: starts now", "M.MulticastSetup(GEN, 2)",
     ["02 00 04030201 " + MC_KEY_ENC + " 00000000 ffffffff"], "04 00 00040000 0f 287684 05", 2000, "04 00 000000",
     "o.class_c[0][0]", 1024),
    ("McClassCSessionReq over (v2): StartMissed, TimeToStart 0 for ChirpStack's parser",
     "M.MulticastSetup(GEN, 2)", ["02 00 04030201 " + MC_KEY_ENC + " 00000000 ffffffff"],
     "04 00 00040000 00 287684 05", 2000, "04 20 000000", "o.class_c[0]", None),
    ("McClassBSessionReq is not supported: no answer", "M.MulticastSetup(GEN, 2)", [],
     "05 00 00040000 00 287684 05", 0, None, "0", 0),
    # --- TS004 fragmentation (fPort 201) ----------------------------------------------------------
    ("fragmentation v1 PackageVersionReq", "F.Fragmentation(S.RamStore(100), 1)", [], "00", 0, "000301", "0", 0),
    ("fragmentation v2 PackageVersionReq", "F.Fragmentation(S.RamStore(100), 2)", [], "00", 0, "000302", "0", 0),
    # v1 FragSessionSetupReq: FragIndex 0, group 0 | NbFrag 10 | FragSize 10 | BlockAckDelay 1 | Padding 3 |
    # Descriptor 01020304 -> Ans 02 00
    ("v1 FragSessionSetupReq", "F.Fragmentation(S.RamStore(100), 1)", [], "02 01 0a00 0a 01 03 01020304", 0, "0200",
     "[o.active, o.length, h(o.descriptor), o.answer_delay_max_s]", [True, 97, "01020304", 32]),
    ("v1 FragSessionSetupReq too big for the store", "F.Fragmentation(S.RamStore(99), 1)", [],
     "02 01 0a00 0a 00 00 00000000", 0, "0202", "o.active", False),
    ("v1 FragSessionSetupReq FragIndex 1 unsupported", "F.Fragmentation(S.RamStore(100), 1)", [],
     "02 11 0a00 0a 00 00 00000000", 0, "0244", "o.active", False),
    ("v1 FragSessionSetupReq unknown matrix", "F.Fragmentation(S.RamStore(100), 1)", [],
     "02 01 0a00 0a 08 00 00000000", 0, "0201", "o.active", False),
    # v2 FragSessionSetupReq adds SessionCnt (2) | MIC (4); Control bit 6 AckReception
    ("v2 FragSessionSetupReq", "F.Fragmentation(S.RamStore(100), 2)", [],
     "02 01 0a00 0a 40 00 01020304 0500 00000000", 0, "0200", "[o.active, o.ack_reception, o.last_session_cnt]",
     [True, True, 5]),
    ("v2 FragSessionSetupReq replayed SessionCnt", "F.Fragmentation(S.RamStore(100), 2)",
     ["02 01 0a00 0a 00 00 01020304 0500 00000000"], "02 01 0a00 0a 00 00 01020304 0500 00000000", 0, "0210",
     "o.active", True),
    ("v2 FragSessionSetupReq with a v1 length is truncated", "F.Fragmentation(S.RamStore(100), 2)", [],
     "02 01 0a00 0a 00 00 01020304", 0, None, "o.active", False),
    # FragSessionStatusReq Participants 1: v1 Ans ReceivedAndIndex 0000 | MissingFrag 10 | Status 00
    ("v1 FragSessionStatusReq", "F.Fragmentation(S.RamStore(100), 1)", ["02 01 0a00 0a 00 00 00000000"],
     "01 01", 0, "01 0000 0a 00", "0", 0),
    ("v1 FragSessionStatusReq, one fragment in", "F.Fragmentation(S.RamStore(100), 1)",
     ["02 01 0a00 0a 00 00 00000000", "08 0100 00010203040506070809"], "01 01", 0, "01 0100 09 00", "0", 0),
    # v2 (ChirpStack's order): Status | ReceivedAndIndex | MissingFrag
    ("v2 FragSessionStatusReq", "F.Fragmentation(S.RamStore(100), 2)",
     ["02 01 0a00 0a 00 00 00000000 0000 00000000"], "01 01", 0, "01 00 0000 0a", "0", 0),
    ("v2 FragSessionStatusReq without a session", "F.Fragmentation(S.RamStore(100), 2)", [], "01 01", 0,
     "01 04 0000 00", "0", 0),
    ("v1 FragSessionStatusReq without a session: silent", "F.Fragmentation(S.RamStore(100), 1)", [], "01 01", 0,
     None, "0", 0),
    ("FragSessionDeleteReq", "F.Fragmentation(S.RamStore(100), 1)", ["02 01 0a00 0a 00 00 00000000"], "03 00", 0,
     "0300", "o.active", False),
    ("FragSessionDeleteReq without a session", "F.Fragmentation(S.RamStore(100), 1)", [], "03 00", 0, "0304",
     "0", 0),
    # DataFragment: IndexAndN N=1, FragIndex 0 | FragSize bytes
    ("DataFragment of the wrong size is ignored", "F.Fragmentation(S.RamStore(100), 1)",
     ["02 01 0a00 0a 00 00 00000000"], "08 0100 000102", 0, None, "[o.received, o.missing()]", [0, 10]),
    ("DataFragment for another FragIndex is ignored", "F.Fragmentation(S.RamStore(100), 1)",
     ["02 01 0a00 0a 00 00 00000000"], "08 0140 00010203040506070809", 0, None, "o.received", 0),
    ("DataFragment without a session", "F.Fragmentation(S.RamStore(100), 1)", [], "08 0100 00010203040506070809",
     0, None, "o.received", 0),
    ("DataFragment N=0 is ignored", "F.Fragmentation(S.RamStore(100), 1)", ["02 01 0a00 0a 00 00 00000000"],
     "08 0000 00010203040506070809", 0, None, "o.received", 0),
    ("setup then PackageVersionReq in one frame", "F.Fragmentation(S.RamStore(100), 1)", [],
     "02 01 0a00 0a 00 00 00000000 00", 0, "0200 000301", "o.active", True),
]


def _program(rows: list[tuple]) -> str:
    lines = [PRELUDE, "out = []"]
    for _name, make, pre, down, now, _ans, expr, _state in rows:
        lines.append(f"o = {make}")
        for p in pre:
            lines.append(f"o.handle(u({p!r}))")
        lines.append(f"a = o.handle(u({down!r}), {now})")
        lines.append(f"out.append([h(a), {expr}])")
    lines.append("print(json.dumps(out))")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def results(micropython) -> dict[str, list]:
    code = _program(ROWS)
    mpy = micropython.eval_json(code)
    firmware_module("citynode")  # the device package importable on CPython, as on a node
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "<fuota rows>", "exec"), {})
    cpy = json.loads(buf.getvalue().strip().splitlines()[-1])
    return {"micropython": mpy, "cpython": cpy}


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
@pytest.mark.parametrize("i", range(len(ROWS)), ids=[r[0] for r in ROWS])
def test_message(results: dict[str, list], interpreter: str, i: int) -> None:
    name, _make, _pre, down, _now, answer, expr, state = ROWS[i]
    got_answer, got_state = results[interpreter][i]
    want = None if answer is None else answer.replace(" ", "")
    assert got_answer == want, f"{name}: downlink {down!r} answered {got_answer!r}, want {want!r}"
    assert got_state == state, f"{name}: {expr} is {got_state!r}, want {state!r}"


# ChirpStack's key-derivation vectors (lrwn/src/applayer/multicastsetup/v1.rs tests)
KEY_VECTORS = [
    ("McRootKey from GenAppKey (1.0.x)", f"h(M.mc_root_key(u('{GEN_APP_KEY.hex()}')))", "55344e82570eaec8bf03b99962d1f445"),
    ("McRootKey from AppKey (1.1)", f"h(M.mc_root_key(u('{APP_KEY.hex()}'), True))", "264fd859583fcc670241ac071cc9f5bb"),
    ("McKEKey", f"h(M.mc_ke_key(u('{MC_ROOT_KEY.hex()}')))", "9083bebf704257883160dbfcde33ad71"),
    ("McAppSKey", f"h(M.session_keys(u('{MC_KEY.hex()}'), {MC_ADDR})[0])", "95cb4518ee375606735bbacbdce837fa"),
    ("McNwkSKey", f"h(M.session_keys(u('{MC_KEY.hex()}'), {MC_ADDR})[1])", "c3f6b388bad6c000b23291ad52c11c7b"),
    # encrypt_mc_key(McKEKey 01*16, McKey 02*16) = 3437d6e2...: the node gets 02*16 back
    ("McKey from McKey_encrypted", "h(M.decrypt_mc_key(bytes([1] * 16), u('3437d6e231d702419b51b4947271b611')))",
     "02" * 16),
]


@pytest.mark.parametrize(("name", "expr", "want"), KEY_VECTORS, ids=[k[0] for k in KEY_VECTORS])
def test_multicast_keys_on_micropython(micropython, name: str, expr: str, want: str) -> None:
    assert micropython.eval_json(PRELUDE + f"print(json.dumps({expr}))") == want, name


FUZZ = PRELUDE + """
import random
random.seed(19)
objs = [C.ClockSync(1), C.ClockSync(2), M.MulticastSetup(GEN, 1, 4), M.MulticastSetup(GEN, 2),
        F.Fragmentation(S.RamStore(600), 1, 8), F.Fragmentation(S.RamStore(600), 2, 8)]
# a valid session first, so that fragments and status requests reach the decoder
objs[4].handle(u("02 01 1400 1e 00 00 00000000"))
objs[5].handle(u("02 01 1400 1e 00 00 00000000 0000 00000000"))
kinds = {}
for i in range(3000):
    o = objs[i % len(objs)]
    n = random.getrandbits(5)
    b = bytearray(random.getrandbits(8) for _ in range(n))
    if n and random.getrandbits(1):
        b[0] = random.getrandbits(3)  # mostly known CIDs
    if n > 2 and random.getrandbits(2) == 0:
        b[0] = 8
    a = o.handle(b, random.getrandbits(32))
    t = type(a).__name__
    kinds[t] = kinds.get(t, 0) + 1
print(json.dumps(sorted(kinds)))
"""


def test_random_downlinks_never_raise(micropython) -> None:
    # 3000 random payloads across the six package objects: every answer is bytes or None, nothing raises
    assert micropython.eval_json(FUZZ) == ["NoneType", "bytes"]


def test_packages_are_imported_only_when_their_port_is_used(micropython) -> None:
    code = PRELUDE.replace("from citynode.fuota import clock as C, multicast as M, fragmentation as F, store as S",
                           "import sys\nfrom citynode.fuota import Fuota") + """
def loaded():
    return sorted(m for m in ("clock", "multicast", "fragmentation") if "citynode.fuota." + m in sys.modules)
node = Fuota(GEN, None)
steps = [loaded()]
a = node.handle(202, u("00"))
steps.append([h(a), loaded()])
a = node.handle(10, u("00"))
steps.append([h(a), loaded()])
a = node.handle(200, u("00"))
steps.append([h(a), loaded()])
print(json.dumps(steps))
"""
    assert micropython.eval_json(code) == [
        [],
        ["000102", ["clock"]],  # fPort 202: TS003 PackageVersionAns
        [None, ["clock"]],  # an application port is none of FUOTA's business
        ["000202", ["clock", "multicast"]],
    ]


# --- multicast frames (LoRaWAN 1.0.4 §4.3.3 / §4.4 with the group's keys) ------------------------

MC_APP = bytes.fromhex("95cb4518ee375606735bbacbdce837fa")  # ChirpStack's McAppSKey / McNwkSKey of MC_KEY, MC_ADDR
MC_NWK = bytes.fromhex("c3f6b388bad6c000b23291ad52c11c7b")


def mc_frame(fcnt: int, port: int, clear: bytes, *, addr: int = MC_ADDR, mic_key: bytes = MC_NWK, **kw) -> bytes:
    return SERVER.mc_frame(fcnt, port, clear, app_key=MC_APP, nwk_key=mic_key, addr=addr, **kw)


# (name, frames before, frame, node GPS time or None, expected (group, FPort, payload hex) or None)
FRAMES = [
    ("a DataFragment to the group", [], mc_frame(0, 201, bytes.fromhex("080100aabbcc")), None, [0, 201, "080100aabbcc"]),
    ("a long payload (several A_i blocks)", [], mc_frame(5, 201, bytes(range(53))), None, [0, 201, bytes(range(53)).hex()]),
    ("inside the Class C window", [], mc_frame(0, 201, b"\x08"), 1500, [0, 201, "08"]),
    ("before the Class C window", [], mc_frame(0, 201, b"\x08"), 1000, None),
    ("after the Class C window", [], mc_frame(0, 201, b"\x08"), 1024 + 1024, None),
    ("replayed FCnt", [mc_frame(7, 201, b"\x01")], mc_frame(7, 201, b"\x02"), None, None),
    ("next FCnt", [mc_frame(7, 201, b"\x01")], mc_frame(8, 201, b"\x02"), None, [0, 201, "02"]),
    ("16-bit roll-over", [mc_frame(0xFFFF, 201, b"\x01")], mc_frame(0x10000, 201, b"\x02"), None, [0, 201, "02"]),
    ("wrong MIC", [], mc_frame(0, 201, b"\x08", mic_key=MC_APP), None, None),
    ("another DevAddr", [], mc_frame(0, 201, b"\x08", addr=0x01020305), None, None),
    ("FOpts (MAC commands) are not allowed", [], mc_frame(0, 201, b"\x08", fopts=b"\x02"), None, None),
    ("ACK is not allowed", [], mc_frame(0, 201, b"\x08", fctrl=0x20), None, None),
    ("FPort 0 is not allowed", [], mc_frame(0, 0, b"\x08"), None, None),
    ("a confirmed downlink", [], mc_frame(0, 201, b"\x08", mhdr=0xA0), None, None),
    ("too short", [], bytes.fromhex("60040302010000000102030405"), None, None),
]


@pytest.mark.parametrize(("name", "before", "frame", "now", "want"), FRAMES, ids=[f[0] for f in FRAMES])
def test_multicast_frames(micropython, name, before, frame, now, want) -> None:
    code = PRELUDE + f"""
o = M.MulticastSetup(GEN, 2)
o.handle(u("02 00 04030201 {MC_KEY_ENC} 00000000 ffffffff"))
o.handle(u("04 00 00040000 0a 287684 05"), 0)  # Class C from GPS 1024 for 2^10 s
for f in {[b.hex() for b in before]!r}:
    o.open_frame(u(f))
r = o.open_frame(u({frame.hex()!r}), {now!r})
print(json.dumps(None if r is None else [r[0], r[1], h(r[2])]))
"""
    assert micropython.eval_json(code) == want, name
