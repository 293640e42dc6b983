"""The virtual device: the MicroPython unix port behind a pseudo-terminal, looking like a board's USB serial port.

Like QEMU's ``-serial pty``, :class:`VirtualDevice` opens a pty pair and publishes the SLAVE path
(``/dev/pts/N``) as the device's serial port: pyserial, mpremote and the HIL suite open it exactly as
they open ``/dev/ttyUSB0``. A relay thread holds the master side and talks to a ``micropython`` process
running :mod:`gateway.sim.vdev_repl` (the board's REPL) over pipes, doing what a board's USB-UART does:

* host -> device: bytes are forwarded unchanged, except Ctrl-C (0x03), which becomes SIGINT to the
  process (a board's interrupt character raises KeyboardInterrupt in running code), sent while the
  process waits in a system call, as a board raises it only between two bytecodes (see "the relay");
* device -> host: ``"\\n"`` becomes ``"\\r\\n"`` (MicroPython's cooked stdout does this on a board).

The process runs with its current directory = ``fs_dir`` (the device filesystem: what mpremote's
``fs_*`` calls read and write) and ``MICROPYPATH=fs_dir/lib:fs_dir`` (an ESP32's ``sys.path`` is
``['', '.frozen', '/lib']``). When the process exits, the relay restarts it, as a board's reset would:
the filesystem persists, RAM does not. The new process learns why it was reset from the environment
variable ``CITYNODE_RESET_CAUSE`` (vocabulary of codecs/schema.json ``device_status.reset_cause``):

==================  ==================================================================
exit code           reset cause of the next start
==================  ==================================================================
(first start)       ``power_on``
64                  ``soft``        machine.reset() (ESP-IDF ESP_RST_SW)
65                  ``watchdog``    the WDT expired (ESP_RST_TASK_WDT / ESP_RST_WDT)
66                  ``deep_sleep``  wake from machine.deepsleep() (ESP_RST_DEEPSLEEP)
67                  ``brownout``    supply dropped (ESP_RST_BROWNOUT)
anything else       ``panic``       the interpreter crashed or was killed (ESP_RST_PANIC)
:meth:`hard_reset`  ``power_on`` (or the cause given: a rig's power switch or EN line)
==================  ==================================================================

The simulated HAL raises ``SystemExit(code)`` with these codes; :data:`EXIT_CODES` is the table.
Nothing is left running after :meth:`close`: the process group is killed and every fd closed.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import pty
import selectors
import signal
import struct
import subprocess
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from gateway.errors import CitynodeError
from gateway.field.inventory import ROLES
from gateway.field.micropython import find_micropython, interpreter, node_heap
from gateway.sim.simhost import SimHost

__all__ = ["EXIT_CODES", "RESET_ENV", "Reset", "VirtualDevice", "VirtualDeviceError", "reset_cause_for_exit"]

RESET_ENV = "CITYNODE_RESET_CAUSE"

# Exit code of the micropython process -> reset cause reported by the next start (see module docstring).
EXIT_CODES: dict[int, str] = {64: "soft", 65: "watchdog", 66: "deep_sleep", 67: "brownout"}

_REPL = Path(__file__).resolve().parent / "vdev_repl.py"
_CTRL_C = 0x03
_BACKLOG_MAX = 64 * 1024  # bytes queued one way before the relay stops reading the other side (flow control)
_READY = b"\x06"  # vdev_repl writes this to stderr once a SIGINT raises KeyboardInterrupt there
_ACK = b"\x15"  # ... and this each time it has handled a KeyboardInterrupt
_ACK_WAIT_S = 1.0  # host bytes after a Ctrl-C wait this long for that acknowledgement ...
_SIGINT_RESENDS = 2  # ... before the SIGINT is sent again, at most this many times
_SAFE_POINT_WAIT_S = 2.0  # a SIGINT waits at most this long for the interpreter to block in a system call
_SAFE_POINT_POLL_S = 0.005
# System calls in which the interpreter waits (Linux numbers per architecture of the interpreter, not
# of the host: a 32-bit build on x86_64 makes i386 system calls), where a SIGINT is safe: read (the
# REPL waiting for the host: first in each tuple), then the sleeps and polls (time.sleep is pselect6,
# time.sleep_ms clock_nanosleep).
_WAIT_SYSCALLS: dict[str, tuple[int, frozenset[int]]] = {
    # read; poll, select, nanosleep, clock_nanosleep, epoll_wait, pselect6, ppoll, epoll_pwait
    "x86_64": (0, frozenset({7, 23, 35, 230, 232, 270, 271, 281})),
    # read; poll, _newselect, nanosleep, epoll_wait, clock_nanosleep, pselect6, ppoll, epoll_pwait,
    # clock_nanosleep_time64, pselect6_time64, ppoll_time64 (arch/x86/entry/syscalls/syscall_32.tbl)
    "i386": (3, frozenset({168, 142, 162, 256, 267, 308, 309, 319, 407, 413, 414})),
    # read; pselect6, ppoll, nanosleep, clock_nanosleep, epoll_pwait
    "aarch64": (63, frozenset({72, 73, 101, 115, 22})),
}
# On a board the REPL is C code in flash; here vdev_repl.py's bytecode and buffers live in the heap. The
# interpreter gets this much on top of ``heapsize`` so the app still has what it would have on the board.
_REPL_HEAP_KB = 24
_RESTART_LIMIT = 20  # restarts within _RESTART_WINDOW_S before the relay gives up (a boot loop)
_RESTART_WINDOW_S = 10.0


class VirtualDeviceError(CitynodeError):
    """The virtual device could not start or its interpreter keeps crashing; the message says why."""


@dataclass(frozen=True)
class Reset:
    """One restart of the interpreter: its exit code (negative: killed by that signal) and the cause given."""

    exit_code: int
    cause: str


def reset_cause_for_exit(code: int) -> str:
    """The reset cause a process exit code stands for (module docstring table)."""
    return EXIT_CODES.get(code, "panic")


def _heap_kb(size: str) -> int:
    """KiB in a MicroPython heapsize ("96k", "1m", "98304")."""
    text = size.strip().lower()
    try:
        if text.endswith("k"):
            return int(text[:-1])
        if text.endswith("m"):
            return int(text[:-1]) * 1024
        return max(1, int(text) // 1024)
    except ValueError:
        raise VirtualDeviceError(f"heapsize {size!r}: expected a size such as 96k") from None


def _flashed_role(fs_dir: Path) -> str | None:
    """The role in ``fs_dir/config.json``, or None when there is none (not flashed, unreadable, unknown)."""
    try:
        role = json.loads((fs_dir / "config.json").read_text()).get("role")
    except (OSError, ValueError, AttributeError):
        return None
    return role if role in ROLES else None


_ELF_MACHINES = {3: "i386", 62: "x86_64", 183: "aarch64", 40: "arm"}  # ELF e_machine (EM_386, ...)


@functools.lru_cache(maxsize=8)
def interpreter_arch(path: str) -> str:
    """The architecture whose system calls the interpreter at ``path`` makes: from its ELF header, or
    (a launcher script such as the PyPI package's) the host's, i386 for a 32-bit port on x86_64."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        head = b""
    if head[:4] == b"\x7fELF" and len(head) == 20:
        return _ELF_MACHINES.get(struct.unpack("<H", head[18:20])[0], "unknown")
    host = os.uname().machine
    if interpreter().bits == 32:
        return {"x86_64": "i386", "aarch64": "arm"}.get(host, host)
    return host


def _proc_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat ("R" running, "S" sleeping, "T" stopped); "" when unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    end = stat.rfind(b")")
    return stat[end + 2:end + 3].decode() if end >= 0 else ""


def _syscall(pid: int) -> int | None:
    """The system call a stopped or sleeping process is in (/proc/<pid>/syscall): -1 in user code,
    -2 while it runs; None when the file cannot be read (no /proc, or ptrace access refused)."""
    try:
        with open(f"/proc/{pid}/syscall", "rb") as f:
            text = f.read().split()
    except OSError:
        return None
    if not text or text[0] == b"running":
        return -2
    try:
        return int(text[0])
    except ValueError:
        return -2


class VirtualDevice:
    """A MicroPython unix-port node on a pty: ``with VirtualDevice(fs) as dev: serial.Serial(dev.port)``.

    ``fs_dir`` is the device filesystem (created if missing). ``heapsize`` is the heap the app gets;
    by default (None) the node's budget on the chosen interpreter (:meth:`app_heap`), with or without a
    network in ``sim.json``. The interpreter is given 24k more for the REPL, which on a board is C code
    in flash. ``boot`` False skips boot.py/main.py on the first start (handy to flash a device whose
    main.py would run for ever).
    """

    def __init__(self, fs_dir: str | Path, heapsize: str | None = None, *, boot: bool = True,
                 on_reset: Callable[[Reset], None] | None = None) -> None:
        self.fs_dir = Path(fs_dir).resolve()
        self.heapsize = heapsize  # None: app_heap() picks the budget of the role flashed, at every start
        self._boot = boot
        self._on_reset = on_reset
        self.resets: list[Reset] = []
        self._reset_cond = threading.Condition()
        self.port = ""
        self._master = -1
        self._slave = -1
        self._wake_r = -1
        self._wake_w = -1
        self._proc: subprocess.Popen[bytes] | None = None
        self._host: SimHost | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._forced_cause: str | None = "power_on"  # the next start's cause when not from an exit code
        self._ready = False  # the current interpreter has announced _READY
        self._err_eof = False
        self._power_cut = False  # hard_reset() killed the interpreter; its restart is pending
        self._restarts: list[float] = []
        self.error: str | None = None

    # ---- lifetime -----------------------------------------------------------------------------

    def __enter__(self) -> VirtualDevice:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> str:
        """Open the pty, start the interpreter and the relay; returns the port path."""
        self.fs_dir.mkdir(parents=True, exist_ok=True)
        find_micropython()  # fail early, with the install hint, when the unix port is missing
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass as on a UART
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._spawn(first=True)
        self._thread = threading.Thread(target=self._relay, name=f"vdev-relay {self.port}", daemon=True)
        self._thread.start()
        return self.port

    def close(self) -> None:
        """Stop the relay, kill the interpreter's process group, close every fd. Safe to call twice."""
        self._closing = True
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._kill()
        for name in ("_master", "_slave", "_wake_r", "_wake_w"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)

    def hard_reset(self, cause: str = "power_on") -> None:
        """Kill the interpreter and start it again with ``cause`` (a rig's power switch or EN line)."""
        with self._lock:
            self._forced_cause = cause
            proc = self._proc
        if proc is not None and proc.poll() is None:
            self._power_cut = True  # from now on nothing the old process printed reaches the port
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self._slave >= 0:
                termios.tcflush(self._slave, termios.TCIFLUSH)

    def wait_resets(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until the interpreter has been restarted ``count`` times in all; False on timeout."""
        with self._reset_cond:
            return self._reset_cond.wait_for(lambda: len(self.resets) >= count, timeout)

    @property
    def pid(self) -> int | None:
        """The current interpreter's process id (changes on every reset)."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def app_heap(self) -> str:
        """The heap the app gets from the next start: ``heapsize`` when given, else the budget of the
        role in the device's config.json (:func:`gateway.field.micropython.node_heap`: 64k on the 32-bit
        frozen build). A device with no role yet gets the largest role budget: ``citynode flash`` starts
        the node it writes by a soft reset, in the same interpreter, whatever role it flashed."""
        if self.heapsize:
            return self.heapsize
        role = _flashed_role(self.fs_dir)
        if role is not None:
            return node_heap(role)
        return max((node_heap(r) for r in ROLES), key=_heap_kb)

    # ---- the interpreter ----------------------------------------------------------------------

    def _spawn(self, first: bool = False) -> None:
        env = dict(os.environ)
        env["MICROPYPATH"] = f".frozen:{self.fs_dir / 'lib'}:{self.fs_dir}"  # frozen first, as on an ESP32
        with self._lock:
            env[RESET_ENV] = self._forced_cause or "power_on"
            self._forced_cause = None
        argv = [find_micropython(), "-X", f"heapsize={_heap_kb(self.app_heap()) + _REPL_HEAP_KB}k", str(_REPL)]
        if first and not self._boot:
            argv.append("--no-boot")
        self._close_host()
        host = self._host = SimHost.for_fs(self.fs_dir)  # the sim board's peripherals, served from here
        env.update(host.env)
        self._proc = subprocess.Popen(
            argv, cwd=self.fs_dir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, bufsize=0, pass_fds=host.pass_fds,
        )
        host.start()
        self._ready = False
        self._err_eof = False
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)

    def _close_host(self) -> None:
        host, self._host = self._host, None
        if host is not None:
            host.close()

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            self._close_host()
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self._close_host()

    def _restart(self) -> None:
        proc = self._proc
        assert proc is not None
        code = proc.wait()
        with self._lock:
            cause = self._forced_cause or reset_cause_for_exit(code)
            self._forced_cause = cause
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        reset = Reset(code, cause)
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < _RESTART_WINDOW_S] + [now]
        if len(self._restarts) > _RESTART_LIMIT:
            self.error = f"the interpreter restarted {_RESTART_LIMIT} times in {_RESTART_WINDOW_S:.0f} s (boot loop)"
            self._proc = None
        else:
            self._spawn()
        with self._reset_cond:
            self.resets.append(reset)
            self._reset_cond.notify_all()
        if self._on_reset is not None:
            self._on_reset(reset)

    # ---- the relay ----------------------------------------------------------------------------
    #
    # Host bytes and Ctrl-Cs are queued in arrival order: a Ctrl-C becomes SIGINT only once the
    # interpreter is ready for it (a SIGINT that reaches the CPython host of the unix port while it
    # still starts kills it: "Fatal Python error: init_import_site"), and the bytes after a Ctrl-C wait
    # until vdev_repl acknowledges the KeyboardInterrupt (or _ACK_WAIT_S passes, when user code caught
    # it), so "\r\x03\r\x01" is handled in that order, as a board handles its UART FIFO.
    #
    # A SIGINT is also held until the interpreter sits at a safe point (_sigint_at_safe_point): it
    # waits in a system call (time.sleep; the REPL's read of stdin, every byte before the Ctrl-C read).
    # The unix port this runs on is built with MICROPY_ASYNC_KBD_INTR: its SIGINT handler longjmps
    # out of whatever C code runs, so an interrupt that lands in the garbage collector (gc.collect(),
    # or an allocation while main.py imports its modules) leaves the heap locked and every later
    # allocation fails ("MemoryError: memory allocation failed, heap is locked"): the REPL dies or
    # stops answering. A board never does that: its UART interrupt only schedules the
    # KeyboardInterrupt, which the VM raises between two bytecodes. And a Ctrl-C sent while the REPL
    # still works through "\x04" (soft reset, main.py starts) would be spent on the REPL instead of
    # stopping main.py. Code that never waits gets the SIGINT after _SAFE_POINT_WAIT_S, where it is.

    def _relay(self) -> None:
        queue: list[bytearray | None] = []  # None = one Ctrl-C
        to_host = bytearray()
        ack_deadline: float | None = None
        sigint_due: float | None = None  # a SIGINT waits for a safe point until then, then goes anyway
        resends = 0
        while not self._closing:
            proc = self._proc
            if proc is None:  # gave up (boot loop): keep the port open, drop input
                time.sleep(0.05)
                try:
                    os.read(self._master, 4096)
                except OSError:
                    pass
                continue
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            now = time.monotonic()
            if ack_deadline is not None and now >= ack_deadline:
                ack_deadline = None
                if resends < _SIGINT_RESENDS and proc.poll() is None:
                    # The unix port occasionally drops a SIGINT that lands while it is between two
                    # statements of a freshly started script, and vdev_repl._w drops one that lands
                    # while it writes; a second one is raised. User code that catches
                    # KeyboardInterrupt itself sees these repeats as a user pressing Ctrl-C again.
                    resends += 1
                    sigint_due = now + _SAFE_POINT_WAIT_S
            if ack_deadline is None and sigint_due is None and queue and queue[0] is None and self._ready:
                queue.pop(0)
                while queue and queue[0] is None:  # Ctrl-C pressed several times: one interrupt
                    queue.pop(0)
                sigint_due = now + _SAFE_POINT_WAIT_S
                resends = 0
            if sigint_due is not None:
                try:
                    if self._sigint_at_safe_point(proc):
                        sent = True
                    elif now >= sigint_due:  # busy code that never waits: interrupt it where it is
                        os.kill(proc.pid, signal.SIGINT)
                        sent = True
                    else:
                        sent = False
                except ProcessLookupError:
                    sent = True  # gone: its restart follows
                if sent:
                    sigint_due = None
                    ack_deadline = now + _ACK_WAIT_S
            queued = sum(len(c) for c in queue if c is not None)
            sel = selectors.DefaultSelector()
            try:
                sel.register(self._wake_r, selectors.EVENT_READ, "wake")
                master_events = selectors.EVENT_READ if queued < _BACKLOG_MAX else 0
                if to_host:
                    master_events |= selectors.EVENT_WRITE
                if master_events:
                    sel.register(self._master, master_events, "master")
                if len(to_host) < _BACKLOG_MAX:
                    sel.register(proc.stdout, selectors.EVENT_READ, "out")
                    if not self._err_eof:
                        sel.register(proc.stderr, selectors.EVENT_READ, "err")
                if ack_deadline is None and sigint_due is None and queue and queue[0] is not None:
                    sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
                if sigint_due is not None:
                    timeout = _SAFE_POINT_POLL_S
                else:
                    timeout = 0.5 if ack_deadline is None else max(0.0, ack_deadline - now)
                events = sel.select(timeout=timeout)
            finally:
                sel.close()
            for key, mask in events:
                if key.data == "wake":
                    return
                if key.data == "master":
                    if mask & selectors.EVENT_READ:
                        self._from_host(queue)
                    if mask & selectors.EVENT_WRITE and to_host:
                        if self._power_cut:
                            to_host.clear()
                        else:
                            self._write(self._master, to_host)
                elif key.data == "in":
                    head = queue[0]
                    assert head is not None
                    if not self._write(proc.stdin.fileno(), head):
                        head.clear()  # the process is gone: its restart drops what was in flight
                    if not head:
                        queue.pop(0)
                elif key.data == "err":
                    data = self._read(proc.stderr.fileno())
                    if data == b"":
                        self._err_eof = True
                        continue
                    data = data or b""
                    if not self._ready and data.startswith(_READY):
                        self._ready = True
                        data = data[len(_READY):]
                    if _ACK in data:
                        ack_deadline = None
                        data = data.replace(_ACK, b"")
                    if not self._power_cut:
                        to_host += data.replace(b"\n", b"\r\n")  # a crash report, shown as a board prints it
                elif key.data == "out":
                    data = self._read(proc.stdout.fileno())
                    if data and self._power_cut:
                        pass  # printed after the power was cut: never reaches the port
                    elif data:
                        to_host += data.replace(b"\n", b"\r\n")
                    elif data is not None:  # EOF: the interpreter exited; reset like a board
                        queue[:] = [c for c in queue if c is None]  # bytes in flight are lost, Ctrl-Cs kept
                        if sigint_due is not None:  # not sent yet: the new interpreter gets it when ready
                            queue.insert(0, None)
                            sigint_due = None
                        ack_deadline = None
                        if self._power_cut:  # hard_reset(): what the old program printed is gone with it
                            to_host.clear()
                            termios.tcflush(self._slave, termios.TCIFLUSH)
                        self._restart()
                        self._power_cut = False
                        break  # the other events belong to the old process

    @staticmethod
    def _sigint_at_safe_point(proc: subprocess.Popen[bytes]) -> bool:
        """Send SIGINT if the interpreter waits in a system call: sleeping, or reading stdin with
        every byte sent before the Ctrl-C read (so the SIGINT cannot overtake a "\\x04" in the pipe).

        The process is stopped (SIGSTOP) while /proc/<pid>/syscall is read, so that it cannot leave
        the wait between the look and the signal; the SIGINT is sent before it continues and is
        delivered as the wait ends with EINTR. Returns False (nothing sent) while it runs code. Where
        /proc cannot tell (another machine, no access), the state letter "S" (sleeping) has to do.
        """
        syscalls = _WAIT_SYSCALLS.get(interpreter_arch(find_micropython()))
        if syscalls is None or _syscall(proc.pid) is None:
            if _proc_state(proc.pid) not in ("S", ""):
                return False
            os.kill(proc.pid, signal.SIGINT)
            return True
        read_nr, waits = syscalls
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            for _ in range(1000):  # stops within microseconds
                if _proc_state(proc.pid) in ("T", "t", ""):
                    break
                time.sleep(0.0001)
            else:
                return False
            nr = _syscall(proc.pid)
            if nr == read_nr:
                assert proc.stdin is not None
                unread = struct.unpack("i", fcntl.ioctl(proc.stdin.fileno(), termios.FIONREAD, b"\0" * 4))[0]
                if unread:
                    return False
            elif nr not in waits:
                return False
            os.kill(proc.pid, signal.SIGINT)
            return True
        finally:
            os.kill(proc.pid, signal.SIGCONT)

    @staticmethod
    def _read(fd: int) -> bytes | None:
        try:
            return os.read(fd, 4096)
        except BlockingIOError:
            return None

    def _from_host(self, queue: list[bytearray | None]) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: no slave open; we keep ours, so only while closing
            if exc.errno == errno.EIO:
                time.sleep(0.01)
                return
            raise
        parts = data.split(bytes((_CTRL_C,)))
        for i, part in enumerate(parts):
            if part:
                if queue and queue[-1] is not None:
                    queue[-1] += part
                else:
                    queue.append(bytearray(part))
            if i < len(parts) - 1:
                queue.append(None)

    @staticmethod
    def _write(fd: int, buf: bytearray) -> bool:
        """Write what the fd takes now from the front of buf; False when the reader is gone."""
        try:
            n = os.write(fd, buf)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.EIO):
                return False
            raise
        del buf[:n]
        return True
