# MicroPython HAL backend: builds machine.* objects from a board definition (boards/<name>.json).
#
# Board fields used (all pins are GPIO numbers):
#   "i2c":     {"sda": 17, "scl": 18, "freq": 400000, "id": 0}
#   "uart":    {"<name>": {"tx": 43, "rx": 44, "baud": 9600, "id": 1}, ...}   names: "pm", "distance", "gps"
#   "spi":     {"sck": 9, "mosi": 10, "miso": 11, "id": 1, "baud": 8000000}
#   "pins":    {"<name>": 5, ...}                      names: "trigger", "echo", "tilt", "led", beams...
#   "battery": {"pin": 1, "divider": 4.9}
#   "vext":    {"pin": 36, "active": 0}                optional switched sensor power (Heltec)
# Missing or mistyped fields raise BoardError naming the dotted path ("uart.pm.tx").
# `machine` is a constructor argument (default: the real module) so the wiring is testable anywhere.
from citynode.hal import (
    RESET_DEEP_SLEEP,
    RESET_POWER_ON,
    RESET_SOFT,
    RESET_WATCHDOG,
    BoardError,
    Clock,
    board_get,
    board_pin,
)


class MpyHal:
    hard_irq = True  # ESP32: pin.irq(..., hard=True) runs the handler in the ISR

    def __init__(self, board, machine=None, modules=None):
        """modules: optional {"network", "wifisniff", "bluetooth"} stand-ins (tests)."""
        self._mods = dict(modules or {})
        if machine is None:
            import machine
        if not isinstance(board, dict):
            raise BoardError("board", "expected a dict, got %r" % (type(board).__name__,))
        self.board = board
        self.machine = machine
        self.clock = Clock()
        self._i2c = None
        self._uarts = {}

    def _pin(self, path, mode=None, pull=None, value=None):
        m = self.machine
        n = board_pin(self.board, path)
        if isinstance(n, str):
            raise BoardError(path, "MicroPython boards need GPIO numbers, got %r" % n)
        mode = m.Pin.OUT if mode == "out" else m.Pin.IN
        pull = m.Pin.PULL_UP if pull == "up" else (m.Pin.PULL_DOWN if pull == "down" else None)
        if value is None:
            return m.Pin(n, mode, pull)
        return m.Pin(n, mode, pull, value=value)

    def i2c(self):
        if self._i2c is None:
            b = self.board
            bus = board_get(b, "i2c.id", int, 0)
            freq = board_get(b, "i2c.freq", int, 400000)
            self._i2c = self.machine.I2C(bus, scl=self._pin("i2c.scl"), sda=self._pin("i2c.sda"), freq=freq)
        return self._i2c

    def uart(self, name):
        if name not in self._uarts:
            base = "uart." + name
            b = self.board
            uid = board_get(b, base + ".id", int, 1)
            if uid == 0:
                raise BoardError(base + ".id", "UART 0 carries the REPL; use 1 or 2")
            baud = board_get(b, base + ".baud", int, 9600)
            tx = board_pin(b, base + ".tx")
            rx = board_pin(b, base + ".rx")
            # timeout 0: reads return what is there; drivers pace themselves with the clock
            self._uarts[name] = self.machine.UART(uid, baudrate=baud, tx=tx, rx=rx, timeout=0, rxbuf=256)
        return self._uarts[name]

    def pin(self, name, mode="in", pull=None, value=None):
        return self._pin("pins." + name, mode, pull, value)

    def adc(self, name):
        path = name + ".pin" if name == "battery" else "pins." + name
        m = self.machine
        adc = m.ADC(m.Pin(board_pin(self.board, path)))
        if hasattr(adc, "atten") and hasattr(m.ADC, "ATTN_11DB"):
            adc.atten(m.ADC.ATTN_11DB)  # ESP32: ~0.15..2.45 V (S3) / 3.1 V usable range
        return adc

    def battery_divider(self):
        return board_get(self.board, "battery.divider", (int, float), 2.0)

    def spi(self):
        b = self.board
        return self.machine.SPI(board_get(b, "spi.id", int, 1), baudrate=board_get(b, "spi.baud", int, 8000000),
                                sck=self._pin("spi.sck", "out"), mosi=self._pin("spi.mosi", "out"),
                                miso=self._pin("spi.miso"))

    def wdt(self, timeout_ms=30000):
        return self.machine.WDT(timeout=timeout_ms)

    def rtc(self):
        return self.machine.RTC()

    def time_pulse_us(self, pin, level, timeout_us=1000000):
        return self.machine.time_pulse_us(pin, level, timeout_us)

    def peripheral_power(self, on):
        """Switch the board's sensor supply (Heltec "Vext") if it has one; True if it does."""
        if "vext" not in self.board:
            return False
        active = board_get(self.board, "vext.active", int, 0)
        self._pin("vext.pin", "out", value=active if on else 1 - active)
        return True

    def reset_cause(self):
        m = self.machine
        cause = m.reset_cause()
        table = (
            ("WDT_RESET", RESET_WATCHDOG),
            ("DEEPSLEEP_RESET", RESET_DEEP_SLEEP),
            ("SOFT_RESET", RESET_SOFT),
            ("PWRON_RESET", RESET_POWER_ON),
            ("HARD_RESET", RESET_POWER_ON),
        )
        for attr, name in table:
            if getattr(m, attr, None) == cause:
                return name
        return RESET_POWER_ON

    def deep_sleep(self, ms):
        self.machine.deepsleep(int(ms))

    def reset(self):
        self.machine.reset()

    def _m(self, name):
        if name not in self._mods:
            self._mods[name] = __import__(name)
        return self._mods[name]

    def wifi_source(self, channel=1):
        """The wifisniff C module (firmware/cmodules/wifisniff) capturing probe requests on `channel`;
        its read(buf) is the frame-source interface. ImportError on firmware built without it."""
        if not 1 <= channel <= 14:
            raise BoardError("wifi_channel", "must be 1..14, got %r" % (channel,))
        network = self._m("network")
        sniff = self._m("wifisniff")
        network.WLAN(network.STA_IF).active(True)  # promiscuous mode needs Wi-Fi started, not connected
        sniff.start(channel)
        return sniff

    def bluetooth(self):
        """The `bluetooth` module (its BLE() object does the gap scan)."""
        return self._m("bluetooth")
