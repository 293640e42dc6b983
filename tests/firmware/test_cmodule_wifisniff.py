"""The wifisniff C user module (firmware/cmodules/wifisniff/) checked on the host.

No ESP-IDF here, so the module cannot be built for the ESP32 in this suite. Instead it is compiled with
gcc against stub headers that reproduce the MicroPython and ESP-IDF declarations it uses
(tests/firmware/mobility_cstubs/), and a host driver feeds frames into its promiscuous callback and
drains records through its `read` function. The records are then counted by the Python crowd path on
the real MicroPython unix port, proving both sides agree on the record format.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
STUBS = HERE / "mobility_cstubs"
ROOT = HERE.parent.parent
MODULE = ROOT / "firmware" / "cmodules" / "wifisniff"
SOURCE = MODULE / "wifisniff.c"

BCAST = b"\xff" * 6
MGMT, CTRL, DATA = 0, 1, 2

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="needs gcc to compile the C module on the host"
)


def frame(fc0: int, addr2: bytes, body: bytes = b"\x00\x04home\x01\x02\x02\x04") -> bytes:
    return bytes((fc0, 0)) + b"\x00\x00" + BCAST + addr2 + BCAST + b"\x20\x00" + body


def mac(i: int) -> bytes:
    return bytes((0x3C, 0x5A, 0xB4, 0, i >> 8, i & 0xFF))


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("wifisniff") / "harness"
    subprocess.run(
        [
            "gcc",
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{STUBS}",
            f"-I{MODULE}",
            "-o",
            str(exe),
            str(STUBS / "host_harness.c"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return exe


def drive(exe: Path, commands: list[str]) -> list[str]:
    out = subprocess.run(
        [str(exe)], input="\n".join(commands) + "\n", capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def pkt(kind: int, rssi: int, channel: int, data: bytes) -> str:
    return f"pkt {kind} {rssi} {channel} {data.hex()}"


def test_source_is_strict_c11_against_the_declared_api():
    proc = subprocess.run(
        [
            "gcc",
            "-fsyntax-only",
            "-std=c11",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{STUBS}",
            str(SOURCE),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_start_validates_and_configures_promiscuous_mode(harness):
    out = drive(
        harness,
        [
            "mode fail",
            "start 6",
            "mode ok",
            "start 15",
            "start 0",
            "start 11",
            "state",
            "channel 1",
            "state",
            "stop",
            "state",
        ],
    )
    assert out[0].startswith("error OSError: wifisniff: wifi not started")
    assert out[1] == "error ValueError: channel must be 1..14"
    assert out[2] == "error ValueError: channel must be 1..14"
    assert out[3] == "ok 0"
    assert out[4] == "state promisc=1 channel=11 filter=1 cb=1", "management-frame filter (mask 1)"
    assert out[6] == "state promisc=1 channel=1 filter=1 cb=1"
    assert out[8] == "state promisc=0 channel=1 filter=1 cb=0"


# name: (packet type, frame, captured?)
CALLBACK_CASES = {
    "probe request": (MGMT, frame(0x40, mac(1)), True),
    "probe request, header only": (MGMT, frame(0x40, mac(2))[:24], True),
    "beacon": (MGMT, frame(0x80, mac(3)), False),
    "probe response": (MGMT, frame(0x50, mac(4)), False),
    "probe request bytes reported as data": (DATA, frame(0x40, mac(5)), False),
    "truncated probe request": (MGMT, frame(0x40, mac(6))[:23], False),
}


def test_callback_keeps_only_probe_request_headers(harness):
    cmds = ["start 6"] + [pkt(k, -40 - i, 6, f) for i, (k, f, _) in enumerate(CALLBACK_CASES.values())]
    out = drive(harness, cmds + ["read 1024", "ring"])
    n, data = out[-2].split()[1:3]
    expected = b"".join(
        struct.pack("<HbB", 24, -40 - i, 6) + f[:24]
        for i, (_, f, captured) in enumerate(CALLBACK_CASES.values())
        if captured
    )
    assert bytes.fromhex(data) == expected, "24-byte header only: the SSID in the body is never copied"
    assert int(n) == len(expected)
    assert out[-1] == "ring nonzero=0", "slots are wiped once read"


def test_ring_full_drops_and_counts_read_returns_whole_records(harness):
    cmds = ["start 1"] + [pkt(MGMT, -50, 1, frame(0x40, mac(i))) for i in range(70)]
    cmds += ["dropped", "read 60", "read 28", "read 10000", "read 100", "stop", "dropped", "ring"]
    out = drive(harness, cmds)
    assert out[1] == "ok 6", "64 slots: 6 of 70 dropped"
    sizes = [int(line.split()[1]) for line in out[2:6]]
    assert sizes == [56, 28, 61 * 28, 0], "only whole 28-byte records are copied"
    first = bytes.fromhex(out[2].split()[2])
    assert first[4 + 10 : 4 + 16] == mac(0) and first[28 + 14 : 28 + 20] == mac(1), "FIFO order"
    assert out[-2] == "ok 0" and out[-1] == "ring nonzero=0", "stop() clears counters and ring"


def test_records_from_the_c_module_count_on_micropython(harness, micropython, tmp_path):
    devices = [mac(i) for i in range(25)]
    cmds = ["start 6"]
    for _round in range(2):
        cmds += [pkt(MGMT, -45 - i, 6, frame(0x40, m)) for i, m in enumerate(devices)]
        cmds += [pkt(MGMT, -30, 6, frame(0x80, mac(900)))]
    out = drive(harness, cmds + ["read 4096"])
    records = bytes.fromhex(out[-1].split()[2])
    capture = tmp_path / "from_c.cnw"
    capture.write_bytes(b"CNWIFI1\n" + records)
    got = micropython.eval_json(
        r"""
import json
from citynode.crowd.anonymiser import Anonymiser
from citynode.crowd.probe import ProbeCounter
from citynode_sim.replay import ReplaySource
a = Anonymiser(rssi_floor_dbm=-60)
pc = ProbeCounter(ReplaySource(%r), a)
pc.poll()
print(json.dumps([pc.frames, pc.probes, pc.malformed, a.end_window()]))
"""
        % str(capture)
    )
    assert got == [50, 50, 0, {"wifi_devices": 16, "ble_devices": 0}], "-45..-60 dBm: 16 devices, each twice"


def test_record_format_constants_agree_with_python():
    import importlib
    import sys

    c = SOURCE.read_text()
    header = int(re.search(r"#define WIFISNIFF_RECORD_HEADER (\d+)", c).group(1))
    capture_max = int(re.search(r"WIFISNIFF_CAPTURE_LEN > (\d+)", c).group(1))
    sys.path.insert(0, str(ROOT / "firmware" / "lib"))
    try:
        crowd = importlib.import_module("citynode.crowd")
    finally:
        sys.path.remove(str(ROOT / "firmware" / "lib"))
    assert header == crowd.RECORD_HEADER
    assert capture_max == crowd.RECORD_MAX_FRAME


def test_build_files_reference_the_source():
    assert "wifisniff.c" in (MODULE / "micropython.cmake").read_text()
    assert "wifisniff.c" in (MODULE / "micropython.mk").read_text()
    assert "wifisniff/micropython.cmake" in (MODULE.parent / "micropython.cmake").read_text()
    assert "USER_C_MODULES" in (MODULE / "README.md").read_text()
