"""Flash and verify a node over its USB serial port: firmware image, app, config, self-test.

One call per board, :func:`flash_node`:

1. optionally writes a MicroPython image with ``esptool`` (``--firmware``; a virtual device on a pty
   has no flash chip, so the image is skipped with a message);
2. builds the app with ``mpy-cross`` (:func:`gateway.field.firmware_build.build_firmware`), adds
   ``config.json`` made from the provisioning bundle (``bundles/<DevEUI>.json``) and ``board.json``
   (``boards/<board>.json``); the virtual board (``"mcu": "unix"``, the virtual device) also gets the
   simulation package ``lib/citynode_sim`` (:func:`gateway.field.firmware_build.build_sim`), a real board never;
3. copies them with mpremote's ``SerialTransport`` (raw REPL), only the files whose SHA-256 differs
   from what the board holds, ``config.json`` last;
4. verifies: reads back ``citynode.VERSION``, DevEUI and role, and runs ``citynode.selftest``
   (one line ``SELFTEST <json>``); then soft-resets the board so ``main.py`` starts.

The common failures raise one :class:`FlashError` subclass each, with a one-line message:
:class:`NoPortError`, :class:`WrongBoardError`, :class:`DeviceBusyError`, :class:`OutOfFlashError`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import CitynodeError, ConfigError
from gateway.field.firmware_build import build_firmware, build_sim
from gateway.paths import boards_dir, firmware_module

__all__ = [
    "DeviceBusyError",
    "FlashError",
    "FlashResult",
    "NoPortError",
    "OutOfFlashError",
    "SelfTest",
    "WrongBoardError",
    "config_from_bundle",
    "flash_node",
    "interrupt",
    "is_pty",
    "board_roles",
    "check_board_role",
    "load_board",
    "load_bundle",
    "open_device",
    "run_selftest",
]

# sys.platform of each MCU family a board definition names ("mcu"): MicroPython reports "esp32" for the
# whole ESP32 family, CircuitPython "Espressif"; the virtual board is the unix port.
PLATFORMS: dict[str, frozenset[str]] = {
    "esp32": frozenset({"esp32", "Espressif"}),
    "esp32s3": frozenset({"esp32", "Espressif"}),
    "unix": frozenset({"linux", "darwin"}),
}
# Where the MicroPython image starts in flash (esptool write_flash offset): the ESP32's second-stage
# bootloader sits at 0x1000, the ESP32-S3's at 0x0 (MicroPython download page, "Installation instructions").
IMAGE_OFFSETS: dict[str, str] = {"esp32": "0x1000", "esp32s3": "0x0"}
# Keys of config.json a bundle provides (firmware/lib/citynode/config.py validates them on the node).
_BUNDLE_KEYS = ("role", "board", "dev_eui", "join_eui", "app_key", "region", "gen_app_key", "fuota_pub")
_SELFTEST_CODE = "import citynode.selftest as _s\n_s.run()\n"
_RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
# Stopping a running node: Ctrl-C then Ctrl-A, again every _INTERRUPT_RETRY_S until the raw REPL answers,
# for at most _INTERRUPT_TIMEOUT_S; then it waits until the board has been quiet for _QUIET_S.
_INTERRUPT_RETRY_S = 2.5
_INTERRUPT_TIMEOUT_S = 15.0
_QUIET_S = 0.25


class FlashError(CitynodeError):
    """Flashing or verifying a node failed; the message is one line saying what and on which port."""


class NoPortError(FlashError):
    """The serial port does not exist (board not plugged in, wrong path)."""


class WrongBoardError(FlashError):
    """The board on the port is not the board asked for (sys.platform or its board.json differ)."""


class DeviceBusyError(FlashError):
    """Another program holds the port, or a program on the board does not stop for the raw REPL."""


class OutOfFlashError(FlashError):
    """The board's filesystem is full (OSError ENOSPC, errno 28); the message says how much is free."""


@dataclass(frozen=True)
class SelfTest:
    """The node's self-test report: what ``citynode.selftest.run()`` printed after ``SELFTEST``."""

    version: str
    dev_eui: str | None
    role: str | None
    board: str | None
    checks: tuple[dict[str, Any], ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.get("ok") for c in self.checks)

    @property
    def not_fitted(self) -> tuple[dict[str, Any], ...]:
        """Checks of parts the node has not got (PM1.0 on an SDS011, the radio of a console link)."""
        return tuple(c for c in self.checks if c.get("not_fitted"))

    @property
    def failed(self) -> tuple[dict[str, Any], ...]:
        return tuple(c for c in self.checks if not c.get("ok"))


@dataclass(frozen=True)
class FlashResult:
    """What one flash did: files written and kept, bytes copied, what the board reported back."""

    port: str
    dev_eui: str
    board: str
    role: str
    version: str
    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    bytes_written: int
    selftest: SelfTest | None
    messages: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.selftest is None or self.selftest.ok


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ---- inputs -------------------------------------------------------------------------------------

def normalise_eui(value: str) -> str:
    """A DevEUI as 16 upper-case hex digits; ``-``, ``:`` and spaces between bytes are allowed."""
    eui = re.sub(r"[\s:-]", "", value).upper()
    if not re.fullmatch(r"[0-9A-F]{16}", eui):
        raise ConfigError(f"--device {value!r}: expected a DevEUI of 16 hex digits")
    return eui


def load_bundle(bundles: Path, dev_eui: str) -> dict[str, Any]:
    """The provisioning bundle ``<bundles>/<DevEUI>.json`` (written by ``citynode provision``)."""
    eui = normalise_eui(dev_eui)
    candidates = [bundles / f"{eui}.json", bundles / f"{eui.lower()}.json"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ConfigError(
            f"--device {eui}: no bundle {candidates[1]} (run `citynode provision` first, or pass --bundles DIR)"
        )
    try:
        bundle = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"bundle {path}: not readable JSON ({exc})") from exc
    if not isinstance(bundle, dict):
        raise ConfigError(f"bundle {path}: expected a JSON object")
    if normalise_eui(str(bundle.get("dev_eui", ""))) != eui:
        raise ConfigError(f"bundle {path}: dev_eui is {bundle.get('dev_eui')!r}, expected {eui}")
    return bundle


def load_board(board: str) -> dict[str, Any]:
    """The board definition ``boards/<board>.json``; unknown names list the known ones."""
    path = boards_dir() / f"{board}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in boards_dir().glob("*.json"))) or "none"
        raise ConfigError(f"--board {board!r}: unknown board (known: {known})")
    return json.loads(path.read_text())


def board_roles(board: str) -> tuple[str, ...]:
    """The roles ``boards/<board>.json`` says the board carries (its ``roles`` list)."""
    return tuple(load_board(board).get("roles") or ())


def check_board_role(board: str, role: str, *, who: str = "") -> None:
    """:class:`WrongBoardError` naming both when ``board`` cannot carry ``role``."""
    roles = board_roles(board)
    if roles and role not in roles:
        raise WrongBoardError(
            f"{who}board {board} cannot carry role {role} (boards/{board}.json roles: {', '.join(roles)})"
        )


def config_from_bundle(bundle: dict[str, Any], board: str) -> dict[str, Any]:
    """The node's config.json from its bundle, in the form firmware/lib/citynode/config.py validates."""
    if bundle.get("board") not in (None, board):
        raise WrongBoardError(
            f"--board {board} but the bundle for {bundle.get('dev_eui')} was provisioned for {bundle['board']}"
        )
    config = {key: bundle[key] for key in _BUNDLE_KEYS if bundle.get(key) is not None}
    config["board"] = board
    config["dev_eui"] = normalise_eui(config["dev_eui"])
    if "role" in config:
        check_board_role(board, str(config["role"]), who=f"{config['dev_eui']}: ")
    intervals = bundle.get("intervals") or {}
    for key in ("interval", "status_interval"):
        if key in intervals:
            config[key] = intervals[key]
    _validate_on_host(config)
    return config


def _validate_on_host(config: dict[str, Any]) -> None:
    """Run the firmware's own config validation (it imports under CPython) before touching the board."""
    fw_config = firmware_module("citynode.config")
    try:
        fw_config.validate(dict(config))
    except ValueError as exc:  # citynode.config.ConfigError is a ValueError naming the field
        raise ConfigError(f"bundle for {config.get('dev_eui')}: {exc}") from exc


def is_pty(port: str) -> bool:
    """True for a pseudo-terminal (the virtual device, QEMU): Linux pty slaves have major number 136."""
    try:
        st = os.stat(port)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 136


# ---- the connection -----------------------------------------------------------------------------

def _probe_port(port: str) -> None:
    """Open the port once, exclusively, to tell 'no such device' from 'busy' before mpremote tries."""
    import serial

    if not port.startswith(("socket://", "rfc2217://", "loop://")) and not os.path.exists(port):
        raise NoPortError(f"{port}: no such device (is the board plugged in? see `ls /dev/ttyUSB* /dev/ttyACM*`)")
    try:
        serial.serial_for_url(port, exclusive=True).close()
    except serial.SerialException as exc:
        text = str(exc)
        if "exclusively lock" in text or getattr(exc, "errno", None) in (errno.EBUSY, errno.EAGAIN):
            raise DeviceBusyError(f"{port}: busy, another program has the port open (close it and retry)") from exc
        if getattr(exc, "errno", None) == errno.ENOENT:
            raise NoPortError(f"{port}: no such device") from exc
        raise FlashError(f"{port}: cannot open ({text})") from exc


def interrupt(transport: Any, port: str, timeout: float = _INTERRUPT_TIMEOUT_S, *,
              firmware_given: bool = False) -> None:
    """Stop the board's program and leave it in the raw REPL, or raise DeviceBusyError after ``timeout`` s.

    mpremote sends one Ctrl-C and waits 10 s for the raw REPL. One Ctrl-C is not always enough: it
    can arrive while the board is still soft-resetting (``main.py`` starts after it and runs on), be
    lost while the chip wakes from light sleep, or be caught by the program. So this sends Ctrl-C
    then Ctrl-A again every 2.5 s until the raw REPL banner comes, reading (and dropping) what the
    program prints meanwhile, then waits until the board is quiet so that the banners of the later
    Ctrl-As are not taken for answers to the next command.
    """
    ser = transport.serial
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ser.write(b"\r\x03")  # Ctrl-C: interrupt the running program
        ser.write(b"\r\x01")  # Ctrl-A: enter the raw REPL
        attempt_end = min(deadline, time.monotonic() + _INTERRUPT_RETRY_S)
        while time.monotonic() < attempt_end:
            seen = seen[-len(_RAW_BANNER):] + ser.read(max(1, ser.in_waiting))
            if _RAW_BANNER in seen:
                _drain(ser, deadline)
                return
    raise _not_answering(port, firmware_given)


def _not_answering(port: str, firmware_given: bool = False) -> DeviceBusyError:
    remedy = ("press its reset button; the image written with --firmware may not be MicroPython for this board"
              if firmware_given else "press its reset button, or reflash with --firmware")
    return DeviceBusyError(
        f"{port}: the board does not answer in the raw REPL: a program on it does not stop at "
        f"Ctrl-C, or it is not running MicroPython ({remedy})"
    )


def _drain(ser: Any, deadline: float) -> None:
    """Read and drop what the board sends until it has been quiet for _QUIET_S (or the deadline)."""
    quiet_from = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_from < _QUIET_S:
        waiting = ser.in_waiting
        if waiting:
            ser.read(waiting)
            quiet_from = time.monotonic()
        else:
            time.sleep(0.01)


@contextmanager
def open_device(port: str, *, soft_reset: bool = True, firmware_given: bool = False) -> Iterator[Any]:
    """mpremote's SerialTransport on ``port``, in the raw REPL (the board's program interrupted).

    The program is stopped by :func:`interrupt`. Raises NoPortError, DeviceBusyError or FlashError
    with one line; closes the port afterwards.
    """
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    _probe_port(port)
    try:
        transport = SerialTransport(port, baudrate=115200)
    except TransportError as exc:
        raise DeviceBusyError(f"{port}: cannot open the port ({exc})") from exc
    # On a pty mpremote reads without waiting for data first, so a read without a timeout would block
    # for ever on a silent board instead of letting read_until's own timeouts fire.
    transport.serial.timeout = 0.5
    try:
        interrupt(transport, port, firmware_given=firmware_given)
        try:
            transport.enter_raw_repl(soft_reset=soft_reset)  # the board is idle in the raw REPL now
        except TransportError as exc:
            raise _not_answering(port, firmware_given) from exc
        yield transport
    finally:
        try:
            transport.close()
        except OSError:
            pass


def _eval_json(transport: Any, code: str) -> Any:
    """Run code on the board whose last printed line is JSON."""
    out = transport.exec(code).decode(errors="replace").strip().splitlines()
    return json.loads(out[-1]) if out else None


_FREE_CODE = "import os, json\ns = os.statvfs(os.getcwd())\nprint(json.dumps([s[0] * s[4], s[0] * s[2]]))\n"

# Walks the board's filesystem and prints one line "<size> <sha256 hex> <path>" per file (hashlib.sha256
# exists on the ESP32 and unix ports); line by line, so a full flash needs no big string on a small heap.
_HASH_CODE = """
import os, hashlib, binascii
def _walk(d):
    for e in os.ilistdir(d) if d else os.ilistdir():
        p = d + "/" + e[0] if d else e[0]
        if e[1] == 0x4000:
            _walk(p)
        elif e[1] == 0x8000:  # regular files only (a unix-port filesystem may hold links or devices)
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while True:
                    b = f.read(512)
                    if not b:
                        break
                    h.update(b)
            print(os.stat(p)[6], binascii.hexlify(h.digest()).decode(), p)
_walk("")
"""

_ERASE_CODE = """
import os
def _rm(d):
    for e in list(os.ilistdir(d) if d else os.ilistdir()):
        p = d + "/" + e[0] if d else e[0]
        if e[1] & 0x4000:
            _rm(p)
            os.rmdir(p)
        else:
            os.remove(p)
_rm("")
"""


def free_bytes(transport: Any) -> int:
    """Free bytes on the board's filesystem (os.statvfs: f_bsize * f_bavail)."""
    return int(_eval_json(transport, _FREE_CODE)[0])


def remote_files(transport: Any) -> dict[str, tuple[int, str]]:
    """Every file on the board with its size and SHA-256."""
    files: dict[str, tuple[int, str]] = {}
    for line in transport.exec(_HASH_CODE).decode(errors="replace").splitlines():
        size, digest, path = line.split(" ", 2)
        files[path] = (int(size), digest)
    return files


def run_selftest(transport: Any, timeout: float = 30.0) -> SelfTest:
    """Run the node self-test (``citynode.selftest.run()``) and parse its ``SELFTEST <json>`` line."""
    from mpremote.transport import TransportExecError

    try:
        out, err = transport.exec_raw(_SELFTEST_CODE, timeout=timeout)
    except TransportExecError as exc:  # pragma: no cover - exec_raw does not raise it
        raise FlashError(f"self-test could not run: {exc}") from exc
    if err:
        last = err.decode(errors="replace").strip().splitlines()[-1:]
        raise FlashError(f"self-test could not run on the board: {last[0] if last else 'error'}")
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("SELFTEST "):
            report = json.loads(line[len("SELFTEST "):])
            return SelfTest(
                version=str(report.get("version")),
                dev_eui=report.get("dev_eui"),
                role=report.get("role"),
                board=report.get("board"),
                checks=tuple(report.get("checks", ())),
            )
    raise FlashError("self-test printed no SELFTEST line (is the citynode app on the board?)")


# ---- flashing -----------------------------------------------------------------------------------

def write_image(port: str, board: dict[str, Any], image: Path, *, erase: bool, progress: Progress) -> str:
    """Write a MicroPython image with esptool; on a pty, say that it cannot and return that message.

    esptool failures become one line a technician can act on: :class:`NoPortError` (nothing at the
    port), :class:`DeviceBusyError`, :class:`WrongBoardError` (the chip is not the board's MCU), or
    :class:`FlashError` (no answer from the ROM bootloader, image too large for the flash, write failed).
    Tested against the real esptool with ``gateway.sim.esp_rom``.
    """
    if is_pty(port):
        message = f"{port} is a virtual device (pty): it has no flash chip, so {image.name} was not written"
        progress(message)
        return message
    mcu = str(board.get("mcu", "esp32"))
    if mcu not in IMAGE_OFFSETS:
        raise WrongBoardError(f"board {board.get('name')}: esptool cannot write an image for mcu {mcu!r}")
    if not image.is_file():
        raise ConfigError(f"--firmware {image}: no such file")
    # write_flash/erase_flash: the spelling esptool 4 knows; esptool 5 accepts it with a deprecation note.
    base = [sys.executable, "-m", "esptool", "--chip", mcu, "--port", port]
    steps = ([base + ["erase_flash"]] if erase else []) + [base + ["write_flash", IMAGE_OFFSETS[mcu], str(image)]]
    for argv in steps:
        progress(f"esptool {' '.join(argv[5:])}")
        proc = _run_esptool(argv, progress)
        if proc.returncode != 0:
            reason = _esptool_reason(proc.stderr, proc.stdout, proc.returncode)
            raise _esptool_error(port, board, image, argv[7], reason)
    return f"wrote {image.name} at {IMAGE_OFFSETS[mcu]}"


# esptool's own progress lines worth passing on (the rest is chip details and hashes).
_ESPTOOL_PROGRESS = re.compile(r"^(Connecting|Chip is|Erasing|Writing at .*\((\d+) ?%\)|Wrote |Hash of data|"
                               r"Chip erase completed|Leaving)")


def _run_esptool(argv: list[str], progress: Progress) -> subprocess.CompletedProcess[str]:
    """Run esptool, passing its progress lines on as they come (writing an image takes ~20 s)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    last_percent = -10
    for line in proc.stdout:  # text mode: esptool's "\r" progress updates arrive as lines
        out.append(line)
        match = _ESPTOOL_PROGRESS.match(line.strip())
        if match:
            percent = match.group(2)
            if percent is not None:
                if int(percent) < last_percent + 10 and int(percent) != 100:
                    continue  # every 10 % is enough for a log
                last_percent = int(percent)
            progress(f"esptool: {line.strip().split('NOTE:')[0].strip()}")
    err = proc.stderr.read()
    proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, "".join(out), err)


_ESPTOOL_FATAL = re.compile(r"A fatal error occurred: (.*)", re.DOTALL)
_ESPTOOL_NOISE = ("For troubleshooting steps", "WARNING: Deprecated")


def _esptool_reason(stderr: str, stdout: str, returncode: int) -> str:
    """esptool's own reason on one line: the text after "A fatal error occurred:" to the end of that stream
    (it may run over several lines; the troubleshooting link is dropped), else the last line it printed."""
    for output in (stderr, stdout):
        found = _ESPTOOL_FATAL.search(output)
        if found:
            lines = [line.strip() for line in found.group(1).splitlines()]
            return " ".join(line for line in lines if line and not line.startswith(_ESPTOOL_NOISE))
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines()]
    lines = [line for line in lines if line and not line.startswith(_ESPTOOL_NOISE)]
    return lines[-1] if lines else f"exit code {returncode}"


def _esptool_error(port: str, board: dict[str, Any], image: Path, step: str, reason: str) -> FlashError:
    """The FlashError subclass and message for one failed esptool step."""
    name, mcu = board.get("name"), board.get("mcu")
    chip = re.search(r"This chip is ([\w-]+),? not ([\w-]+)", reason)
    if chip or "Wrong --chip" in reason or "Wrong chip argument" in reason:
        found = chip.group(1) if chip else "another chip"
        return WrongBoardError(f"{port}: --board {name} is an {mcu} board but the chip on the port is an {found} "
                               f"(esptool: {reason})")
    if "Could not open" in reason:
        if re.search(r"Errno 2\b|No such file|Connection refused", reason):
            return NoPortError(f"{port}: no such device, or nothing listening there (is the board plugged in?) "
                               f"(esptool: {reason})")
        if re.search(r"exclusively lock|Errno 1[16]\b|Access is denied", reason):
            return DeviceBusyError(f"{port}: busy, another program has the port open (close it and retry)")
    if "Failed to connect" in reason:
        return FlashError(f"{port}: the chip's ROM bootloader does not answer: put the board in download mode "
                          f"(hold BOOT, press and release RESET, release BOOT) and retry (esptool: {reason})")
    fit = re.search(r"will not fit in (\d+) bytes of flash", reason)
    if fit:
        flash, offset = int(fit.group(1)), int(IMAGE_OFFSETS[str(mcu)], 16)
        return FlashError(f"{port}: {image.name} is {image.stat().st_size} bytes, but the board's "
                          f"{flash // 2**20} MB flash holds at most {flash - offset} bytes from "
                          f"{IMAGE_OFFSETS[str(mcu)]}: is it a MicroPython image for {name}?")
    return FlashError(f"{port}: esptool {step} failed: {reason}")


def _check_board(transport: Any, port: str, board: dict[str, Any], erase: bool) -> None:
    name = board["name"]
    platform = transport.eval("__import__('sys').platform")
    accepted = PLATFORMS.get(str(board.get("mcu")), frozenset())
    if accepted and platform not in accepted:
        raise WrongBoardError(
            f"{port}: --board {name} is an {board.get('mcu')} board but the device reports sys.platform {platform!r}"
        )
    if erase:
        return
    try:
        existing = json.loads(transport.fs_readfile("board.json"))
    except Exception:  # no board.json yet (a fresh board) or unreadable: nothing to contradict
        return
    if isinstance(existing, dict) and existing.get("name") not in (None, name):
        raise WrongBoardError(
            f"{port}: the device's board.json is {existing.get('name')!r}, not {name!r} "
            "(pass --erase to repurpose the board)"
        )


def app_files(board_def: dict[str, Any], extra: dict[str, bytes], app_dir: Path | None = None,
              progress: Progress = _quiet) -> dict[str, bytes]:
    """The files ``citynode flash`` copies to a board: the built app (``app_dir``, else built now),
    ``extra`` (config.json, board.json) and, for the virtual board only, ``lib/citynode_sim``."""
    if app_dir is not None:
        files = _local_files(app_dir, extra)
    else:
        with tempfile.TemporaryDirectory(prefix="citynode-flash-") as tmp:
            progress("building the app with mpy-cross")
            build_firmware(Path(tmp) / "app")
            files = _local_files(Path(tmp) / "app", extra)
    if is_virtual_board(board_def):
        with tempfile.TemporaryDirectory(prefix="citynode-flash-sim-") as tmp:
            build_sim(Path(tmp))
            files = {**_local_files(Path(tmp), {}), **files}
    return files


def is_virtual_board(board_def: dict[str, Any]) -> bool:
    """The virtual board (MicroPython unix port: the virtual device), the only one that gets citynode_sim."""
    return board_def.get("mcu") == "unix"


def _local_files(build: Path, extra: dict[str, bytes]) -> dict[str, bytes]:
    files = {p.relative_to(build).as_posix(): p.read_bytes() for p in sorted(build.rglob("*")) if p.is_file()}
    files.update(extra)
    return files


def _out_of_flash(port: str, transport: Any, need: int | None = None) -> OutOfFlashError:
    try:
        free = free_bytes(transport)
        detail = f"{free} bytes free"
    except Exception:
        detail = "free space unknown"
    needs = f", {need} more bytes needed" if need is not None else ""
    return OutOfFlashError(f"{port}: out of flash: {detail}{needs} (pass --erase to remove old files)")


def _copy(transport: Any, port: str, files: dict[str, bytes], erase: bool, progress: Progress) -> tuple[list[str], list[str]]:
    from mpremote.transport import TransportError

    if erase:
        progress("erasing the filesystem")
        transport.exec(_ERASE_CODE)
    have = remote_files(transport)
    changed = [p for p, data in files.items() if have.get(p, (None, None))[1] != hashlib.sha256(data).hexdigest()]
    changed.sort(key=lambda p: (p == "config.json", p))  # config last: a half-copied app never looks configured
    unchanged = [p for p in files if p not in changed]
    need = sum(len(files[p]) - have.get(p, (0, ""))[0] for p in changed)
    if need > 0:
        free = free_bytes(transport)
        if need > free:
            raise _out_of_flash(port, transport, need - free)
    made = {"/".join(p.split("/")[:i]) for p in have for i in range(1, p.count("/") + 1)}
    for i, path in enumerate(changed, 1):
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in made:
                try:
                    transport.fs_mkdir(folder)
                except OSError as exc:
                    if exc.errno != errno.EEXIST:
                        raise FlashError(f"{port}: cannot create {folder}: {errno.errorcode.get(exc.errno, exc)}") from exc
                made.add(folder)
        progress(f"writing {path} ({i}/{len(changed)})")
        try:
            transport.fs_writefile(path, files[path], chunk_size=512)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise _out_of_flash(port, transport) from exc
            raise FlashError(f"{port}: writing {path} failed: {errno.errorcode.get(exc.errno or 0, exc)}") from exc
        except TransportError as exc:
            raise FlashError(f"{port}: writing {path} failed: {str(exc).strip().splitlines()[-1]}") from exc
    return changed, unchanged


def flash_node(
    port: str,
    board: str,
    dev_eui: str,
    *,
    bundles: Path = Path("bundles"),
    firmware: Path | None = None,
    erase: bool = False,
    selftest: bool = True,
    progress: Progress = _quiet,
    app_dir: Path | None = None,
) -> FlashResult:
    """Flash one node and verify it; see the module docstring. Raises a FlashError subclass on failure.

    ``app_dir`` is an already built app tree (``citynode firmware build``) to copy instead of building
    one (a tray shares one build).
    """
    eui = normalise_eui(dev_eui)
    bundle = load_bundle(bundles, eui)
    board_def = load_board(board)
    config = config_from_bundle(bundle, board)
    messages: list[str] = []
    if not port.startswith(("socket://", "rfc2217://")) and not os.path.exists(port):
        raise NoPortError(f"{port}: no such device (is the board plugged in? see `ls /dev/ttyUSB* /dev/ttyACM*`)")
    if firmware is not None:
        messages.append(write_image(port, board_def, firmware, erase=erase, progress=progress))
    extra = {
        "config.json": (json.dumps(config, indent=1, sort_keys=True) + "\n").encode(),
        "board.json": (json.dumps(board_def, indent=1) + "\n").encode(),
    }
    files = app_files(board_def, extra, app_dir, progress)
    progress("connecting")
    with open_device(port, firmware_given=firmware is not None) as transport:
        _check_board(transport, port, board_def, erase)
        written, unchanged = _copy(transport, port, files, erase, progress)
        progress("verifying")
        transport.enter_raw_repl(soft_reset=True)  # forget modules imported before the copy
        seen = _eval_json(
            transport,
            "import json, citynode\nc = json.loads(open('config.json').read())\n"
            "print(json.dumps(['.'.join(str(p) for p in citynode.VERSION), c.get('dev_eui'), c.get('role')]))\n",
        )
        version, seen_eui, seen_role = seen
        if seen_eui != eui or seen_role != config["role"]:
            raise FlashError(f"{port}: verify failed: the board reads back DevEUI {seen_eui} role {seen_role}, "
                             f"expected {eui} {config['role']}")
        report = None
        if selftest:
            progress("running the self-test")
            report = run_selftest(transport)
        transport.exit_raw_repl()
        transport.serial.write(b"\x04")  # soft reset in the friendly REPL: main.py starts the node
    return FlashResult(
        port=port, dev_eui=eui, board=board, role=config["role"], version=version,
        written=tuple(written), unchanged=tuple(unchanged),
        bytes_written=sum(len(files[p]) for p in written), selftest=report, messages=tuple(messages),
    )
