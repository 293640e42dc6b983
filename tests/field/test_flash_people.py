"""What a technician sees from `citynode flash` and `citynode check` on virtual devices: a default
air-quality node passes, parts it has not got are "not fitted", output off a terminal is whole lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.field.flash import _not_answering
from gateway.sim.virtual_device import VirtualDevice

EUI = "70B3D57ED0000011"
EUI2 = "70B3D57ED0000012"


def bundle(dev_eui: str, role: str) -> dict:
    return {
        "format": "citynode-node-bundle/1", "dev_eui": dev_eui, "join_eui": "70B3D57ED0001000",
        "app_key": "2B7E151628AED2A6ABF7158809CF4F3C", "name": f"node-{dev_eui[-2:]}", "role": role,
        "board": "sim", "region": "EU868", "lorawan": "1.0.4", "intervals": {"interval": 3600, "status_interval": 24},
        "location": None,
    }


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    path = tmp_path / "bundles"
    path.mkdir(mode=0o700)
    (path / f"{EUI.lower()}.json").write_text(json.dumps(bundle(EUI, "air_quality")))
    (path / f"{EUI2.lower()}.json").write_text(json.dumps(bundle(EUI2, "bin_fill")))
    return path


def calm_fs(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "sim.json").write_text(json.dumps({"pace": 1}))
    return path


@pytest.fixture
def device(tmp_path: Path) -> Iterator[VirtualDevice]:
    with VirtualDevice(calm_fs(tmp_path / "fs")) as dev:
        yield dev


def citynode(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["COLUMNS"] = "80"  # a narrow log: nothing may be cut or wrapped because of it
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=240, env=env)


def test_a_default_air_quality_node_passes_with_pm1_0_not_fitted(device: VirtualDevice, bundles: Path) -> None:
    proc = citynode("flash", "--port", device.port, "--board", "sim", "--device", EUI, "--bundles", str(bundles))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "self-test passed" in proc.stdout
    assert "not fitted pm1_0: not fitted (sds011)" in proc.stdout
    assert "FAIL" not in proc.stdout
    # the console link of the sim board has no radio: not a pass either
    radio = next(line for line in proc.stdout.splitlines() if " radio: " in line)
    assert "not fitted" in radio and "no radio" in radio
    # progress off a terminal is a line per step, each whole
    assert f"{device.port}: connecting" in proc.stdout
    check = citynode("check", "--port", device.port, "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout.strip().splitlines()[-1])
    assert {"name": "pm1_0", "ok": True, "not_fitted": True, "value": "not fitted (sds011)"} in report["checks"]


def test_check_with_a_bad_config_still_shows_role_and_board(device: VirtualDevice, bundles: Path) -> None:
    assert citynode("flash", "--port", device.port, "--board", "sim", "--device", EUI2, "--bundles", str(bundles),
                    "--no-selftest").returncode == 0
    config = json.loads((device.fs_dir / "config.json").read_text())
    config["interval"] = 5
    (device.fs_dir / "config.json").write_text(json.dumps(config))
    proc = citynode("check", "--port", device.port)
    assert proc.returncode == 1
    assert f"{EUI2} role bin_fill board sim" in proc.stdout
    assert "? role" not in proc.stdout


@pytest.mark.slow
def test_the_tray_summary_keeps_whole_deveuis_in_a_narrow_log(tmp_path: Path, bundles: Path) -> None:
    with VirtualDevice(calm_fs(tmp_path / "a")) as a, \
            VirtualDevice(calm_fs(tmp_path / "b")) as b:
        tray = tmp_path / "tray.csv"
        tray.write_text(f"port,dev_eui\n{a.port},{EUI}\n{b.port},{EUI2}\n")
        proc = citynode("flash", "--board", "sim", "--tray", str(tray), "--bundles", str(bundles))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = [line for line in proc.stdout.splitlines() if a.port in line or b.port in line]
        assert any(EUI in line and a.port in line for line in rows), proc.stdout
        assert any(EUI2 in line and b.port in line for line in rows), proc.stdout
        assert "2 of 2 boards flashed and verified" in proc.stdout


def test_the_raw_repl_hint_does_not_suggest_firmware_when_it_was_given() -> None:
    assert "reflash with --firmware" in str(_not_answering("/dev/ttyUSB0"))
    given = str(_not_answering("/dev/ttyUSB0", firmware_given=True))
    assert "reflash with --firmware" not in given
    assert "--firmware may not be MicroPython" in given
