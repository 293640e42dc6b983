"""`--firmware`: gateway.field.flash.write_image runs the REAL esptool against a simulated ESP32 ROM loader.

The simulator (gateway.sim.esp_rom) listens on a ``socket://`` URL, speaks the ROM loader's serial
protocol, lets esptool upload its flasher stub and keeps a 0xFF-filled NOR flash of the chip's size, so a
test can check byte for byte what esptool wrote and where.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.field.flash import FlashError, NoPortError, WrongBoardError, load_board, write_image
from gateway.sim.esp_rom import EspRomSimulator

ESP32_BOARD = "ttgo_lora32_v21"  # mcu esp32: image at 0x1000
ESP32S3_BOARD = "heltec_wifi_lora_32_v3"  # mcu esp32s3: image at 0x0
EUI = "70B3D57ED0000007"

# Loader commands (esptool docs, "Serial Protocol"): what the tests expect esptool to have sent.
FLASH_DATA, MEM_END, FLASH_DEFL_DATA, SPI_FLASH_MD5, ERASE_FLASH = 0x03, 0x06, 0x11, 0x13, 0xD0


def firmware_like(size: int, seed: int) -> bytes:
    """Bytes that compress about as well as a MicroPython image (esptool then sends zlib blocks)."""
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(64)]
    return b"".join(rng.choice(words) for _ in range(size // 4))


def incompressible(size: int, seed: int) -> bytes:
    """Random bytes: zlib cannot shrink them, so esptool falls back to plain FLASH_DATA blocks."""
    return random.Random(seed).randbytes(size)


@pytest.fixture
def esp32() -> Iterator[EspRomSimulator]:
    with EspRomSimulator("esp32") as sim:
        yield sim


def image_file(tmp_path: Path, data: bytes, name: str = "ESP32_GENERIC-v1.24.1.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "write_command"),
    [(firmware_like, FLASH_DEFL_DATA), (incompressible, FLASH_DATA)],
    ids=["compressed", "uncompressed"],
)
def test_the_image_lands_at_0x1000_on_an_esp32_byte_for_byte(esp32, tmp_path, make, write_command) -> None:
    data = make(200_000, seed=1)
    steps: list[str] = []
    message = write_image(esp32.url, load_board(ESP32_BOARD), image_file(tmp_path, data), erase=False,
                          progress=steps.append)

    assert message == "wrote ESP32_GENERIC-v1.24.1.bin at 0x1000"
    assert steps[0] == f"esptool --port {esp32.url} write_flash 0x1000 {tmp_path / 'ESP32_GENERIC-v1.24.1.bin'}"
    # esptool's own progress is passed on (a write takes ~20 s on a real board): connect, write, verify
    assert any(s.startswith("esptool: Connecting") for s in steps), steps
    assert any(s.startswith(f"esptool: Wrote {len(data)} bytes") and "at 0x00001000" in s for s in steps), steps
    assert steps[-1] == "esptool: Hash of data verified.", steps
    assert all(len(s) < 120 for s in steps[1:]), steps
    flash = esp32.flash.data
    assert len(flash) == 4 * 1024 * 1024
    assert flash[0x1000:0x1000 + len(data)] == data
    assert flash[:0x1000] == b"\xff" * 0x1000, "the first-stage area before the image stays erased"
    assert flash[0x1000 + len(data):] == b"\xff" * (len(flash) - 0x1000 - len(data))
    # the default path: the stub was uploaded and ran, wrote the blocks and verified them by MD5
    assert esp32.stub_uploads == 1
    assert MEM_END in esp32.commands("rom")
    assert {write_command, SPI_FLASH_MD5} <= esp32.commands("stub")


def test_an_esp32s3_board_gets_its_image_at_0x0_in_8_mb(tmp_path) -> None:
    data = firmware_like(150_000, seed=2)
    with EspRomSimulator("esp32s3") as s3:
        message = write_image(s3.url, load_board(ESP32S3_BOARD), image_file(tmp_path, data), erase=False,
                              progress=lambda _: None)
        flash = s3.flash.data
    assert message.endswith("at 0x0")
    assert len(flash) == 8 * 1024 * 1024
    assert flash[:len(data)] == data
    assert flash[len(data):] == b"\xff" * (len(flash) - len(data))


@pytest.mark.slow
def test_erase_clears_what_an_earlier_image_left_behind(esp32, tmp_path) -> None:
    board = load_board(ESP32_BOARD)
    old = firmware_like(600_000, seed=3)
    new = firmware_like(100_000, seed=4)
    write_image(esp32.url, board, image_file(tmp_path, old, "old.bin"), erase=False, progress=lambda _: None)
    end = 0x1000 + len(new)

    write_image(esp32.url, board, image_file(tmp_path, new, "new.bin"), erase=False, progress=lambda _: None)
    assert esp32.flash.data[end + 0x1000:0x1000 + len(old)] == old[len(new) + 0x1000:], \
        "without --erase the tail of the old image stays (the control case)"

    steps: list[str] = []
    write_image(esp32.url, board, image_file(tmp_path, new, "new.bin"), erase=True, progress=steps.append)
    assert steps[0] == f"esptool --port {esp32.url} erase_flash"
    assert ERASE_FLASH in esp32.commands("stub")
    flash = esp32.flash.data
    assert flash[0x1000:end] == new
    assert flash[end:] == b"\xff" * (len(flash) - end), "nothing of the old image is left"
    assert flash[:0x1000] == b"\xff" * 0x1000


def test_an_esp32s3_board_on_an_esp32_is_the_wrong_board(esp32, tmp_path) -> None:
    with pytest.raises(WrongBoardError) as caught:
        write_image(esp32.url, load_board(ESP32S3_BOARD), image_file(tmp_path, firmware_like(50_000, 5)),
                    erase=False, progress=lambda _: None)
    text = str(caught.value)
    assert text.startswith(f"{esp32.url}: --board {ESP32S3_BOARD} is an esp32s3 board but the chip on the "
                           "port is an ESP32 ")
    assert "This chip is ESP32, not ESP32-S3" in text  # esptool's own words, for the record
    assert "\n" not in text
    assert esp32.flash.data == b"\xff" * len(esp32.flash.data), "nothing was written"


def test_an_esp32_board_on_an_esp32s3_is_the_wrong_board_too(tmp_path) -> None:
    with EspRomSimulator("esp32s3") as s3, pytest.raises(WrongBoardError, match="chip on the port is an ESP32-S3"):
        write_image(s3.url, load_board(ESP32_BOARD), image_file(tmp_path, firmware_like(50_000, 6)),
                    erase=False, progress=lambda _: None)


def test_an_image_larger_than_the_flash_is_refused_before_anything_is_written(esp32, tmp_path) -> None:
    image = image_file(tmp_path, firmware_like(4 * 1024 * 1024, seed=7), "ESP32_GENERIC_S3-SPIRAM_OCT.bin")
    with pytest.raises(FlashError) as caught:
        write_image(esp32.url, load_board(ESP32_BOARD), image, erase=False, progress=lambda _: None)
    assert type(caught.value) is FlashError
    assert str(caught.value) == (
        f"{esp32.url}: ESP32_GENERIC_S3-SPIRAM_OCT.bin is 4194304 bytes, but the board's 4 MB flash holds at "
        f"most 4190208 bytes from 0x1000: is it a MicroPython image for {ESP32_BOARD}?"
    )
    assert esp32.flash.data == b"\xff" * len(esp32.flash.data)


def test_a_port_nobody_listens_on_is_no_port(tmp_path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        url = f"socket://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(NoPortError) as caught:
        write_image(url, load_board(ESP32_BOARD), image_file(tmp_path, b"\x00" * 1024), erase=False,
                    progress=lambda _: None)
    text = str(caught.value)
    assert text.startswith(f"{url}: no such device, or nothing listening there (is the board plugged in?)")
    assert "Connection refused" in text and "\n" not in text


def test_a_missing_serial_device_is_no_port(tmp_path) -> None:
    port = str(tmp_path / "ttyUSB9")  # a device path that does not exist
    with pytest.raises(NoPortError, match=r"no such device, or nothing listening there.*Check if the port is correct"):
        write_image(port, load_board(ESP32_BOARD), image_file(tmp_path, b"\x00" * 1024), erase=False,
                    progress=lambda _: None)


@pytest.mark.slow
def test_a_board_not_in_download_mode_is_told_how_to_get_there(tmp_path) -> None:
    with EspRomSimulator("esp32", download_mode=False) as sim, pytest.raises(FlashError) as caught:
        write_image(sim.url, load_board(ESP32_BOARD), image_file(tmp_path, b"\x00" * 1024), erase=False,
                    progress=lambda _: None)
    text = str(caught.value)
    assert "put the board in download mode (hold BOOT, press and release RESET, release BOOT)" in text
    assert "Failed to connect to ESP32: No serial data received." in text
    assert "troubleshooting.html" not in text


def test_a_write_protected_flash_fails_the_md5_check(tmp_path) -> None:
    with EspRomSimulator("esp32", write_protected=True) as sim, pytest.raises(FlashError) as caught:
        write_image(sim.url, load_board(ESP32_BOARD), image_file(tmp_path, firmware_like(20_000, 8)),
                    erase=False, progress=lambda _: None)
    assert str(caught.value) == f"{sim.url}: esptool write_flash failed: Write failed, the written flash region is empty."


@pytest.mark.slow  # mpremote gives the silent "board" two raw-REPL attempts with their timeouts
def test_citynode_flash_writes_the_firmware_before_talking_to_micropython(esp32, tmp_path) -> None:
    """The CLI path: --firmware --erase reach esptool with the board's offset. The simulator is a ROM loader,
    not MicroPython, so the copy step that follows fails, and says so, after the image is in flash."""
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    (bundles / f"{EUI}.json").write_text(json.dumps({
        "format": "citynode-node-bundle/1", "dev_eui": EUI, "join_eui": "70B3D57ED0001000",
        "app_key": "2B7E151628AED2A6ABF7158809CF4F3C", "role": "bin_fill", "board": ESP32_BOARD,
        "region": "EU868", "intervals": {"interval": 1800, "status_interval": 24},
    }))
    esp32.flash.program(0x200000, b"\x00" * 4096)  # something --erase must remove
    data = firmware_like(120_000, seed=9)
    image = image_file(tmp_path, data)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "flash", "--port", esp32.url, "--board", ESP32_BOARD,
         "--device", EUI, "--bundles", str(bundles), "--firmware", str(image), "--erase", "--no-selftest"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    flash = esp32.flash.data
    assert flash[0x1000:0x1000 + len(data)] == data
    assert flash[0x200000:0x201000] == b"\xff" * 0x1000, "--erase erased the whole flash first"
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "does not answer in the raw REPL" in proc.stdout + proc.stderr


def test_the_rom_loader_alone_writes_and_verifies_with_no_stub(esp32, tmp_path) -> None:
    """esptool --no-stub: the ROM's own dialect (SPI_ATTACH, SPI_SET_PARAMS, FLASH_BEGIN erasing up front,
    1 KB FLASH_DATA blocks, MD5 as 32 hex digits). write_image does not use it; the simulator must."""
    data = incompressible(30_000, seed=10)
    image = image_file(tmp_path, data)
    proc = subprocess.run(
        [sys.executable, "-m", "esptool", "--chip", "esp32", "--port", esp32.url, "--no-stub",
         "write_flash", "0x1000", str(image)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Hash of data verified." in proc.stdout
    assert esp32.flash.data[0x1000:0x1000 + len(data)] == data
    assert esp32.stub_uploads == 0 and esp32.commands("stub") == set()
    SPI_ATTACH, SPI_SET_PARAMS, FLASH_BEGIN = 0x0D, 0x0B, 0x02
    assert {SPI_ATTACH, SPI_SET_PARAMS, FLASH_BEGIN, FLASH_DATA, SPI_FLASH_MD5} <= esp32.commands("rom")
