"""PRIVACY: no MAC address leaves RAM (COMMON.md ground rule 2, issue 3 crowd_count).

A full crowd-counting run on the real MicroPython unix port: WiFi probe requests replayed from a capture
file, BLE adverts from a stand-in `bluetooth` module, the anonymiser, the window end, the uplink payload
encoded by citynode.codec, and everything persisted the way a node would (a state file). Then every MAC
address that went in is searched, in every textual and binary form, in
  - the counts and the encoded payload,
  - everything the run printed (stdout and stderr),
  - every file created or changed during the run,
  - the driver buffers left in RAM after the window (dumped to a file for the search).
Controls prove the search itself finds MACs where they are expected (the input capture).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import subprocess

import pytest

from gateway.field.micropython import find_micropython, micropython_env

BCAST = b"\xff" * 6


def macs(seed: int, n: int, randomised: bool) -> list[bytes]:
    out = []
    for i in range(n):
        d = hashlib.sha256(b"%d-%d" % (seed, i)).digest()[:6]
        first = (d[0] & 0xFC) | (0x02 if randomised else 0x00)
        out.append(bytes((first,)) + d[1:])
    return out


WIFI_MACS = macs(1, 15, False) + macs(2, 15, True)
BLE_MACS = macs(3, 10, False) + macs(4, 10, True)
ALL_MACS = WIFI_MACS + BLE_MACS


def forms(mac: bytes) -> tuple[list[bytes], list[str]]:
    """(binary needles, text needles matched case-insensitively) for one MAC."""
    h = mac.hex()
    pairs = [h[i : i + 2] for i in range(0, 12, 2)]
    text = [
        h,  # 3c5ab4010203 (upper case covered by case-insensitive match)
        ":".join(pairs),
        "-".join(pairs),
        " ".join(pairs),
        ".".join(h[i : i + 4] for i in range(0, 12, 4)),  # Cisco 3c5a.b401.0203
        bytes(reversed(mac)).hex(),  # little-endian (HCI / BLE on-air order)
        ":".join(reversed(pairs)),
        repr(mac)[2:-1],  # Python bytes repr
        ", ".join(str(b) for b in mac),  # list of ints
        base64.b64encode(mac).decode(),
    ]
    binary = [mac, bytes(reversed(mac))] + [t.encode() for t in text] + [t.upper().encode() for t in text]
    return binary, text


def find_macs_in_text(text: str) -> list[str]:
    low = text.lower()
    hits = []
    for mac in ALL_MACS:
        for needle in forms(mac)[1]:
            if needle.lower() in low and needle != base64.b64encode(mac).decode():
                hits.append(needle)
            elif needle == base64.b64encode(mac).decode() and needle in text:
                hits.append(needle)
    return hits


def find_macs_in_bytes(data: bytes) -> list[str]:
    hits = []
    for mac in ALL_MACS:
        for needle in forms(mac)[0]:
            if needle in data:
                hits.append(repr(needle))
    return hits


def probe(mac: bytes, seq: int) -> bytes:
    return (
        b"\x40\x00\x00\x00" + BCAST + mac + BCAST + struct.pack("<H", seq << 4) + b"\x00\x00\x01\x02\x02\x04"
    )


RUN = r"""
import json, os
from citynode import codec
from citynode.crowd.anonymiser import Anonymiser
from citynode.crowd.ble import BLECounter
from citynode.crowd.counter import CrowdCounter
from citynode.crowd.probe import ProbeCounter
from citynode_sim.replay import ReplaySource

BLE_ADVERTS = [(a[0], bytes.fromhex(a[1]), a[2]) for a in json.loads(%(ble)r)]

class FakeBLE:
    # bluetooth.BLE stand-in: like the real module, addr is a memoryview into a buffer that is reused
    def active(self, on=None):
        return True
    def irq(self, h):
        self.h = h
    def gap_scan(self, duration_ms, *args):
        if duration_ms is None:
            return
        scratch = bytearray(6)
        for t, addr, rssi in BLE_ADVERTS:
            scratch[:] = addr
            self.h(5, (t, memoryview(scratch), 0, rssi, memoryview(b"\x02\x01\x06")))
        scratch[:] = bytes(6)
        self.h(6, ())

class FakeBluetooth:
    def BLE(self):
        return FakeBLE()

anon = Anonymiser(rssi_floor_dbm=-90)
wifi = ProbeCounter(ReplaySource(%(capture)r), anon, buf_size=256)
ble = BLECounter(FakeBluetooth(), anon)
counter = CrowdCounter(anon, wifi, ble)
counter.start(10000)
counter.poll()
print("crowd: window", anon, "frames", wifi.frames, "probes", wifi.probes, "adverts", ble.adverts)
reading = counter.end_window(300)
reading["battery"] = 3.71
payload = codec.encode("crowd_count", reading)
print("uplink fport=13 len=%%d hex=%%s" %% (len(payload), payload.hex()))
print(json.dumps(reading))
with open("state.json", "w") as f:
    json.dump({"last": reading, "stats": [wifi.frames, wifi.probes, wifi.ignored, wifi.malformed]}, f)
os.rename("state.json", "state.json.ok")
# RAM left behind after the window: every buffer the counting path owns
with open("ram_dump.bin", "wb") as f:
    for obj in (anon, wifi, ble, anon._sets[0], anon._sets[1]):
        for k in obj.__dict__:
            v = obj.__dict__[k]
            if isinstance(v, (bytes, bytearray, memoryview)):
                f.write(bytes(v))
print("PAYLOAD", payload.hex())
print(json.dumps(reading))
"""


@pytest.fixture(scope="module")
def privacy_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy")
    capture = root / "input" / "capture.cnw"
    capture.parent.mkdir()
    records = b""
    for k in range(3):  # each WiFi device probes three times
        for i, mac in enumerate(WIFI_MACS):
            frame = probe(mac, k)
            records += struct.pack("<HbB", len(frame), -40 - i, 6) + frame
    capture.write_bytes(b"CNWIFI1\n" + records)
    run_dir = root / "run"
    run_dir.mkdir()
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    ble = [[1 if i >= 10 else 0, m.hex(), -50 - i] for i, m in enumerate(BLE_MACS)]
    code = RUN % {"ble": json.dumps(ble), "capture": str(capture)}
    proc = subprocess.run(
        [find_micropython(), "-X", "heapsize=96k", "-c", code],
        cwd=run_dir,
        env=micropython_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and before.get(p) != p.read_bytes()}
    return {"proc": proc, "written": written, "capture": capture}


def test_counts_are_right_and_payload_decodes(privacy_run):
    lines = privacy_run["proc"].stdout.strip().splitlines()
    reading = json.loads(lines[-1])
    # 30 WiFi devices at -40..-69 dBm, 20 BLE at -50..-69 dBm: all above the -90 dBm floor
    assert reading == {"interval": 300, "wifi_devices": 30, "ble_devices": 20, "battery": 3.71}
    from gateway.contract.codec import decode

    payload = bytes.fromhex(next(line for line in lines if line.startswith("PAYLOAD")).split()[1])
    msg = decode(13, payload)
    assert msg["readings"][0]["wifi_devices"] == 30
    assert msg["readings"][0]["ble_devices"] == 20


def test_no_mac_in_counts_or_payload(privacy_run):
    lines = privacy_run["proc"].stdout.strip().splitlines()
    payload = bytes.fromhex(next(line for line in lines if line.startswith("PAYLOAD")).split()[1])
    assert find_macs_in_bytes(payload) == []
    assert find_macs_in_text(lines[-1]) == []


def test_no_mac_in_anything_printed(privacy_run):
    proc = privacy_run["proc"]
    assert "crowd: window" in proc.stdout, "the run printed its diagnostics"
    assert find_macs_in_text(proc.stdout) == []
    assert find_macs_in_text(proc.stderr) == []


def test_no_mac_in_any_file_written_during_the_run(privacy_run):
    written = privacy_run["written"]
    names = sorted(p.name for p in written)
    assert names == ["ram_dump.bin", "state.json.ok"], names
    for path, data in written.items():
        assert find_macs_in_bytes(data) == [], f"MAC found in {path}"


def test_no_mac_left_in_driver_buffers_after_window(privacy_run):
    dump = next(d for p, d in privacy_run["written"].items() if p.name == "ram_dump.bin")
    assert len(dump) > 1024, "the frame buffer, scratch and hash tables were dumped"
    assert find_macs_in_bytes(dump) == []


def test_controls_the_search_finds_macs_where_they_are(privacy_run):
    assert len(find_macs_in_bytes(privacy_run["capture"].read_bytes())) >= len(WIFI_MACS)
    mac = WIFI_MACS[3]
    for shown in (mac.hex().upper(), ":".join(f"{b:02X}" for b in mac), "-".join(f"{b:02x}" for b in mac)):
        assert find_macs_in_text("device " + shown + " seen"), shown
    assert find_macs_in_bytes(b"xx" + bytes(reversed(mac)) + b"yy")
