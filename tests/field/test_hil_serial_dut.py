"""The HIL rig with `--dut serial:PORT`: a virtual device on a pseudo-terminal is a serial DUT like a
board (no RTS/DTR there: the reset is skipped with a log line), and missing options are one usage line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.paths import firmware_dir
from gateway.sim.virtual_device import VirtualDevice

ROOT = firmware_dir().parent
EUI = "70B3D57ED0000042"


def hil(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "hil_tests", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args", [
    ["--dut", "serial:/dev/pts/0"],
    ["--dut", "serial:/dev/pts/0", "--dut-board", "sim"],
    ["--dut", "serial:/dev/pts/0", "--dut-device", EUI],
])
def test_a_serial_dut_without_board_or_device_is_one_usage_line(args: list[str]) -> None:
    proc = hil(*args, timeout=120)
    assert proc.returncode == 4  # pytest's usage error
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("ERROR: --dut serial:/dev/pts/0 needs --dut-")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_an_unknown_board_is_one_usage_line() -> None:
    proc = hil("--dut", "serial:/dev/pts/0", "--dut-board", "no_such_board", "--dut-device", EUI, timeout=120)
    assert proc.returncode == 4
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "no_such_board" in lines[0], lines


@pytest.mark.slow
def test_the_virtual_device_on_a_pty_is_a_serial_dut(tmp_path: Path) -> None:
    fs = tmp_path / "fs"
    fs.mkdir()
    (fs / "sim.json").write_text(json.dumps({"cycles": 2}))
    bundles = tmp_path / "bundles"
    bundles.mkdir(mode=0o700)
    (bundles / f"{EUI.lower()}.json").write_text(json.dumps({
        "format": "citynode-node-bundle/1", "dev_eui": EUI, "join_eui": "70B3D57ED0001000",
        "app_key": "2B7E151628AED2A6ABF7158809CF4F3C", "name": "hil", "role": "bin_fill", "board": "sim",
        "region": "EU868", "lorawan": "1.0.4", "intervals": {"interval": 3600, "status_interval": 24},
        "location": None,
    }))
    logs = tmp_path / "logs"
    with VirtualDevice(fs) as device:
        proc = hil("--dut", f"serial:{device.port}", "--dut-board", "sim", "--dut-device", EUI,
                   "--dut-bundles", str(bundles), "--dut-logs", str(logs), "-k", "not rig")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Inappropriate ioctl" not in out
    assert "4 passed" in out  # boot, self-test, bin_fill cycle, deep sleep: the bin_fill DUT's own tests
    assert "passenger_count: 1 test(s) skipped; flash a passenger_count bundle on one of lilygo_t_beam" in out
    boot_log = (logs / "test_boot_announces_version_role_board_and_deveui.log").read_text()
    assert "[hil] reset: " + device.port + " is a pseudo-terminal without RTS/DTR lines" in boot_log
