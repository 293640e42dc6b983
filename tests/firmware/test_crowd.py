"""Crowd counting (citynode.crowd) on the real MicroPython unix port.

Frame layouts from IEEE 802.11-2020 9.2.4.1 (Frame Control) and 9.3.3 (management frame header);
HMAC from RFC 2104, checked against CPython's independent `hmac` module. Record and replay formats as
documented in citynode/crowd/__init__.py and citynode_sim/replay.py, written here with `struct`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct

import pytest

BCAST = b"\xff" * 6
MAC1 = bytes.fromhex("3c5ab4010203")
MAC2 = bytes.fromhex("da a1 19 aa bb cc".replace(" ", ""))  # locally administered (randomised)


def mgmt(fc0: int, addr2: bytes = MAC1, body: bytes = b"\x00\x00\x01\x04\x02\x04\x0b\x16") -> bytes:
    """A management frame: FC, duration, addr1, addr2, addr3, sequence control, body."""
    return bytes((fc0, 0)) + b"\x00\x00" + BCAST + addr2 + BCAST + b"\x10\x00" + body


def record(frame: bytes, rssi: int, channel: int = 6) -> bytes:
    return struct.pack("<HbB", len(frame), rssi, channel) + frame


# name: (frame bytes, expected classification: "probe", "other", "malformed")
FRAMES = {
    "probe request (type 0 subtype 4)": (mgmt(0x40), "probe"),
    "probe request, header only (24 bytes)": (mgmt(0x40)[:24], "probe"),
    "probe request, randomised address": (mgmt(0x40, MAC2), "probe"),
    "probe response (subtype 5)": (mgmt(0x50), "other"),
    "beacon (subtype 8)": (mgmt(0x80), "other"),
    "association request (subtype 0)": (mgmt(0x00), "other"),
    "authentication (subtype 11)": (mgmt(0xB0), "other"),
    "data frame (type 2)": (mgmt(0x08), "other"),
    "control RTS (type 1 subtype 11)": (bytes((0xB4, 0)) + b"\x00\x00" + BCAST + MAC1, "other"),
    "truncated probe request (23 bytes)": (mgmt(0x40)[:23], "malformed"),
    "truncated to frame control only": (b"\x40\x00", "malformed"),
    "one byte": (b"\x40", "malformed"),
    "empty": (b"", "malformed"),
    "protocol version 1": (mgmt(0x41), "malformed"),
    "group transmitter address": (mgmt(0x40, b"\x01\x00\x5e\x00\x00\x01"), "malformed"),
}


@pytest.fixture(scope="module")
def classified(micropython):
    code = r"""
import json
from citynode.crowd.probe import classify
frames = json.loads(%r)
out = {}
for name in frames:
    b = bytes.fromhex(frames[name])
    r = classify(b, 0, len(b))
    out[name] = "probe" if r == 10 else ("other" if r == -1 else ("malformed" if r == -2 else r))
print(json.dumps(out))
""" % json.dumps({k: v[0].hex() for k, v in FRAMES.items()})
    return micropython.eval_json(code)


@pytest.mark.parametrize("name", list(FRAMES))
def test_frame_classification(classified, name):
    assert classified[name] == FRAMES[name][1]


def test_probe_counter_parses_records_and_feeds_transmitters(micropython):
    buf = b"".join(
        record(f, r)
        for f, r in [
            (mgmt(0x40, MAC1), -50),
            (mgmt(0x80, MAC2), -40),  # beacon: ignored
            (mgmt(0x40, MAC2), -60),
            (mgmt(0x40, MAC1), -55),  # same device again
            (mgmt(0x40)[:20], -50),  # truncated
            (mgmt(0x40, bytes.fromhex("001122334455")), -95),  # below the floor
        ]
    )
    out = micropython.eval_json(
        r"""
import json
from citynode.crowd.anonymiser import Anonymiser
from citynode.crowd.probe import ProbeCounter
class Source:
    def __init__(self, chunks):
        self.chunks = chunks
    def read(self, buf):
        if not self.chunks:
            return 0
        c = self.chunks.pop(0)
        buf[:len(c)] = c
        return len(c)
data = bytes.fromhex(%r)
tail = bytes((200, 0, 0, 0)) + bytes(10)   # a record claiming 200 bytes with 10 present
a = Anonymiser(rssi_floor_dbm=-90)
pc = ProbeCounter(Source([data, tail]), a, buf_size=512)
n = pc.poll()
print(json.dumps({"handled": n, "stats": [pc.frames, pc.probes, pc.ignored, pc.malformed],
                  "counts": a.counts(), "below": a.below_floor, "wiped": not any(pc._buf)}))
"""
        % buf.hex()
    )
    assert out["handled"] == 4
    assert out["stats"] == [6, 4, 1, 2], "6 records: 4 probes, 1 beacon, 1 truncated + 1 bad record length"
    assert out["counts"] == {"wifi_devices": 2, "ble_devices": 0}
    assert out["below"] == 1
    assert out["wiped"], "the frame buffer is zeroed after each drain"


ANON = r"""
import json
from citynode.crowd.anonymiser import Anonymiser
class Keys:
    # injectable urandom: a fixed list of keys, for checking the HMAC against CPython
    def __init__(self, keys):
        self.keys = keys
    def __call__(self, n):
        return self.keys.pop(0)
def slots(a, kind):
    t = a._sets[kind]._t
    return sorted(bytes(t[i:i + 4]).hex() for i in range(0, len(t), 4) if any(t[i:i + 4]))
def mac(i):
    return bytes((0x3c, 0x5a, 0xb4, (i >> 16) & 255, (i >> 8) & 255, i & 255))
"""


def test_hmac_sha256_matches_rfc2104_reference(micropython):
    key = bytes(range(32))
    out = micropython.eval_json(
        ANON
        + r"""
a = Anonymiser(urandom=Keys([bytes(range(32))]))
a.add_wifi(mac(1), 0, -50)
print(json.dumps(slots(a, 0)))
"""
    )
    d = hmac.new(key, bytes.fromhex("3c5ab4000001"), hashlib.sha256).digest()
    assert out == [(d[:3] + bytes((d[3] | 1,))).hex()]  # the first 4 bytes, low bit of the last set


def test_anonymiser_counts_and_windows(micropython):
    out = micropython.eval_json(
        ANON
        + r"""
r = {}
a = Anonymiser(rssi_floor_dbm=-80)
for i in range(50):
    a.add_wifi(mac(i), 0, -60)
r["distinct"] = a.counts()["wifi_devices"]
r["again_new"] = [a.add_wifi(mac(7), 0, -60), a.add_wifi(mac(7), 0, -70)]
r["same_twice"] = a.counts()["wifi_devices"]
a.add_ble(mac(7), 0, -60)
r["ble_separate"] = a.counts()
r["floor"] = [a.add_wifi(mac(100), 0, -81), a.add_wifi(mac(101), 0, -80), a.below_floor]
w1 = slots(a, 1)
r["end"] = a.end_window()
r["after_end"] = [a.counts(), slots(a, 0), slots(a, 1)]
a.add_ble(mac(7), 0, -60)
w2 = slots(a, 1)
r["w1_w2"] = [w1, w2]
# same key twice (injected): the stored hash repeats, so it is the fresh key that unlinks windows
b = Anonymiser(urandom=Keys([b"k" * 32, b"k" * 32]))
b.add_ble(mac(7), 0, -60); s1 = slots(b, 1); b.end_window(); b.add_ble(mac(7), 0, -60)
r["same_key"] = s1 == slots(b, 1)
print(json.dumps(r))
"""
    )
    assert out["distinct"] == 50
    assert out["again_new"] == [False, False]
    assert out["same_twice"] == 50, "a device seen twice in a window counts once"
    assert out["ble_separate"] == {"wifi_devices": 50, "ble_devices": 1}
    assert out["floor"] == [False, True, 1], "-81 dBm under a -80 dBm floor is ignored, -80 counts"
    assert out["end"] == {"wifi_devices": 51, "ble_devices": 1}, "end_window returns only the counts"
    assert out["after_end"] == [{"wifi_devices": 0, "ble_devices": 0}, [], []], "hashes forgotten"
    w1, w2 = out["w1_w2"]
    assert len(w1) == len(w2) == 1
    assert w1 != w2, "the same device in two windows gives unrelated hashes (new key per window)"
    assert out["same_key"] is True


def test_cap_overflow_and_randomised_filter(micropython):
    out = micropython.eval_json(
        ANON
        + r"""
a = Anonymiser(cap=4)
new = [a.add_wifi(mac(i), 0, -50) for i in range(10)]
c = a.end_window()
first = [c, a.last_overflow]
a.add_wifi(mac(1), 0, -50)
second = [a.end_window(), a.last_overflow]
s = Anonymiser(skip_randomised=True)
s.add_wifi(bytes.fromhex("daa119aabbcc"), 0, -50)
s.add_wifi(bytes.fromhex("3c5ab4aabbcc"), 0, -50)
s.add_ble(bytes.fromhex("daa119aabbcc"), 0, -50)
print(json.dumps([new, first, second, s.counts()]))
"""
    )
    new, first, second, skipped = out
    assert new == [True] * 4 + [False] * 6
    assert first == [{"wifi_devices": 4, "ble_devices": 0}, True]
    assert second == [{"wifi_devices": 1, "ble_devices": 0}, False]
    assert skipped == {"wifi_devices": 1, "ble_devices": 1}, "randomised WiFi skipped; BLE unaffected"


def test_memory_stays_flat_across_windows(micropython):
    out = micropython.eval_json(
        ANON
        + r"""
import gc
a = Anonymiser(cap=256)
free = []
for w in range(6):
    for i in range(400):
        a.add_wifi(mac(w * 1000 + i), 0, -50)
        a.add_ble(mac(w * 1000 + i), 0, -50)
    a.end_window()
    gc.collect()
    free.append(gc.mem_free())
print(json.dumps([free, a.last_overflow]))
"""
    )
    free, overflow = out
    assert overflow is True
    assert max(free[1:]) - min(free[1:]) < 512, f"heap free per window: {free}"


@pytest.mark.parametrize("cap, slots", [(512, 683), (1, 2), (3, 5), (1000, 1334)])
def test_anonymiser_sets_take_4_bytes_per_slot_at_load_factor_0_75(micropython, cap, slots):
    """RAM bound (docs/nodes.md, crowd counting): cap * 4/3 + 1 slots of 4 bytes per kind, no rounding up."""
    out = micropython.eval_json(
        ANON
        + f"""
a = Anonymiser(cap={cap})
full = [a.add_wifi(mac(i), 0, -50) for i in range({cap})]
print(json.dumps([len(a._sets[0]._t), len(a._sets[1]._t), sum(full), a.counts()["wifi_devices"]]))
"""
    )
    assert out == [4 * slots, 4 * slots, cap, cap], "every device up to the cap is counted in the smaller table"


@pytest.mark.parametrize(
    "code, field",
    [
        ("Anonymiser(cap=0)", "cap"),
        ("Anonymiser(rssi_floor_dbm=10)", "rssi_floor_dbm"),
        ("Anonymiser(urandom=lambda n: b'short')", "urandom"),
        ("BLECounter(None, Anonymiser())", "bluetooth"),
    ],
)
def test_bad_configuration_names_the_field(micropython, code, field):
    out = micropython.eval_json(
        "import json\nfrom citynode.crowd.anonymiser import Anonymiser\n"
        "from citynode.crowd.ble import BLECounter\n"
        "try:\n    %s\n    print(json.dumps(None))\nexcept ValueError as e:\n    print(json.dumps(e.field))\n"
        % code
    )
    assert out == field


def test_ble_gap_scan_results_are_counted(micropython):
    out = micropython.eval_json(
        r"""
import json
from citynode.crowd.anonymiser import Anonymiser
from citynode.crowd.ble import BLECounter
from citynode_sim.synthetic import SyntheticBluetooth
bt = SyntheticBluetooth(devices=30, random_pct=50, seed=9)
a = Anonymiser(rssi_floor_dbm=-85)
c = BLECounter(bt, a)
c.start(5000)
c.handle(0, b"\x01\x02", -40)   # malformed address length: ignored
r = [a.counts()["ble_devices"], bt.expected_distinct(-85), c.scanning]
c.start(5000)   # the same devices advertise again: still counted once
r.append(a.counts()["ble_devices"])
a2 = Anonymiser(rssi_floor_dbm=-127)
c2 = BLECounter(bt, a2, skip_random=True)
c2.start(0)
r.append(a2.counts()["ble_devices"])
print(json.dumps(r))
"""
    )
    counted, expected, scanning, again, public_only = out
    assert counted == expected > 0
    assert scanning is False, "scan done event seen"
    assert again == counted
    assert public_only == 15


def test_replay_file_roundtrip_small_buffer_and_truncation(micropython, tmp_path):
    frames = [(mgmt(0x40, bytes((0x3C, 0x5A, 0xB4, 0, 0, i))), -40 - i) for i in range(20)]
    frames.insert(5, (mgmt(0x80), -30))
    path = tmp_path / "capture.cnw"
    data = b"CNWIFI1\n" + b"".join(record(f, r) for f, r in frames)
    path.write_bytes(data + record(mgmt(0x40, b"\x3c\x5a\xb4\xff\xff\xff"), -40)[:-7])  # cut-off last record
    out = micropython.eval_json(
        r"""
import json
from citynode.crowd.anonymiser import Anonymiser
from citynode.crowd.probe import ProbeCounter
from citynode_sim.replay import ReplaySource
a = Anonymiser(rssi_floor_dbm=-50)
src = ReplaySource(%r)
pc = ProbeCounter(src, a, buf_size=100)   # 2 records per read at most: headers carried over
pc.poll(max_reads=1000)
print(json.dumps([pc.frames, pc.probes, pc.ignored, pc.malformed, src.truncated, a.counts()["wifi_devices"]]))
"""
        % str(path)
    )
    assert out == [21, 20, 1, 0, 1, 11], "20 probes, 1 beacon, the cut-off record dropped; 11 at >= -50 dBm"


def test_replay_rejects_bad_files_naming_them(micropython, tmp_path):
    bad_magic = tmp_path / "bad.cnw"
    bad_magic.write_bytes(b"PCAPNG\x00\x00" + record(mgmt(0x40), -40))
    oversized = tmp_path / "big.cnw"
    oversized.write_bytes(b"CNWIFI1\n" + record(mgmt(0x40), -40) + struct.pack("<HbB", 4000, -40, 1))
    out = micropython.eval_json(
        r"""
import json
from citynode_sim.replay import ReplaySource, ReplayError
r = []
try:
    ReplaySource(%r)
except ReplayError as e:
    r.append(str(e))
s = ReplaySource(%r)
buf = bytearray(1024)
try:
    s.read(buf)
except ReplayError as e:
    r.append(str(e))
print(json.dumps(r))
"""
        % (str(bad_magic), str(oversized))
    )
    assert "bad.cnw" in out[0] and "magic" in out[0]
    assert "big.cnw" in out[1] and "byte 44" in out[1] and "4000" in out[1]


def test_replay_writer_output_is_readable_by_cpython(micropython, tmp_path):
    path = tmp_path / "w.cnw"
    micropython.run(
        "from citynode_sim.replay import ReplayWriter\nwith ReplayWriter(%r) as w:\n"
        "    w.write(bytes.fromhex(%r), -77, 11)\n" % (str(path), mgmt(0x40).hex())
    )
    data = path.read_bytes()
    assert data[:8] == b"CNWIFI1\n"
    n, rssi, ch = struct.unpack_from("<HbB", data, 8)
    assert (n, rssi, ch) == (len(mgmt(0x40)), -77, 11)
    assert data[12:] == mgmt(0x40)


def test_synthetic_source_same_bytes_on_both_runtimes_and_rotation_inflates(micropython):
    from gateway.paths import firmware_module

    code = r"""
from citynode_sim.synthetic import SyntheticWifi
s = SyntheticWifi(devices=12, probes=2, seed=7)
buf = bytearray(300)
chunks = []
while True:
    n = s.read(buf)
    if not n:
        break
    chunks.append(bytes(buf[:n]).hex())
RESULT = "".join(chunks)
"""
    mp = micropython.run(code + "print(RESULT)\n").strip()
    firmware_module("citynode_sim.synthetic")  # registers citynode and citynode_sim for the exec below
    ns: dict = {}
    exec(code, ns)
    assert mp == ns["RESULT"] and len(mp) > 1000

    out = micropython.eval_json(
        r"""
import json
from citynode.crowd.anonymiser import Anonymiser
from citynode.crowd.probe import ProbeCounter
from citynode_sim.synthetic import SyntheticWifi
res = []
for rotate in (0, 1):
    s = SyntheticWifi(devices=20, probes=4, randomised_pct=50, rotate_after=rotate, seed=3)
    a = Anonymiser(rssi_floor_dbm=-127)
    ProbeCounter(s, a).poll(max_reads=100)
    res.append([a.end_window()["wifi_devices"], s.expected_distinct(), s.addresses_used])
print(json.dumps(res))
"""
    )
    (steady, truth, used0), (rotating, truth1, used1) = out
    assert steady == truth == used0 == 20
    assert truth1 == 20 and rotating == used1 > 20, "rotating randomised MACs inflate the count (known limit)"


def test_crowd_modules_import_and_count_under_cpython():
    import importlib
    import sys

    from gateway.paths import firmware_dir, sim_mpy_dir

    lib = str(firmware_dir() / "lib")
    sys.path.insert(0, lib)
    sys.path.insert(1, str(sim_mpy_dir()))
    try:
        anon_mod = importlib.import_module("citynode.crowd.anonymiser")
        probe_mod = importlib.import_module("citynode.crowd.probe")
        synth = importlib.import_module("citynode_sim.synthetic")
        counter = importlib.import_module("citynode.crowd.counter")
        ble = importlib.import_module("citynode.crowd.ble")
        importlib.import_module("citynode_sim.replay")
        a = anon_mod.Anonymiser(rssi_floor_dbm=-127)
        bt = synth.SyntheticBluetooth(devices=7)
        c = counter.CrowdCounter(
            a, probe_mod.ProbeCounter(synth.SyntheticWifi(devices=9, probes=2), a), ble.BLECounter(bt, a)
        )
        c.start(1000)
        assert c.end_window(60) == {"interval": 60, "wifi_devices": 9, "ble_devices": 7}
    finally:
        sys.path.remove(lib)
        sys.path.remove(str(sim_mpy_dir()))
