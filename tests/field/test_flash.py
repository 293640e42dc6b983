"""`citynode flash` and `citynode check` against virtual devices, through mpremote's real transport.

The virtual devices run at a node's budget (VirtualDevice's default, node_heap: 64k on the 32-bit frozen
build); the sim board's simulators run on the host, not in the node's heap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from mpremote.transport_serial import SerialTransport

from gateway.cli.flash import read_tray
from gateway.errors import ConfigError
from gateway.field.firmware_build import build_firmware
from gateway.field.flash import (
    DeviceBusyError,
    NoPortError,
    OutOfFlashError,
    WrongBoardError,
    config_from_bundle,
    flash_node,
    interrupt,
    load_bundle,
    open_device,
    run_selftest,
)
from gateway.sim.virtual_device import VirtualDevice

EUI = "70B3D57ED0000002"


def bundle(dev_eui: str = EUI, role: str = "bin_fill", board: str = "sim", interval: int = 1800) -> dict:
    """A bundle in the form gateway.field.provision.bundle_for writes."""
    return {
        "format": "citynode-node-bundle/1", "dev_eui": dev_eui, "join_eui": "70B3D57ED0001000",
        "app_key": "2B7E151628AED2A6ABF7158809CF4F3C", "name": "bin-heinrich-koenig-platz-3", "role": role,
        "board": board, "region": "EU868", "lorawan": "1.0.4", "fport": 11,
        "intervals": {"interval": interval, "status_interval": 24}, "location": None,
    }


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("app") / "app"
    build_firmware(out)
    return out


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    path = tmp_path / "bundles"
    path.mkdir(mode=0o700)
    for eui in (EUI, "70B3D57ED0000003"):
        (path / f"{eui}.json").write_text(json.dumps(bundle(eui)))
    return path


def calm_fs(path: Path) -> Path:
    """A device filesystem whose sim scenario paces the node in real time (1 virtual s per s), so a
    flashed node sleeps between cycles as a board does instead of running its cycles back to back."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "sim.json").write_text(json.dumps({"pace": 1}))
    return path


@pytest.fixture
def device(tmp_path: Path) -> Iterator[VirtualDevice]:
    with VirtualDevice(calm_fs(tmp_path / "fs")) as dev:
        yield dev


def flash(device: VirtualDevice, bundles: Path, app_dir: Path, **kwargs):
    kwargs.setdefault("board", "sim")
    kwargs.setdefault("dev_eui", EUI)
    return flash_node(device.port, bundles=bundles, app_dir=app_dir, **kwargs)


# ---- the happy path ----------------------------------------------------------------------------

def test_flash_copies_app_config_and_board_then_verifies_and_self_tests(
    device: VirtualDevice, bundles: Path, app_dir: Path
) -> None:
    result = flash(device, bundles, app_dir)
    assert (result.version, result.dev_eui, result.role, result.board) == ("0.1.0", EUI, "bin_fill", "sim")
    fs = device.fs_dir
    assert (fs / "main.py").is_file() and (fs / "lib" / "citynode" / "app.mpy").is_file()
    config = json.loads((fs / "config.json").read_text())
    assert config == {
        "role": "bin_fill", "board": "sim", "dev_eui": EUI, "join_eui": "70B3D57ED0001000",
        "app_key": "2B7E151628AED2A6ABF7158809CF4F3C", "region": "EU868", "interval": 1800, "status_interval": 24,
    }
    assert json.loads((fs / "board.json").read_text())["name"] == "sim"
    assert result.selftest is not None
    assert (result.selftest.dev_eui, result.selftest.role, result.selftest.board) == (EUI, "bin_fill", "sim")
    names = [c["name"] for c in result.selftest.checks]
    assert names[0] == "config" and "bin_fill" in names and "radio" in names
    assert result.selftest.ok, result.selftest.failed
    assert "config.json" == result.written[-1]  # config last: a half-copied app never looks configured


def test_a_second_flash_writes_only_what_changed(device: VirtualDevice, bundles: Path, app_dir: Path) -> None:
    first = flash(device, bundles, app_dir, selftest=False)
    again = flash(device, bundles, app_dir, selftest=False)
    assert again.written == () and set(again.unchanged) == set(first.written)
    (bundles / f"{EUI}.json").write_text(json.dumps(bundle(interval=3600)))
    changed = flash(device, bundles, app_dir, selftest=False)
    assert changed.written == ("config.json",)
    assert json.loads((device.fs_dir / "config.json").read_text())["interval"] == 3600


def test_flash_interrupts_a_running_node_and_starts_it_again(device: VirtualDevice, bundles: Path,
                                                              app_dir: Path) -> None:
    flash(device, bundles, app_dir, selftest=False)  # the node now runs main.py
    result = flash(device, bundles, app_dir, dev_eui="70B3D57ED0000003", selftest=False)
    assert result.written == ("config.json",)
    assert json.loads((device.fs_dir / "config.json").read_text())["dev_eui"] == "70B3D57ED0000003"


def stubborn_fs(path: Path, swallowed: int | None) -> Path:
    """A device whose main.py catches Ctrl-C `swallowed` times (None: always) before it stops."""
    path.mkdir(parents=True)
    (path / "main.py").write_text(
        "import time\nleft = %r\nwhile left is None or left > 0:\n    try:\n        time.sleep(1)\n"
        "    except KeyboardInterrupt:\n        print('Ctrl-C ignored')\n        left = left and left - 1\n"
        "while True:\n    time.sleep(1)\n" % (swallowed,))
    return path


@pytest.mark.slow
def test_a_program_that_ignores_a_few_ctrl_cs_is_still_stopped(tmp_path: Path) -> None:
    # Each Ctrl-C becomes up to three interrupts on the virtual device (it repeats one the program
    # catches twice), so six caught outlast mpremote's Ctrl-C and a second try; open_device keeps pressing.
    with VirtualDevice(stubborn_fs(tmp_path / "fs", swallowed=6)) as dev:
        with open_device(dev.port) as transport:
            assert transport.eval("1 + 1") == 2


@pytest.mark.slow
def test_a_program_that_never_stops_is_a_busy_device_with_one_line(tmp_path: Path) -> None:
    with VirtualDevice(stubborn_fs(tmp_path / "fs", swallowed=None)) as dev:
        transport = SerialTransport(dev.port, baudrate=115200)
        transport.serial.timeout = 0.5
        try:
            with pytest.raises(DeviceBusyError, match=r"does not answer in the raw REPL: a program on it does "
                                                       r"not stop at Ctrl-C"):
                interrupt(transport, dev.port, timeout=4.0)
        finally:
            transport.close()


def test_an_image_is_not_written_to_a_virtual_device_and_says_so(device: VirtualDevice, bundles: Path,
                                                                  app_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "ESP32_GENERIC-v1.24.1.bin"
    image.write_bytes(b"\xe9" + bytes(1023))
    result = flash(device, bundles, app_dir, firmware=image, selftest=False)
    assert result.messages == (f"{device.port} is a virtual device (pty): it has no flash chip, so {image.name} "
                               "was not written",)


# ---- the common failures, one line each -------------------------------------------------------

def test_no_port(bundles: Path, app_dir: Path) -> None:
    with pytest.raises(NoPortError, match=r"^/dev/ttyUSB97: no such device \(is the board plugged in"):
        flash_node("/dev/ttyUSB97", "sim", EUI, bundles=bundles, app_dir=app_dir)


def test_wrong_board_by_platform(device: VirtualDevice, bundles: Path, app_dir: Path) -> None:
    (bundles / f"{EUI}.json").write_text(json.dumps(bundle(board="heltec_wifi_lora_32_v3")))
    with pytest.raises(WrongBoardError, match="heltec_wifi_lora_32_v3 is an esp32s3 board but the device "
                                              "reports sys.platform 'linux'"):
        flash(device, bundles, app_dir, board="heltec_wifi_lora_32_v3")


def test_wrong_board_by_the_bundle(bundles: Path) -> None:
    with pytest.raises(WrongBoardError, match="--board lilygo_t_beam but the bundle for 70B3D57ED0000002 "
                                              "was provisioned for sim"):
        config_from_bundle(bundle(), "lilygo_t_beam")


def test_wrong_board_by_the_boards_own_board_json_unless_erased(device: VirtualDevice, bundles: Path,
                                                                app_dir: Path) -> None:
    (device.fs_dir / "board.json").write_text(json.dumps({"name": "sim_rig_7"}))
    (device.fs_dir / "old_app.py").write_text("print('left over')\n")
    with pytest.raises(WrongBoardError, match=r"board.json is 'sim_rig_7', not 'sim' \(pass --erase"):
        flash(device, bundles, app_dir, selftest=False)
    flash(device, bundles, app_dir, selftest=False, erase=True)
    assert not (device.fs_dir / "old_app.py").exists()
    assert (device.fs_dir / "config.json").exists()


def test_device_busy_when_another_program_holds_the_port(device: VirtualDevice, bundles: Path,
                                                         app_dir: Path) -> None:
    with serial.Serial(device.port, exclusive=True):
        with pytest.raises(DeviceBusyError, match="busy, another program has the port open"):
            flash(device, bundles, app_dir)


def test_out_of_flash_says_how_much_is_free(device: VirtualDevice, bundles: Path, app_dir: Path) -> None:
    # A file that lands on a full device: /dev/full answers every write with ENOSPC (errno 28).
    target = device.fs_dir / "lib" / "citynode"
    target.mkdir(parents=True)
    os.symlink("/dev/full", target / "app.mpy")
    with pytest.raises(OutOfFlashError, match=r"out of flash: \d+ bytes free \(pass --erase"):
        flash(device, bundles, app_dir, selftest=False)


def test_a_missing_bundle_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no bundle .*70b3d57ed00000ff.json \\(run `citynode provision` first"):
        load_bundle(tmp_path, "70-B3-D5-7E-D0-00-00-FF")


def test_a_bundle_value_the_node_would_refuse_is_refused_before_flashing() -> None:
    with pytest.raises(ConfigError, match="config interval: expected an integer"):
        config_from_bundle(bundle(interval=5), "sim")


# ---- tray files --------------------------------------------------------------------------------

TRAYS = [
    # CSV text, (port, DevEUI) pairs
    ("port,dev_eui\n/dev/ttyUSB0,70B3D57ED0000001\n", [("/dev/ttyUSB0", "70B3D57ED0000001")]),
    ("/dev/ttyUSB0,70b3d57ed0000001\n/dev/ttyUSB1, 70-B3-D5-7E-D0-00-00-02\n",
     [("/dev/ttyUSB0", "70B3D57ED0000001"), ("/dev/ttyUSB1", "70B3D57ED0000002")]),
    ("# tray 3\n\n/dev/ttyACM0,70B3D57ED0000009\n", [("/dev/ttyACM0", "70B3D57ED0000009")]),
]


@pytest.mark.parametrize(("text", "pairs"), TRAYS)
def test_tray_files(tmp_path: Path, text: str, pairs: list) -> None:
    path = tmp_path / "tray.csv"
    path.write_text(text)
    assert read_tray(path) == pairs


def test_a_bad_tray_row_names_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "tray.csv"
    path.write_text("port,dev_eui\n/dev/ttyUSB0,70B3D57ED0000001\n/dev/ttyUSB1,70B3D5\n")
    with pytest.raises(ConfigError, match="line 3, field dev_eui"):
        read_tray(path)


# ---- the command line --------------------------------------------------------------------------

def citynode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=240, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.slow
def test_cli_flash_then_check(device: VirtualDevice, bundles: Path) -> None:
    proc = citynode("flash", "--port", device.port, "--board", "sim", "--device", EUI, "--bundles", str(bundles))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{device.port}: {EUI} role bin_fill board sim firmware 0.1.0" in proc.stdout
    assert "self-test passed" in proc.stdout
    check = citynode("check", "--port", device.port)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "role bin_fill board sim" in check.stdout
    assert "fill_level=" in check.stdout  # a live sensor value
    assert "checks passed" in check.stdout


def test_cli_check_fails_with_exit_1_when_a_check_fails(device: VirtualDevice, bundles: Path, app_dir: Path) -> None:
    flash(device, bundles, app_dir, selftest=False)
    config = json.loads((device.fs_dir / "config.json").read_text())
    config["interval"] = 5  # a technician's typo
    (device.fs_dir / "config.json").write_text(json.dumps(config))
    proc = citynode("check", "--port", device.port, "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["checks"][0]["name"] == "config" and not report["checks"][0]["ok"]
    assert "interval" in report["checks"][0]["error"]


def test_cli_one_line_error_and_exit_2_for_a_missing_port(bundles: Path) -> None:
    proc = citynode("flash", "--port", "/dev/ttyUSB97", "--board", "sim", "--device", EUI, "--bundles", str(bundles))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "citynode flash: error: /dev/ttyUSB97: no such device (is the board plugged in? "
        "see `ls /dev/ttyUSB* /dev/ttyACM*`)"
    ]


@pytest.mark.slow
def test_cli_bulk_flashes_a_tray_in_parallel_with_a_summary(tmp_path: Path, bundles: Path) -> None:
    with VirtualDevice(calm_fs(tmp_path / "a")) as a, \
            VirtualDevice(calm_fs(tmp_path / "b")) as b:
        tray = tmp_path / "tray.csv"
        tray.write_text(f"port,dev_eui\n{a.port},{EUI}\n{b.port},70B3D57ED0000003\n/dev/ttyUSB97,70B3D57ED0000001\n")
        proc = citynode("flash", "--board", "sim", "--tray", str(tray), "--bundles", str(bundles))
        assert proc.returncode == 1  # the third board is missing
        assert "2 of 3 boards flashed and verified" in proc.stdout
        assert "/dev/ttyUSB97" in proc.stdout
        for fs, eui in ((a.fs_dir, EUI), (b.fs_dir, "70B3D57ED0000003")):
            assert json.loads((fs / "config.json").read_text())["dev_eui"] == eui


def test_cli_port_and_device_must_come_in_pairs(bundles: Path) -> None:
    proc = citynode("flash", "--board", "sim", "--port", "/dev/ttyUSB0", "--port", "/dev/ttyUSB1",
                    "--device", EUI, "--bundles", str(bundles))
    assert proc.returncode == 2
    assert "give them in pairs (got 2 ports, 1 devices)" in proc.stderr


@pytest.mark.slow
def test_twenty_flash_then_check_sequences_on_one_virtual_device(device: VirtualDevice, bundles: Path,
                                                                 app_dir: Path) -> None:
    """flash -> check, 20 times on one virtual device without restarting it: the node's link to its
    simulated peripherals (citynode_sim.simlink) survives the Ctrl-Cs and soft resets of every sequence
    (a Ctrl-C landing while the node waits for a reply used to leave that reply in the pipe, and every
    later call read the previous call's answer)."""
    for i in range(20):
        result = flash(device, bundles, app_dir)
        assert result.ok, (i, result.selftest and result.selftest.failed)
        with open_device(device.port) as transport:  # what `citynode check` does
            report = run_selftest(transport)
            transport.exit_raw_repl()
            transport.serial.write(b"\x04")
        assert report.ok, (i, report.failed)
        assert report.role == "bin_fill" and report.dev_eui.lower() == EUI.lower(), report
        time.sleep(0.2 * (i % 4))  # the node runs cycles between sequences, Ctrl-Cs land anywhere
    assert device.error is None
