"""The virtual device speaks a board's REPL on a pty: mpremote's real transport and pyserial drive it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

from gateway.sim.virtual_device import EXIT_CODES, Reset, VirtualDevice, reset_cause_for_exit


@pytest.fixture
def fs(tmp_path: Path) -> Path:
    return tmp_path / "fs"


@pytest.fixture
def device(fs: Path) -> Iterator[VirtualDevice]:
    with VirtualDevice(fs) as dev:
        yield dev


@pytest.fixture
def transport(device: VirtualDevice) -> Iterator[SerialTransport]:
    t = SerialTransport(device.port, baudrate=115200)
    try:
        yield t
    finally:
        t.close()


def read_until(port: serial.Serial, ending: bytes, timeout: float = 10.0) -> bytes:
    """Bytes from the port up to and including ending; fails showing what came instead."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(ending):
        if time.monotonic() > deadline:
            pytest.fail(f"expected {ending!r}, received {data!r}")
        data += port.read(1)
    return data


def sync(port: serial.Serial) -> None:
    """Wait until the friendly REPL has answered everything sent so far (banner and prompts included)."""
    port.write(b"'sync'\r")
    read_until(port, b"'sync'\r\n>>> ")


# ---- mpremote's SerialTransport ----------------------------------------------------------------

def test_the_port_is_a_pty_that_mpremote_recognises(device: VirtualDevice) -> None:
    assert device.port.startswith("/dev/pts/")
    assert SerialTransport._is_pty_device(device.port)


def test_mpremote_enters_the_raw_repl_with_a_soft_reset_and_evaluates(transport: SerialTransport) -> None:
    transport.enter_raw_repl(soft_reset=True)
    assert transport.eval("1 + 2") == 3
    assert transport.eval("'citynode'") == "citynode"
    assert transport.exec("print('a'); print('b')") == b"a\r\nb\r\n"  # the board's UART turns \n into \r\n


def test_globals_survive_between_execs_but_not_a_soft_reset(transport: SerialTransport) -> None:
    transport.enter_raw_repl(soft_reset=True)
    transport.exec("x = 42")
    assert transport.eval("x") == 42
    transport.enter_raw_repl(soft_reset=True)
    with pytest.raises(TransportExecError, match="NameError"):
        transport.exec("x")


def test_code_longer_than_the_raw_paste_window_arrives_whole(transport: SerialTransport) -> None:
    transport.enter_raw_repl()
    code = "s = 0\n" + "".join(f"s += {i}\n" for i in range(400)) + "print(s)\n"
    assert len(code) > 4 * 256
    assert transport.exec(code).strip() == str(sum(range(400))).encode()
    assert transport.use_raw_paste  # raw-paste was accepted (b"R\x01"), not fallen back from


def test_a_traceback_comes_back_as_error_output(transport: SerialTransport) -> None:
    transport.enter_raw_repl()
    with pytest.raises(TransportExecError) as exc:
        transport.exec("def f():\n    return 1 / 0\nf()")
    assert "ZeroDivisionError" in exc.value.error_output
    assert transport.eval("2 * 21") == 42  # the REPL carries on


def test_filesystem_calls_work_on_the_device_directory(transport: SerialTransport, fs: Path) -> None:
    transport.enter_raw_repl()
    transport.fs_mkdir("lib")
    transport.fs_writefile("lib/hello.py", b"GREETING = 'moin'\n")
    payload = bytes(range(256)) * 20  # binary, more than one raw-paste window
    transport.fs_writefile("blob.bin", payload)
    assert transport.fs_readfile("blob.bin") == payload
    names = {entry.name for entry in transport.fs_listdir("")}
    assert {"lib", "blob.bin"} <= names
    assert (fs / "lib" / "hello.py").read_text() == "GREETING = 'moin'\n"
    assert transport.eval("__import__('hello').GREETING") == "moin"  # fs/lib is on sys.path, like /lib


def test_the_device_cannot_import_the_gateway_package_beside_its_repl(transport: SerialTransport) -> None:
    transport.enter_raw_repl()
    assert transport.eval("__import__('sys').path[0]") == ""
    with pytest.raises(TransportExecError, match="ImportError"):
        transport.exec("import vdev_repl")


def test_a_running_program_is_interrupted_by_enter_raw_repl(fs: Path) -> None:
    fs.mkdir(parents=True)
    (fs / "main.py").write_text("import time\nprint('app started')\nwhile True:\n    time.sleep_ms(10)\n")
    with VirtualDevice(fs) as dev:
        t = SerialTransport(dev.port, baudrate=115200)
        try:
            t.enter_raw_repl(soft_reset=True)  # its Ctrl-C stops main.py; the soft reset does not rerun it
            assert t.eval("'free'") == "free"
        finally:
            t.close()


# A node that spends much of its time in the garbage collector between short sleeps.
GC_CHURN = """import gc, time
keep = [bytearray(64) for _ in range(300)]
print('app started')
while True:
    junk = [bytearray(32) for _ in range(50)]
    gc.collect()
    gc.collect()
    time.sleep_ms(1)
"""


def test_ctrl_c_stops_main_py_as_a_board_does_even_right_after_a_soft_reset(fs: Path) -> None:
    # The unix port's SIGINT handler jumps out of whatever C code runs; a Ctrl-C that lands in the
    # garbage collector leaves the heap locked ("MemoryError: ... heap is locked"). On a board the
    # interrupt only takes effect between two bytecodes: so it must here, and the REPL keep working.
    # Each round soft-resets (main.py starts again) and sends mpremote's Ctrl-C right behind the Ctrl-D.
    fs.mkdir(parents=True)
    (fs / "main.py").write_text(GC_CHURN)
    with VirtualDevice(fs) as dev:
        t = SerialTransport(dev.port, baudrate=115200)
        t.serial.timeout = 0.5  # a silent device fails the test instead of blocking mpremote's read
        try:
            for _ in range(5):
                t.enter_raw_repl(soft_reset=True, timeout_overall=5)
                assert t.eval("len([bytearray(100) for _ in range(50)])") == 50
                t.exit_raw_repl()
                t.serial.write(b"\x04")  # soft reset in the friendly REPL: main.py runs again
        finally:
            t.close()
        assert dev.resets == []  # never restarted: the interpreter survived every interrupt


def test_ctrl_c_interrupts_an_exec_that_never_ends(transport: SerialTransport) -> None:
    transport.enter_raw_repl()
    transport.exec_raw_no_follow("while True:\n    pass\n")
    transport.serial.write(b"\x03")
    out, err = transport.follow(timeout=10)
    assert b"KeyboardInterrupt" in err, (out, err)
    assert transport.eval("1") == 1


# ---- resets ------------------------------------------------------------------------------------

RESET_TABLE = [
    # exit code, reset cause the next start reads from CITYNODE_RESET_CAUSE
    (64, "soft"),
    (65, "watchdog"),
    (66, "deep_sleep"),
    (67, "brownout"),
    (1, "panic"),
    (3, "panic"),
]


@pytest.mark.parametrize(("code", "cause"), RESET_TABLE)
def test_exit_codes_map_to_reset_causes(code: int, cause: str) -> None:
    assert reset_cause_for_exit(code) == cause


def test_the_exit_code_table_uses_the_payload_contracts_vocabulary(repo_root: Path) -> None:
    import json

    schema = json.loads((repo_root / "codecs" / "schema.json").read_text())
    fields = schema["messages"]["device_status"]["versions"]["1"]
    causes = next(f["values"] for f in fields if f["name"] == "reset_cause")
    assert set(EXIT_CODES.values()) | {"power_on", "panic"} <= set(causes)


def test_first_start_is_a_power_on(transport: SerialTransport) -> None:
    transport.enter_raw_repl()
    assert transport.eval("__import__('os').getenv('CITYNODE_RESET_CAUSE')") == "power_on"


def test_a_machine_reset_restarts_the_interpreter_and_keeps_the_files(
    device: VirtualDevice, transport: SerialTransport
) -> None:
    transport.enter_raw_repl()
    transport.fs_writefile("config.json", b'{"role": "bin_fill"}')
    first_pid = device.pid
    transport.exec_raw_no_follow("import sys\nsys.exit(64)  # what machine.reset() does on the sim HAL\n")
    assert device.wait_resets(1)
    assert device.resets == [Reset(64, "soft")]
    assert device.pid != first_pid
    transport.enter_raw_repl()
    assert transport.eval("__import__('os').getenv('CITYNODE_RESET_CAUSE')") == "soft"
    assert transport.fs_readfile("config.json") == b'{"role": "bin_fill"}'
    assert transport.eval("'x' in globals()") is False


def test_a_watchdog_exit_then_a_crash_are_reported_in_order(device: VirtualDevice, transport: SerialTransport) -> None:
    transport.enter_raw_repl()
    transport.exec_raw_no_follow("raise SystemExit(65)")
    assert device.wait_resets(1)
    transport.enter_raw_repl()
    assert transport.eval("__import__('os').getenv('CITYNODE_RESET_CAUSE')") == "watchdog"
    os.kill(device.pid or 0, 9)  # the interpreter dies without a word
    assert device.wait_resets(2)
    assert [r.cause for r in device.resets] == ["watchdog", "panic"]
    assert device.resets[1].exit_code == -9


def test_hard_reset_is_a_power_cycle(device: VirtualDevice, transport: SerialTransport) -> None:
    transport.enter_raw_repl()
    device.hard_reset()
    assert device.wait_resets(1)
    assert device.resets[0].cause == "power_on"
    transport.enter_raw_repl()
    assert transport.eval("__import__('os').getenv('CITYNODE_RESET_CAUSE')") == "power_on"


def test_boot_py_and_main_py_run_again_after_a_reset(fs: Path) -> None:
    fs.mkdir(parents=True)
    (fs / "boot.py").write_text("print('boot.py ran')\n")
    (fs / "main.py").write_text("import os\nprint('main.py ran, reset cause', os.getenv('CITYNODE_RESET_CAUSE'))\n")
    with VirtualDevice(fs) as dev, serial.Serial(dev.port, timeout=0.1) as port:
        dev.hard_reset("power_on")  # the boot output before the port was opened is gone, as on a board
        text = read_until(port, b">>> ").decode()
        assert "boot.py ran\r\nmain.py ran, reset cause power_on\r\nMicroPython v" in text
        port.write(b"raise SystemExit(66)\r")
        text = read_until(port, b">>> ").decode()
        assert "main.py ran, reset cause deep_sleep" in text


# ---- pyserial directly -------------------------------------------------------------------------

def test_the_friendly_repl_echoes_evaluates_and_prints_with_crlf(device: VirtualDevice) -> None:
    with serial.Serial(device.port, timeout=0.1) as port:
        sync(port)
        port.write(b"6 * 7\r")
        assert read_until(port, b">>> ").endswith(b"6 * 7\r\n42\r\n>>> ")
        port.write(b"for i in range(2):\r    print('row', i)\r\r")
        assert b"row 0\r\nrow 1\r\n>>> " in read_until(port, b"row 1\r\n>>> ")


def test_ctrl_c_on_pyserial_interrupts_a_loop_in_the_friendly_repl(device: VirtualDevice) -> None:
    with serial.Serial(device.port, timeout=0.1) as port:
        sync(port)
        port.write(b"while True: pass\r")
        read_until(port, b"while True: pass\r\n")  # echoed; now it runs
        port.write(b"\x03")
        assert b"KeyboardInterrupt" in read_until(port, b">>> ")
        port.write(b"'alive'\r")
        assert b"'alive'\r\n>>> " in read_until(port, b"'alive'\r\n>>> ")


def test_ctrl_d_in_the_friendly_repl_soft_reboots_and_runs_main_py(fs: Path) -> None:
    fs.mkdir(parents=True)
    with VirtualDevice(fs) as dev, serial.Serial(dev.port, timeout=0.1) as port:
        (fs / "main.py").write_text("print('main.py says hello')\n")
        sync(port)
        port.write(b"\x04")
        text = read_until(port, b">>> ")
        assert b"MPY: soft reboot\r\nmain.py says hello\r\nMicroPython v" in text


# ---- lifetime ----------------------------------------------------------------------------------

def test_nothing_is_left_running_after_close(fs: Path) -> None:
    dev = VirtualDevice(fs)
    port = dev.start()
    pid = dev.pid
    assert pid is not None
    dev.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert dev._master == -1 and dev._slave == -1
    with pytest.raises((OSError, serial.SerialException)):
        serial.Serial(port, timeout=0.1).read(1)
    dev.close()  # twice is harmless


def test_the_cli_prints_the_port_and_stops_on_sigint(fs: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "virtual-device", "--fs", str(fs)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/pts/")
        t = SerialTransport(port, baudrate=115200)
        try:
            t.enter_raw_repl()
            assert t.eval("3 * 3") == 9
        finally:
            t.close()
        proc.send_signal(2)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_busy_port_cannot_be_opened_twice_by_mpremote(device: VirtualDevice) -> None:
    first = SerialTransport(device.port, baudrate=115200)
    try:
        with pytest.raises(TransportError):
            SerialTransport(device.port, baudrate=115200)
    finally:
        first.close()
