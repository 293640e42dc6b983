# citynode HAL: the only layer that builds real peripheral objects. Drivers receive what it builds.
#
# Three backends offer the same factory methods (i2c(), uart(name), pin(name, mode), adc(name), spi(),
# wdt(timeout_ms), rtc(), deep_sleep(ms), reset_cause(), time_pulse_us):
#   mpy  - MicroPython `machine` (ESP32 boards)           citynode.hal.mpy
#   cpy  - CircuitPython busio/digitalio/analogio/alarm   citynode.hal.cpy
#   sim  - simulated peripherals (unix port, tests)       citynode_sim.sim
# Backends are imported lazily so a runtime never loads modules it cannot import.
import sys

# Reset causes reported in device_status: the schema's enum (codecs/schema.json, reset_cause).
# A reset-pin press and causes a runtime cannot tell apart are reported as power_on.
RESET_POWER_ON = "power_on"
RESET_WATCHDOG = "watchdog"
RESET_DEEP_SLEEP = "deep_sleep"
RESET_SOFT = "soft"
RESET_BROWNOUT = "brownout"
RESET_PANIC = "panic"


class BoardError(ValueError):
    """The board definition lacks a field or holds an invalid one; `field` is its dotted path."""

    def __init__(self, field, message="missing"):
        super().__init__("board %s: %s" % (field, message))
        self.field = field


_MISSING = object()


def board_get(board, path, kind=None, default=_MISSING):
    """Value at dotted `path` ("i2c.sda") in a board dict, checked against `kind` (type or tuple).

    Raises BoardError naming the path when it is absent (and no default) or has the wrong type.
    """
    node = board
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not _MISSING:
                return default
            raise BoardError(path, "missing")
        node = node[part]
    if kind is not None and not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
        raise BoardError(path, "expected %s, got %r" % (_kind_name(kind), node))
    return node


def _kind_name(kind):
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def board_pin(board, path, default=_MISSING):
    """A GPIO number (int >= 0) or a pin name string ("D5", "GP4" on CircuitPython) at `path`."""
    value = board_get(board, path, (int, str), default)
    if value is None or isinstance(value, str):
        return value
    if value < 0 or value > 255:
        raise BoardError(path, "pin number out of range: %r" % value)
    return value


def check_board(board, paths):
    """Fail early (at boot) when the board lacks any field a role needs: `paths` are dotted paths,
    or tuples of alternatives of which one must exist (("pins.echo", "uart.distance.rx")).
    Raises BoardError naming the first missing field."""
    if not isinstance(board, dict):
        raise BoardError("board", "expected a dict, got %r" % (type(board).__name__,))
    for need in paths:
        options = need if isinstance(need, tuple) else (need,)
        for path in options:
            if board_get(board, path, default=None) is not None:
                break
        else:
            raise BoardError(" or ".join(options), "missing")


def uart_config(board, name):
    """(path, id, tx, rx, baud) of the UART a sensor `name` ("pm", "distance", "gps") is wired to.

    boards/*.json describe one sensor UART as "uart": {"id", "tx", "rx", "baudrate"} (a node carries
    one role, so its particulate or distance sensor shares it) and the GPS as "gps": {"uart_id", ...};
    "uart": {"<name>": {...}} per sensor is accepted too. Raises BoardError naming the field.
    """
    if name == "gps" and isinstance(board.get("gps"), dict):
        base, id_key = "gps", "gps.uart_id"
    elif isinstance(board.get("uart"), dict) and isinstance(board["uart"].get(name), dict):
        base = "uart." + name
        id_key = base + ".id"
    else:
        base, id_key = "uart", "uart.id"
    uid = board_get(board, id_key, int, 1)
    baud = board_get(board, base + ".baudrate", int, None) or board_get(board, base + ".baud", int, 9600)
    return base, uid, board_pin(board, base + ".tx"), board_pin(board, base + ".rx"), baud


def named_pin(board, name):
    """(path, pin) for a named signal: "pins": {"<name>": n} or "<name>_pin": n (e.g. "led_pin")."""
    if isinstance(board.get("pins"), dict) and name in board["pins"]:
        return "pins." + name, board_pin(board, "pins." + name)
    if name + "_pin" in board:
        return name + "_pin", board_pin(board, name + "_pin")
    raise BoardError("pins." + name, "missing (add it to the board's \"pins\")")


def battery_pin(board):
    """(path, pin) of the battery divider's ADC input ("battery.adc_pin", or "battery.pin")."""
    if board_get(board, "battery.method", str, "adc") != "adc":
        raise BoardError("battery.method", "%r is not read through an ADC pin" % board["battery"]["method"])
    for path in ("battery.adc_pin", "battery.pin"):
        if board_get(board, path, default=None) is not None:
            return path, board_pin(board, path)
    raise BoardError("battery.adc_pin", "missing")


def vext(board):
    """(pin, on_level) of a switched sensor supply ("power": {"vext_pin", "vext_on_level"}), or None."""
    power = board.get("power")
    if isinstance(power, dict) and "vext_pin" in power:
        return board_pin(board, "power.vext_pin"), board_get(board, "power.vext_on_level", int, 0)
    if "vext" in board:
        return board_pin(board, "vext.pin"), board_get(board, "vext.active", int, 0)
    return None


def runtime():
    """'circuitpython', 'micropython' or 'cpython'."""
    return sys.implementation.name


def backend_name(board=None):
    """Which backend fits this runtime and board: 'sim' for the simulated board, else by runtime."""
    if board is not None and (board.get("sim") or board.get("name") == "sim" or board.get("radio") == "sim"):
        return "sim"
    name = runtime()
    if name == "circuitpython":
        return "cpy"
    if name == "micropython":
        try:
            import machine

            if hasattr(machine, "I2C"):
                return "mpy"
        except ImportError:
            pass
    return "sim"  # unix port or CPython: only simulated hardware exists


def load(board, name=None, **kwargs):
    """Build the HAL for `board` (a board definition dict): explicit `name`, else backend_name()."""
    name = name or backend_name(board)
    if name == "mpy":
        from citynode.hal.mpy import MpyHal as cls
    elif name == "cpy":
        from citynode.hal.cpy import CpyHal as cls
    elif name == "sim":
        import os

        link = os.getenv("CITYNODE_SIM_LINK")  # the simulators run on the host (citynode_sim.simlink)
        if link:
            from citynode_sim.simlink import LinkHal as cls

            kwargs["link"] = link
        else:
            from citynode_sim.sim import SimHal as cls
    else:
        raise BoardError("hal", "unknown backend %r" % name)
    return cls(board, **kwargs)


class Clock:
    """Millisecond ticks and sleeps on any runtime. Drivers take a clock so tests can use SimClock."""

    def __init__(self):
        import time

        self._time = time
        if hasattr(time, "ticks_ms"):  # MicroPython
            self.ticks_ms = time.ticks_ms
            self._diff = time.ticks_diff
            self.sleep_ms = time.sleep_ms
            self.sleep_us = time.sleep_us
        else:  # CircuitPython and CPython
            self._diff = None

    def ticks_ms(self):
        t = self._time
        if hasattr(t, "monotonic_ns"):
            return t.monotonic_ns() // 1000000
        return int(t.monotonic() * 1000)

    def ticks_diff(self, a, b):
        """a - b in ms, wrap-safe on MicroPython."""
        if self._diff is not None:
            return self._diff(a, b)
        return a - b

    def sleep_ms(self, ms):
        if ms > 0:
            self._time.sleep(ms / 1000)

    def sleep_us(self, us):
        if us > 0:
            self._time.sleep(us / 1000000)


_clock = None


def clock():
    """The shared real-time Clock."""
    global _clock
    if _clock is None:
        _clock = Clock()
    return _clock
