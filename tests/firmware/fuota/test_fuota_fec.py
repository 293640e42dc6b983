"""TS004 forward error correction: an independent encoder feeds the node's decoder on MicroPython.

The encoder here is written from the specification's description (docs/design/fuota.md, "The FEC
code") and is first checked against ChirpStack's own encoder test tables (lrwn/src/applayer/
fragmentation/{v1,v2}.rs: bytes 0..99, fragment size 10, redundancy 10). Its fragments, with some lost,
go to the node as DataFragment downlinks; whether the block can be rebuilt is decided independently by
the rank over GF(2) of the coded rows that arrived, and the node must agree: complete with the exact
bytes when the rank allows it, incomplete (and saying how many fragments it misses) when it does not.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from gateway.field.micropython import run_code


def _server_side():
    # the network side of the tests (tests/firmware/fuota/server_side.py), loaded by path
    spec = importlib.util.spec_from_file_location("fuota_server_side", Path(__file__).with_name("server_side.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SERVER = _server_side()
encode, matrix_line, decodable = SERVER.encode, SERVER.matrix_line, SERVER.decodable


# ChirpStack's encoder tables: the coded fragments 11..20 of bytes 0..99, size 10, redundancy 10
CHIRPSTACK_CODED = {
    1: ["26262222 2e2e2222 2626", "54555657 58596a6b 7c7d", "5c5d6e6f 10110203 0405", "36363232 3e3e2222 3636",
        "3a3a0e0e 0a0a0606 0a0a", "0e0e3232 36362222 3e3e", "02020e0e 72727676 6262", "1e1e1a1a 66665a5a 4e4e",
        "1a1b1c1d 1e1f3031 2223", "22232425 26271819 0a0b"],
    2: ["68695253 5c5d7677 7071", "54555657 58596a6b 7c7d", "5c5d6e6f 10110203 0405", "6c6d6e6f 60614243 5455",
        "12132425 26272829 3a3b", "48497a7b 7c7d6e6f 7071", "1c1d2e2f 50515253 4445", "58595253 2c2d1617 0001",
        "1a1b1c1d 1e1f3031 2223", "00013a3b 44457e7f 6869"],
}


@pytest.mark.parametrize("version", [1, 2])
def test_the_test_encoder_matches_chirpstacks_tables(version: int) -> None:
    frags = encode(bytes(range(100)), 10, 10, version)
    assert frags[:10] == [bytes(range(i * 10, i * 10 + 10)) for i in range(10)]
    assert [f.hex() for f in frags[10:]] == [s.replace(" ", "") for s in CHIRPSTACK_CODED[version]]


LINES = [(m, n) for m in (1, 2, 3, 4, 7, 8, 10, 16, 33, 100, 1024, 1000) for n in (1, 2, 5, 17)]


@pytest.mark.parametrize("version", [1, 2])
def test_the_nodes_parity_lines_are_the_specifications(micropython, version: int) -> None:
    code = f"""
import json
from citynode.fuota.fragmentation import parity_line
out = []
for m, n in {LINES!r}:
    line = bytearray((m + 7) // 8)
    parity_line(n, m, line, {version})
    out.append(hexlify(line).decode())
print(json.dumps(out))
"""
    got = micropython.eval_json(code.replace("import json", "import json\nfrom binascii import hexlify"))
    want = []
    for m, n in LINES:
        bitmap = bytearray((m + 7) // 8)
        for j in matrix_line(n, m, version):
            bitmap[j >> 3] |= 1 << (j & 7)
        want.append(bitmap.hex())
    assert got == want


NODE = """
import json, sys
from binascii import unhexlify, hexlify
from citynode.fuota import fragmentation as F, store as S
args = json.loads(sys.stdin.readline())
fr = F.Fragmentation(S.RamStore(args["m"] * args["size"]), args["version"], args["max_missing"],
                     unhexlify(args["key"]) if args["key"] else None)
fr.handle(unhexlify(args["setup"]))
for line in sys.stdin:
    fr.handle(unhexlify(line.strip()))
st = fr.handle(unhexlify("0101"))
print(json.dumps({"complete": fr.complete, "data": hexlify(fr.store.buf[:fr.length]).decode(),
                  "missing": fr.missing(), "received": fr.received, "status": hexlify(st).decode() if st else None,
                  "mic_error": fr.mic_error, "pending": hexlify(fr.pending).decode() if fr.pending else None}))
"""


def _setup(version: int, m: int, size: int, padding: int, cnt: int = 0, mic: bytes = bytes(4)) -> str:
    # FragSessionSetupReq: FragIndex 0 + group 0 | NbFrag | FragSize | Control (AckReception on v2) | Padding |
    # Descriptor | (v2) SessionCnt | MIC
    b = bytes([0x02, 0x01, m & 0xFF, m >> 8, size, 0x40 if version == 2 else 0, padding]) + bytes.fromhex("01020304")
    if version == 2:
        b += cnt.to_bytes(2, "little") + mic
    return b.hex()


def run_node(micropython, version: int, data: bytes, size: int, redundancy: int, lost: set[int],
             order: list[int] | None = None, max_missing: int | None = None, key: bytes | None = None,
             mic: bytes = bytes(4)) -> dict:
    padding = (size - len(data) % size) % size
    padded = data + bytes(padding)
    m = len(padded) // size
    frags = encode(padded, size, redundancy, version)
    order = order if order is not None else list(range(len(frags)))
    lines = [(bytes([0x08, (i + 1) & 0xFF, (i + 1) >> 8]) + frags[i]).hex() for i in order if i not in lost]
    args = {"m": m, "size": size, "version": version, "max_missing": max_missing or redundancy + 4,
            "key": key.hex() if key else None, "setup": _setup(version, m, size, padding, mic=mic)}
    # The fragments come in on stdin and the node keeps its whole block: more than the 96k default heap
    # of the 64-bit unix port holds for the larger cases (the decoder's own bound is measured below).
    out = run_code(NODE, heapsize="192k", stdin=json.dumps(args) + "\n" + "\n".join(lines) + "\n").stdout
    return json.loads(out.strip().splitlines()[-1])


def _data(n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.randrange(256) for _ in range(n))


# (name, version, block bytes, fragment size, coded fragments, lost fragment indexes (0-based N-1))
CASES = [
    ("no loss", 1, 1000, 50, 4, set()),
    ("no loss, padded block", 2, 997, 50, 4, set()),
    ("one uncoded fragment lost", 1, 1000, 50, 4, {0}),
    ("one uncoded fragment lost", 2, 1000, 50, 4, {0}),
    ("first and last fragment lost", 2, 2000, 50, 8, {0, 39}),
    ("coded fragments lost only", 1, 1000, 50, 4, {20, 21, 22}),
    ("10 % lost, 20 % redundancy", 1, 5000, 50, 20, {3, 14, 15, 27, 40, 41, 42, 66, 80, 99}),
    ("10 % lost, 20 % redundancy", 2, 5000, 50, 20, {3, 14, 15, 27, 40, 41, 42, 66, 80, 99}),
    ("losses in the coded part too", 2, 5000, 50, 20, {1, 2, 50, 51, 52, 100, 101, 110}),
]


@pytest.mark.parametrize(("name", "version", "nbytes", "size", "red", "lost"), CASES,
                         ids=[f"v{c[1]} {c[0]}" for c in CASES])
def test_losses_the_redundancy_covers_are_rebuilt(micropython, name, version, nbytes, size, red, lost) -> None:
    data = _data(nbytes, len(lost) + version)
    m = (nbytes + size - 1) // size
    assert decodable(m, red, lost, version), "the case must be decodable for the code itself"
    got = run_node(micropython, version, data, size, red, lost)
    assert got["complete"], got
    assert got["data"] == data.hex()
    assert got["missing"] == 0
    # M equations are needed; fragments after completion are not counted
    assert m <= got["received"] <= m + red - len(lost)


@pytest.mark.parametrize("version", [1, 2])
def test_one_loss_beyond_the_redundancy_is_reported_incomplete(micropython, version: int) -> None:
    # 40 uncoded + 4 coded, 5 uncoded lost: 4 equations (of full rank here) for 5 unknowns
    data = _data(800, 5)
    got = run_node(micropython, version, data, 20, 4, {0, 1, 2, 3, 9})
    assert not got["complete"]
    assert got["missing"] == 1
    # FragSessionStatusAns: NbFragReceived 39 (0x0027), MissingFrag 1, no status bit
    assert got["status"] == ("01 2700 01 00" if version == 1 else "01 00 2700 01").replace(" ", "")


@pytest.mark.parametrize("version", [1, 2])
def test_the_node_agrees_with_the_rank_oracle_whatever_the_order(micropython, version: int) -> None:
    # 40 uncoded + 8 coded, losses from 5 to 9 over several seeds, fragments shuffled (coded ones may
    # come before the uncoded ones they combine): complete exactly when the code allows it.
    m, size, red = 40, 8, 8
    outcomes = []
    for seed in range(6):
        rnd = random.Random(seed)
        data = _data(m * size, seed)
        lost = set(rnd.sample(range(m + red), 5 + seed % 5))
        order = list(range(m + red))
        rnd.shuffle(order)
        got = run_node(micropython, version, data, size, red, lost, order=order, max_missing=m)
        want = decodable(m, red, lost, version)
        assert got["complete"] == want, (seed, sorted(lost))
        if want:
            assert got["data"] == data.hex()
        outcomes.append(want)
    assert True in outcomes and False in outcomes, "the seeds must exercise both outcomes"


@pytest.mark.parametrize(("tamper", "mic_error", "pending"), [(False, False, "0400"), (True, True, "0404")])
def test_v2_data_block_mic(micropython, tamper: bool, mic_error: bool, pending: str) -> None:
    gen = bytes(range(16))
    data = _data(333, 9)
    mic = SERVER.v2_mic(gen, 0, bytes.fromhex("01020304"), data)
    if tamper:
        mic = bytes([mic[0] ^ 1]) + mic[1:]
    got = run_node(micropython, 2, data, 20, 3, {4}, key=gen, mic=mic)
    assert got["complete"] and got["data"] == data.hex()
    assert got["mic_error"] is mic_error
    assert got["pending"] == pending  # FragDataBlockReceivedReq: FragIndex 0, bit 2 MICError


MEMORY = """
import gc, json, sys
from binascii import unhexlify
from citynode.fuota import fragmentation as F, store as S
args = json.loads(sys.stdin.readline())
fr = F.Fragmentation(S.FileStore("block.bin", 1 << 20), 1, args["max_missing"])
gc.collect(); a0 = gc.mem_alloc()
fr.handle(unhexlify(args["setup"]))
gc.collect(); session = gc.mem_alloc() - a0
peak = session
for line in sys.stdin:
    fr.handle(unhexlify(line.strip()))
    gc.collect()
    peak = max(peak, gc.mem_alloc() - a0)
print(json.dumps({"session": session, "peak": peak, "complete": fr.complete}))
"""


def fec_ram_bound(m: int, size: int, max_missing: int) -> int:
    """docs/design/fuota.md "Memory bound": pivot rows, pivot flags and column->fragment map, the
    column of each fragment (2 bytes), two fragment bitmaps and three fragment buffers."""
    c = min(max_missing, m)
    return c * ((c + 7) // 8) + 3 * c + 2 * m + 2 * ((m + 7) // 8) + 3 * size


@pytest.mark.slow
def test_fec_memory_bound(micropython, tmp_path) -> None:
    # a 50 KB data block in 50-byte fragments (DR5 EU868 leaves room for 50 + 3), 20 % redundancy,
    # 10 % lost; the block itself is in a file, the heap holds only the decoder
    size, m = 50, 1024
    red = (m * 20 + 99) // 100
    data = _data(m * size, 1)
    frags = encode(data, size, red, 1)
    lost = set(random.Random(3).sample(range(m), m // 10))
    assert decodable(m, red, lost, 1)
    lines = [(bytes([0x08, (i + 1) & 0xFF, (i + 1) >> 8]) + frags[i]).hex() for i in range(m + red) if i not in lost]
    args = {"max_missing": red, "setup": _setup(1, m, size, 0), "m": m, "size": size}
    got = json.loads(micropython.run(MEMORY, stdin=json.dumps(args) + "\n" + "\n".join(lines) + "\n",
                                     cwd=tmp_path).strip().splitlines()[-1])
    assert got["complete"]
    assert (tmp_path / "block.bin").read_bytes() == data
    bound = fec_ram_bound(m, size, red)
    # allocation granularity (16-byte GC blocks) and the session's own objects on top of the arrays
    assert got["peak"] <= bound + 1536, (got, bound)


# --- ChirpStack's FUOTA flow, end to end, on one node ----------------------------------------------

FLOW_NODE = """
import json, sys
from binascii import unhexlify, hexlify
from citynode.fuota import Fuota, store, package
args = json.loads(sys.stdin.readline())
node = Fuota(unhexlify(args["gen"]), store.RamStore(args["block"]), (args["v"],) * 3)
answers = []
for line in sys.stdin:
    port, now, data = line.split()
    port, now, data = int(port), int(now), unhexlify(data)
    if port < 0:  # a whole multicast frame, as the MAC hears it in the Class C window
        opened = node.multicast.open_frame(data, now)
        if opened is None:
            answers.append(["refused", line.strip()])
            continue
        port, data = opened[1], opened[2]
    a = node.handle(port, data, now)
    answers.append(None if a is None else [port, hexlify(a).decode()])
fr = node.fragmentation
g = node.multicast.groups[0]
manifest, reason = package.check(fr.store, fr.length, unhexlify(args["pub"]), "0.1.0")
print(json.dumps({"answers": answers, "complete": fr.complete, "mic_error": fr.mic_error,
                  "keys": [hexlify(g[1]).decode(), hexlify(g[2]).decode()], "class_c": node.multicast.class_c[0],
                  "reason": reason, "target": manifest and manifest["target"]}))
"""


@pytest.mark.parametrize("version", [1, 2])
def test_chirpstacks_flow_delivers_a_signed_package(micropython, tmp_path, version: int) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from gateway.field import fuota

    for name, ver, body in (("a", "0.1.0", b"old" * 200), ("b", "0.2.0", bytes(range(256)) * 6)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "VERSION").write_text(ver)
        (tmp_path / name / "app.mpy").write_bytes(body)
    pair = fuota.generate_keypair()
    payload = fuota.build_package(tmp_path / "a", tmp_path / "b", load_pem_private_key(pair.private_pem, None))
    gen, mc_key, mc_addr = bytes(range(100, 116)), bytes(range(16)), 0x01FF0042
    frag_size, m = 40, -(-len(payload) // 40)
    lost = {3, 4, 11, m - 1}  # about 10 % of the uncoded fragments; 20 % redundancy
    assert decodable(m, -(-m * 20 // 100), lost, version)
    flow = SERVER.chirpstack_flow(version, payload, gen, mc_key, mc_addr, frag_size, 20, 1_400_000_600, 1_400_000_000, lost)
    stdin = json.dumps({"gen": gen.hex(), "block": m * frag_size, "v": version, "pub": pair.public_raw.hex()}) + "\n"
    stdin += "".join(f"{port} {now} {data.hex()}\n" for port, now, data in flow)
    # 192 KB: the three packages, the package check and Ed25519 are compiled from source here on the
    # 64-bit port (a node runs them frozen or as .mpy; its heap is measured on the frozen build)
    got = json.loads(run_code(FLOW_NODE, heapsize="192k", stdin=stdin).stdout.strip().splitlines()[-1])
    answers = [a for a in got["answers"] if a is not None]
    received = m + -(-m * 20 // 100) - len(lost)
    # what ChirpStack's uplink handlers accept as success: no IDerror, no setup error bits, no session
    # error bits and TimeToStart = 600 s, then a FragSessionStatusAns with MissingFrag 0 and no status bit
    assert answers[:3] == [[200, "0200"], [201, "0200"], [200, "0400" + (600).to_bytes(3, "little").hex()]]
    assert len(answers) == 4 and answers[3][0] == 201
    ans = bytes.fromhex(answers[3][1])
    assert ans[0] == 0x01 and len(ans) == 5
    st, rec, missing = (ans[4], ans[1:3], ans[3]) if version == 1 else (ans[1], ans[2:4], ans[4])
    rec_and_index = int.from_bytes(rec, "little")
    assert (st, missing, rec_and_index >> 14) == (0, 0, 0)
    assert m <= rec_and_index & 0x3FFF <= received
    assert got["complete"] and not got["mic_error"]
    # the node's multicast keys are the ones ChirpStack gives the multicast group (McKey -> session keys)
    block = mc_addr.to_bytes(4, "little") + bytes(11)
    assert got["keys"] == [SERVER.aes(mc_key, b"\x01" + block).hex(), SERVER.aes(mc_key, b"\x02" + block).hex()]
    assert got["class_c"] == [1_400_000_600, 1_400_000_600 + 1024, 869525000, 3]
    assert (got["reason"], got["target"]) == (None, "0.2.0")


def test_a_block_rebuilt_in_a_file(micropython, tmp_path) -> None:
    # the node's store: a file on the flash filesystem, so the block costs no heap
    size, m, red = 32, 32, 8
    data = _data(m * size - 5, 4)
    padded = data + bytes(5)
    frags = encode(padded, size, red, 2)
    lost = {0, 5, 31}
    assert decodable(m, red, lost, 2)
    code = """
import json, sys
from binascii import unhexlify
from citynode.fuota import fragmentation as F, store as S
st = S.FileStore("block.bin", 4096)
fr = F.Fragmentation(st, 2, 8)
for line in sys.stdin:
    fr.handle(unhexlify(line.strip()))
st.close()
print(json.dumps([fr.complete, fr.length]))
"""
    lines = [_setup(2, m, size, 5)] + [(bytes([0x08, i + 1, 0]) + frags[i]).hex() for i in range(m + red) if i not in lost]
    assert json.loads(micropython.run(code, stdin="\n".join(lines) + "\n", cwd=tmp_path).strip().splitlines()[-1]) == [True, m * size - 5]
    assert (tmp_path / "block.bin").read_bytes() == padded


def test_a_block_larger_than_the_file_store_is_refused(micropython, tmp_path) -> None:
    code = """
from binascii import unhexlify, hexlify
from citynode.fuota import fragmentation as F, store as S
fr = F.Fragmentation(S.FileStore("block.bin", 1000), 1)
print(hexlify(fr.handle(unhexlify("02 01 1500 32 00 00 00000000".replace(" ", "")))).decode(), fr.active)
"""
    # 21 fragments of 50 bytes = 1050 > 1000: FragSessionSetupAns "not enough memory"
    assert micropython.run(code, cwd=tmp_path).split() == ["0202", "False"]
