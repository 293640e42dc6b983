"""The wifisniff C module (firmware/cmodules/wifisniff/wifisniff.c, unchanged) compiled into the 32-bit
unix port of `make firmware-unix`, fed 802.11 frames through the ESP-IDF host shim
(tests/firmware/unix32/esp_host: `esp_host.rx(frame, rssi, channel, kind, sig_len)` calls the
promiscuous callback wifisniff registered, as the Wi-Fi driver task would).

Runs on the interpreter CITYNODE_MICROPYTHON names (`make test`: the 32-bit frozen build); skipped on
an interpreter without the shim (the PyPI unix port).
"""

from __future__ import annotations

import json

import pytest

from gateway.field.micropython import MicroPythonNotFound, run_code

# IEEE 802.11-2020 9.2.4.1.3 / 9.3.3.2: frame control octet 0 and the 24-byte management header
# (FC 2, Duration 2, A1 6, A2 6 = transmitter, A3 6, Seq 2).
PROBE_REQ, BEACON, PROBE_RESP = 0x40, 0x80, 0x50
MGMT, CTRL, DATA = 0, 1, 2  # wifi_promiscuous_pkt_type_t
SLOTS = 64  # WIFISNIFF_RING_SLOTS
RECORD = 4 + 24  # record header + the captured management header

PRELUDE = """
import json, esp_host, wifisniff
def mac(i):
    return bytes((0x02, 0xc1, 0x7e, 0x00, i >> 8, i & 0xff))
def frame(fc0, i, body=b""):
    return bytes((fc0, 0, 0, 0)) + b"\\xff" * 6 + mac(i) + b"\\xff" * 6 + b"\\x10\\x00" + body
def drain():
    buf = bytearray(4096)
    out = []
    while True:
        n = wifisniff.read(buf)
        if not n:
            return out
        off = 0
        while off < n:
            flen = buf[off] | buf[off + 1] << 8
            rssi = buf[off + 2] - 256 if buf[off + 2] > 127 else buf[off + 2]
            out.append([flen, rssi, buf[off + 3], bytes(buf[off + 4:off + 4 + flen]).hex()])
            off += 4 + flen
esp_host.wifi(True)
"""


@pytest.fixture(scope="module")
def sniff():
    try:
        probe = run_code("import esp_host, wifisniff\nprint('ok')", check=False)
    except MicroPythonNotFound as exc:
        pytest.skip(str(exc))
    if probe.stdout.strip() != "ok":
        pytest.skip("the interpreter has no wifisniff/esp_host: set CITYNODE_MICROPYTHON to a `make firmware-unix` build")

    def run(code: str):
        out = run_code(PRELUDE + code).stdout.strip().splitlines()
        return json.loads(out[-1]), "\n".join(out)

    return run


def test_probe_requests_are_captured_with_rssi_channel_and_the_header_only(sniff) -> None:
    got, _ = sniff("""
wifisniff.start(6)
sent = [esp_host.rx(frame(0x40, i, body=b"\\x00\\x04city"), -40 - i, 6) for i in range(3)]
print(json.dumps([sent, drain(), wifisniff.dropped(), list(esp_host.state())]))
""")
    sent, records, dropped, state = got
    assert sent == [True, True, True]
    assert [(r[0], r[1], r[2]) for r in records] == [(24, -40, 6), (24, -41, 6), (24, -42, 6)]
    assert records[1][3][20:32] == "02c17e000001"  # Address 2 at offset 10; the body (an SSID) is not kept
    assert dropped == 0
    assert state == [True, 6, 1, True]  # promiscuous, channel 6, WIFI_PROMIS_FILTER_MASK_MGMT, callback set


@pytest.mark.parametrize(("case", "args"), [
    ("beacon", "frame(0x80, 1), -50, 1"),
    ("probe response", "frame(0x50, 1), -50, 1"),
    ("a probe request delivered as a data frame", "frame(0x40, 1), -50, 1, 2"),
    ("control frame", "frame(0x40, 1), -50, 1, 1"),
    ("misc", "frame(0x40, 1), -50, 1, 3"),
    ("short: 23 bytes of header", "frame(0x40, 1)[:23], -50, 1"),
    ("short: sig_len says 27 (23 + FCS)", "frame(0x40, 1), -50, 1, 0, 27"),
    ("protocol version 1", "frame(0x41, 1), -50, 1"),
])
def test_everything_but_a_probe_request_is_dropped(sniff, case: str, args: str) -> None:
    got, _ = sniff(f"""
wifisniff.start(1)
print(json.dumps([esp_host.rx({args}), drain(), wifisniff.dropped()]))
""")
    delivered, records, dropped = got
    assert delivered, f"{case}: the shim did not reach the callback"
    assert records == [], case
    assert dropped == 0, f"{case}: filtered frames are not overflow"


def test_a_full_ring_counts_what_it_drops_and_keeps_the_oldest(sniff) -> None:
    got, _ = sniff(f"""
wifisniff.start(11)
for i in range({SLOTS + 10}):
    esp_host.rx(frame(0x40, i), -60, 11)
first = drain()
esp_host.rx(frame(0x40, 999), -60, 11)  # room again after the read
print(json.dumps([len(first), first[0][3][20:32], first[-1][3][20:32], wifisniff.dropped(), drain()[0][3][20:32]]))
""")
    count, oldest, newest, dropped, after = got
    assert count == SLOTS and dropped == 10
    assert oldest == "02c17e000000" and newest == f"02c17e0000{SLOTS - 1:02x}"
    assert after == "02c17e0003e7"


def test_read_moves_whole_records_only(sniff) -> None:
    got, _ = sniff(f"""
wifisniff.start(3)
for i in range(3):
    esp_host.rx(frame(0x40, i), -60, 3)
small = bytearray({RECORD * 2 - 1})
print(json.dumps([wifisniff.read(small), wifisniff.read(small), wifisniff.read(small), wifisniff.read(small)]))
""")
    assert got == [RECORD, RECORD, RECORD, 0]


def test_stop_wipes_the_ring_and_ends_capture(sniff) -> None:
    got, _ = sniff("""
wifisniff.start(6)
for i in range(5):
    esp_host.rx(frame(0x40, i), -60, 6)
wifisniff.stop()
after_stop = esp_host.rx(frame(0x40, 9), -60, 6)
wifisniff.start(6)  # a new capture starts from an empty ring
print(json.dumps([after_stop, list(esp_host.state())[0], drain(), wifisniff.dropped()]))
""")
    assert got == [False, True, [], 0]


def test_start_without_wifi_and_bad_channels_raise(sniff) -> None:
    got, _ = sniff("""
res = []
esp_host.wifi(False)
for call in (lambda: wifisniff.start(1), lambda: wifisniff.start(0), lambda: wifisniff.start(15)):
    try:
        call()
        res.append("no error")
    except Exception as exc:
        res.append("%s: %s" % (type(exc).__name__, exc))
print(json.dumps(res))
""")
    assert got[0].startswith("OSError: wifisniff: wifi not started")
    assert got[1:] == ["ValueError: channel must be 1..14"] * 2


def test_the_crowd_counter_counts_devices_on_the_compiled_module_and_no_mac_comes_out(sniff) -> None:
    """citynode.hal.mpy's wifi_source (network.WLAN(...).active(True), wifisniff.start) with the real
    module; the probe counter, anonymiser and crowd counter of the crowd_count role on top."""
    got, output = sniff("""
from citynode.hal.mpy import MpyHal
from citynode.crowd.anonymiser import Anonymiser
from citynode.crowd.probe import ProbeCounter
from citynode.crowd.counter import CrowdCounter

class WLAN:  # network.WLAN on the unix port: active(True) starts the (shim's) Wi-Fi
    def __init__(self, _):
        pass
    def active(self, on):
        esp_host.wifi(on)

class Network:
    STA_IF = 0
    WLAN = WLAN

esp_host.wifi(False)
hal = MpyHal({"name": "esp32"}, machine=object(), modules={"network": Network()})
anon = Anonymiser(rssi_floor_dbm=-90)
probes = ProbeCounter(hal.wifi_source(6), anon, buf_size=256)
counter = CrowdCounter(anon, wifi=probes)
counter.start()
windows = []
for window in range(2):
    for rep in range(3):  # every phone probes three times a window
        for i in range(12):
            esp_host.rx(frame(0x40, 100 + i), -55, 6)
        esp_host.rx(frame(0x40, 200), -95, 6)  # too far away: below the RSSI floor
        esp_host.rx(frame(0x80, 300), -40, 6)  # an access point's beacon
        counter.poll()
    windows.append(counter.end_window(60))
left = bytearray(256)
print(json.dumps([windows, probes.probes, probes.ignored, wifisniff.read(left), list(left) == [0] * 256]))
""")
    windows, probes, ignored, leftover, wiped = got
    assert windows == [{"interval": 60, "wifi_devices": 12, "ble_devices": 0}] * 2
    assert probes == 2 * 3 * 13 and ignored == 0  # beacons never leave the C module
    assert leftover == 0 and wiped
    for i in list(range(100, 112)) + [200, 300]:
        mac = f"02c17e{i >> 8:04x}{i & 0xff:02x}"
        for form in (mac, ":".join(mac[j:j + 2] for j in range(0, 12, 2))):
            assert form not in output.lower(), "a MAC address in the output"
