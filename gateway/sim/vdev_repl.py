# Runs ON MicroPython (the unix port): the REPL of the citynode virtual device.
#
# It speaks what a MicroPython board speaks on its USB serial port (MicroPython docs, "The MicroPython
# Interactive Interpreter Mode (aka REPL)", sections "Raw mode and raw-paste mode"), so mpremote's
# transport, pyserial scripts and the HIL suite drive the virtual device exactly like a real one:
#   friendly REPL  ">>> " prompt, echo, Ctrl-D soft reset (boot.py, main.py), Ctrl-B banner, Ctrl-E ignored
#   raw REPL       Ctrl-A enters ("raw REPL; CTRL-B to exit\n>"); code up to Ctrl-D runs: "OK", stdout,
#                  \x04, exception text, \x04, ">"; Ctrl-D on an empty buffer soft-resets (boot.py only)
#   raw-paste      Ctrl-E "A" Ctrl-A: "R\x01" + window size (uint16 LE); one \x01 per window consumed;
#                  \x04 from the host ends the code, the device answers \x04, then runs it as above
#   Ctrl-C         never arrives as a byte: the relay turns it into SIGINT, which MicroPython raises as
#                  KeyboardInterrupt in running code, or in the REPL's blocking read (then it acts as \x03)
# The relay (gateway.sim.virtual_device) turns "\n" into "\r\n" on the way out, like a board's cooked stdout.
# On start the device boots like a board: boot.py, then main.py, from the current directory (the device
# filesystem). A SystemExit with a non-zero code ends the process: the relay restarts it (a hard reset)
# and maps the code to a reset cause (see gateway/sim/virtual_device.py).
import gc
import os
import sys

# The script's own directory must not be importable on the device: '' (the filesystem root) comes first,
# as on an ESP32 (sys.path == ['', '.frozen', '/lib']); the rest comes from MICROPYPATH.
if sys.path and sys.path[0] != "":
    sys.path[0] = ""

_IN = sys.stdin.buffer
_OUT = sys.stdout.buffer
_WINDOW = 256  # raw-paste flow-control window in bytes (a board's REPL stdin buffer)
_RAW_BANNER = b"raw REPL; CTRL-B to exit\n>"


def _banner():
    v = sys.implementation.version
    return "MicroPython v%d.%d.%d (citynode virtual device) on unix; citynode sim board\nType \"help()\" for more information.\n" % (v[0], v[1], v[2])


def _w(data):
    # A Ctrl-C that lands while the REPL itself writes must not cut its framing bytes. MicroPython
    # raises it once the write has returned, so the bytes are out: drop the interrupt without an
    # acknowledgement, and the relay sends it again (gateway.sim.virtual_device: _SIGINT_RESENDS).
    if isinstance(data, str):
        data = data.encode()
    try:
        _OUT.write(data)
    except KeyboardInterrupt:
        pass


def _ack():
    # The relay holds the host's bytes that followed a Ctrl-C until the interrupt is handled here.
    try:
        sys.stderr.write("\x15")
    except KeyboardInterrupt:
        sys.stderr.write("\x15")


def _read1():
    """One byte from the host; b"\x03" when a Ctrl-C (SIGINT) interrupts the wait."""
    try:
        b = _IN.read(1)
    except KeyboardInterrupt:
        _ack()
        return b"\x03"
    if b:
        return b
    raise SystemExit(0)  # the relay closed stdin: the device is being shut down


_globals = {"__name__": "__main__"}
_BASE_MODULES = set(sys.modules)


def _soft_reset():
    # A soft reset clears the heap on a board: forget user modules and globals.
    for name in list(sys.modules):
        if name not in _BASE_MODULES:
            del sys.modules[name]
    _globals.clear()
    _globals["__name__"] = "__main__"
    gc.collect()


def _exists(name):
    try:
        os.stat(name)
        return True
    except OSError:
        return False


def _run_file(name):
    if not _exists(name):
        return
    try:
        with open(name) as f:
            code = f.read()
        exec(code, _globals)
    except SystemExit as e:
        if e.args and e.args[0] not in (0, None):
            raise
    except BaseException as e:  # KeyboardInterrupt included: a board prints it and goes to the REPL
        sys.print_exception(e)
        if isinstance(e, KeyboardInterrupt):
            _ack()


def _boot(main=True):
    _run_file("boot.py")
    if main:
        _run_file("main.py")


def _exec(code):
    """Raw-REPL execution: stdout, \x04, exception text, \x04 (MicroPython pyexec framing)."""
    try:
        gc.collect()  # the code arrived byte by byte: give the program the heap a board's C REPL would leave
        exec(code, _globals)
    except SystemExit as e:
        if e.args and e.args[0] not in (0, None):
            raise
    except BaseException as e:
        _w(b"\x04")
        sys.print_exception(e)
        _w(b"\x04")
        if isinstance(e, KeyboardInterrupt):
            _ack()
        return
    _w(b"\x04\x04")


def _raw_paste():
    """Receive code in raw-paste mode; None when the host aborted it."""
    _w(b"R\x01" + bytes((_WINDOW & 0xFF, _WINDOW >> 8)))
    buf = bytearray()
    remain = _WINDOW
    while True:
        b = _read1()
        if b == b"\x04":
            _w(b"\x04")
            return bytes(buf)
        if b == b"\x03":  # interrupted while receiving: end abruptly, the host acknowledges with \x04
            _w(b"\x04")
            return None
        buf += b
        remain -= 1
        if remain == 0:
            remain = _WINDOW
            _w(b"\x01")


class _Raw:
    """Raw REPL state between bytes (kept outside the loop so a stray Ctrl-C does not lose it)."""

    buf = bytearray()


def _raw_repl(enter):
    if enter:
        _Raw.buf = bytearray()
        _w(_RAW_BANNER)
    while True:
        b = _read1()
        if b == b"\x01":  # Ctrl-A again: restart the raw REPL
            _Raw.buf = bytearray()
            _w(_RAW_BANNER)
        elif b == b"\x02":  # Ctrl-B: back to the friendly REPL
            _w("\n" + _banner())
            return "friendly"
        elif b == b"\x03":
            _Raw.buf = bytearray()
        elif b == b"\x05" and not _Raw.buf:
            nxt = _read1()
            if nxt == b"A":
                nxt = _read1()
            if nxt == b"\x01":
                code = _raw_paste()
                if code is not None:
                    _exec(code)
                _w(b">")
            else:
                _w(b"R\x00")  # not a raw-paste request we understand
        elif b == b"\x04":
            if not _Raw.buf:  # Ctrl-D on an empty buffer: soft reset, stay in the raw REPL (boot.py only)
                _w(b"\nMPY: soft reboot\n")
                _soft_reset()
                _boot(main=False)
                _w(_RAW_BANNER)
                continue
            code = bytes(_Raw.buf)
            _Raw.buf = bytearray()
            _w(b"OK")
            _exec(code)
            _w(b">")
        else:
            _Raw.buf += b


def _friendly_eval(src):
    try:
        try:
            value = eval(src, _globals)
        except SyntaxError:
            exec(src, _globals)
        else:
            if value is not None:
                print(repr(value))
    except SystemExit as e:
        if e.args and e.args[0] not in (0, None):
            raise
    except BaseException as e:
        sys.print_exception(e)
        if isinstance(e, KeyboardInterrupt):
            _ack()


def _friendly(enter):
    if enter:
        _w(">>> ")
    line = bytearray()
    block = []  # lines of a compound statement, ended by an empty line
    while True:
        b = _read1()
        if b == b"\x01":
            _w("\n")
            return "raw"
        if b == b"\x02":
            _w("\n" + _banner() + ">>> ")
            line = bytearray()
            block = []
        elif b == b"\x03":
            _w("\nKeyboardInterrupt\n>>> ")
            line = bytearray()
            block = []
        elif b == b"\x04":
            if not line and not block:
                _w("\nMPY: soft reboot\n")
                _soft_reset()
                _boot()
                _w(_banner() + ">>> ")
        elif b == b"\r" or b == b"\n":
            _w("\n")
            src = bytes(line).decode()
            line = bytearray()
            if block:
                if src.strip():
                    block.append(src)
                    _w("... ")
                    continue
                src = "\n".join(block) + "\n"
                block = []
            elif src.rstrip().endswith(":"):
                block = [src]
                _w("... ")
                continue
            if src.strip():
                _friendly_eval(src)
            _w(">>> ")
        elif b == b"\x7f" or b == b"\x08":
            if line:
                line = line[:-1]
                _w(b"\x08 \x08")
        elif b != b"\x05":
            line += b
            _w(b)


def main():
    mode = "ready"
    enter = False
    while True:
        try:
            if mode == "ready":
                mode = "boot" if "--no-boot" not in sys.argv else "banner"
                # From here a Ctrl-C (SIGINT) raises KeyboardInterrupt in this loop instead of killing
                # the interpreter's host while it starts: tell the relay.
                sys.stderr.write("\x06")
            elif mode == "boot":
                mode = "banner"
                _boot()
            elif mode == "banner":
                mode = "friendly"
                _w(_banner() + ">>> ")
            elif mode == "raw":
                mode = _raw_repl(enter)
                enter = True
            else:
                mode = _friendly(enter)
                enter = True
        except KeyboardInterrupt:
            # A Ctrl-C between two reads: the current mode carries on, as a board's REPL does. One that
            # lands right after the ready marker interrupts the boot, as it would interrupt main.py.
            _ack()
            enter = False
            if mode == "boot":
                mode = "banner"


main()
