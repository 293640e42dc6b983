# Runs ON MicroPython (the unix port): the REPL of the citynode virtual device.
#
# It speaks what a MicroPython board speaks on its USB serial port, so mpremote's transport, pyserial
# scripts and the HIL suite drive the virtual device exactly like a real one:
#   friendly REPL  ">>> " prompt, echo, Ctrl-D soft reset (then main.py runs), Ctrl-B banner
#   raw REPL       Ctrl-A enters; code up to Ctrl-D runs; "OK", stdout, \x04, traceback, \x04, ">"
#   raw-paste      Ctrl-E "A" Ctrl-A: "R\x01" + window size, flow control with \x01, \x04 ends
#   Ctrl-C         arrives as SIGINT (the relay sends it) and interrupts running code
# The relay (gateway.virtual_device) turns "\n" into "\r\n" on the way out, like a board's UART.
# On start the device boots like a board: boot.py, then main.py, from the current directory.
import sys
import os

_IN = sys.stdin.buffer
_OUT = sys.stdout
_WINDOW = 256
_BANNER = "MicroPython (citynode virtual device) on unix; citynode sim board\nType \"help()\" for more information.\n"


def _w(text):
    _OUT.write(text)


def _read1():
    while True:
        try:
            b = _IN.read(1)
        except KeyboardInterrupt:
            return b"\x03"
        if b:
            return b
        raise SystemExit(0)  # the host closed the port


_globals = {"__name__": "__main__"}
_BASE_MODULES = set(sys.modules)


def _soft_reset():
    # A soft reset clears the heap on a board: forget user modules and globals.
    for name in list(sys.modules):
        if name not in _BASE_MODULES:
            del sys.modules[name]
    _globals.clear()
    _globals["__name__"] = "__main__"


def _run_file(name):
    try:
        os.stat(name)
    except OSError:
        return
    try:
        with open(name) as f:
            code = f.read()
        exec(code, _globals)
    except KeyboardInterrupt:
        _w("Traceback (most recent call last):\nKeyboardInterrupt: \n")
    except SystemExit as e:
        if e.args and e.args[0] not in (0, None):
            raise
    except BaseException as e:
        sys.print_exception(e)


def _boot():
    _run_file("boot.py")
    _run_file("main.py")


def _exec(code):
    try:
        exec(code, _globals)
    except SystemExit as e:
        if e.args and e.args[0] not in (0, None):
            raise
    except BaseException as e:
        _w("\x04")
        sys.print_exception(e, _OUT)
        _w("\x04")
        return
    _w("\x04\x04")


def _raw_paste():
    # Raw-paste mode: the host sends at most _WINDOW bytes per window, each window granted by \x01.
    _w("R\x01")
    _OUT.write(bytes((_WINDOW & 0xFF, _WINDOW >> 8)).decode("latin1"))
    _w("\x01")
    buf = bytearray()
    remain = _WINDOW
    while True:
        b = _read1()
        if b == b"\x04":
            _w("\x04")
            break
        if b == b"\x03":
            _w("\x04")
            return None
        buf += b
        remain -= 1
        if remain == 0:
            remain = _WINDOW
            _w("\x01")
    return bytes(buf)


def _raw_repl():
    _w("raw REPL; CTRL-B to exit\n>")
    buf = bytearray()
    while True:
        b = _read1()
        if b == b"\x01":  # Ctrl-A again: restart raw REPL
            buf = bytearray()
            _w("raw REPL; CTRL-B to exit\n>")
        elif b == b"\x02":  # Ctrl-B: back to the friendly REPL
            _w("\n" + _BANNER)
            return "friendly"
        elif b == b"\x03":
            buf = bytearray()
        elif b == b"\x05":
            nxt = _read1() + _read1()
            if nxt == b"A\x01":
                code = _raw_paste()
                if code is not None:
                    _exec(code)
                _w(">")
        elif b == b"\x04":
            if not buf:  # Ctrl-D on an empty buffer: soft reset, stay in raw REPL
                _w("MPY: soft reboot\n")
                _soft_reset()
                _w("raw REPL; CTRL-B to exit\n>")
                continue
            _w("OK")
            _exec(bytes(buf))
            buf = bytearray()
            _w(">")
        else:
            buf += b


def _friendly():
    _w(">>> ")
    line = bytearray()
    while True:
        b = _read1()
        if b == b"\x01":
            return "raw"
        if b == b"\x02":
            _w("\n" + _BANNER + ">>> ")
            line = bytearray()
        elif b == b"\x03":
            _w("\nKeyboardInterrupt\n>>> ")
            line = bytearray()
        elif b == b"\x04":
            if not line:
                _w("\nMPY: soft reboot\n")
                _soft_reset()
                _boot()
                _w(_BANNER + ">>> ")
        elif b in (b"\r", b"\n"):
            _w("\n")
            src = bytes(line).decode()
            line = bytearray()
            if src.strip():
                try:
                    try:
                        value = eval(src, _globals)
                        if value is not None:
                            _w(repr(value) + "\n")
                    except SyntaxError:
                        exec(src, _globals)
                except KeyboardInterrupt:
                    _w("KeyboardInterrupt\n")
                except BaseException as e:
                    sys.print_exception(e, _OUT)
            _w(">>> ")
        elif b in (b"\x7f", b"\x08"):
            if line:
                line = line[:-1]
                _w("\x08 \x08")
        else:
            line += b
            _w(b.decode("latin1"))


def main():
    if "--no-boot" not in sys.argv:
        _boot()
    _w(_BANNER)
    mode = "friendly"
    while True:
        mode = _raw_repl() if mode == "raw" else _friendly()


main()
