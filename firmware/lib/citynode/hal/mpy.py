# MicroPython HAL backend: builds machine.* objects from a board definition (boards/<name>.json).
#
# Board fields used (boards/*.json; all pins are GPIO numbers):
#   "i2c":     {"id": 0, "sda": 41, "scl": 42, "freq": 100000}
#   "uart":    {"id": 1, "tx": 47, "rx": 48, "baudrate": 9600}   the sensor UART ("pm" / "distance");
#              or {"<name>": {...}} per sensor.  "gps": {"uart_id": 1, "tx": 12, "rx": 34, "baudrate": 9600}
#   "spi":     {"id": 1, "sck": 9, "mosi": 10, "miso": 11, "baudrate": 8000000}
#   "pins":    {"<name>": 5, ...}  or "<name>_pin": 5   names: "trigger", "echo", "tilt", beams...
#   "battery": {"method": "adc", "adc_pin": 1, "divider": 4.9, "enable_pin": 37, "enable_level": 0}
#              {"method": "pmu", "pmu": "axp192"} with "pmu": {"i2c_id", "sda", "scl", "address"}
#   "power":   {"vext_pin": 36, "vext_on_level": 0}   optional switched sensor supply (Heltec)
# Missing or mistyped fields raise BoardError naming the dotted path ("uart.pm.tx").
# `machine` is a constructor argument (default: the real module) so the wiring is testable anywhere.
from citynode.hal import (
    RESET_DEEP_SLEEP,
    RESET_POWER_ON,
    RESET_SOFT,
    RESET_WATCHDOG,
    BoardError,
    Clock,
    battery_pin,
    board_get,
    board_pin,
    named_pin,
    uart_config,
    vext,
)


class AXP192Battery:
    """Battery voltage from the AXP192 PMU (T-Beam) with an ADC-like read_uv().
    AXP192 datasheet: REG 82H bit 7 enables the battery-voltage ADC; REG 78H/79H hold the 12-bit
    result (78H = bits 11..4, 79H<3:0> = bits 3..0), 1.1 mV per LSB."""

    def __init__(self, i2c, address=0x34):
        self.i2c = i2c
        self.address = address
        en = i2c.readfrom_mem(address, 0x82, 1)[0]
        if not en & 0x80:
            i2c.writeto_mem(address, 0x82, bytes((en | 0x80,)))

    def read_uv(self):
        hi, lo = self.i2c.readfrom_mem(self.address, 0x78, 2)
        return ((hi << 4) | (lo & 0x0F)) * 1100


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

    def _pin(self, path, mode=None, pull=None, value=None, n=None):
        m = self.machine
        if n is None:
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
            base, uid, tx, rx, baud = uart_config(self.board, name)
            if uid == 0:
                raise BoardError(base + (".uart_id" if base == "gps" else ".id"), "UART 0 carries the REPL; use 1 or 2")
            # timeout 0: reads return what is there; drivers pace themselves with the clock
            self._uarts[name] = self.machine.UART(uid, baudrate=baud, tx=tx, rx=rx, timeout=0, rxbuf=256)
        return self._uarts[name]

    def pin(self, name, mode="in", pull=None, value=None):
        path, n = named_pin(self.board, name)
        return self._pin(path, mode, pull, value, n)

    def adc(self, name):
        m = self.machine
        b = self.board
        if name == "battery":
            if board_get(b, "battery.method", str, "adc") == "pmu":
                addr = board_get(b, "pmu.address", int, 0x34)
                return AXP192Battery(self.i2c(), addr)
            path, n = battery_pin(b)
            if board_get(b, "battery.enable_pin", int, None) is not None:
                # Heltec V3 "ADC_Ctrl": the divider only conducts while enabled (released in deep sleep)
                self._pin("battery.enable_pin", "out", value=board_get(b, "battery.enable_level", int, 0))
        else:
            path, n = named_pin(b, name)
        if isinstance(n, str):
            raise BoardError(path, "MicroPython boards need GPIO numbers, got %r" % n)
        adc = m.ADC(m.Pin(n))
        if hasattr(adc, "atten") and hasattr(m.ADC, "ATTN_11DB"):
            adc.atten(m.ADC.ATTN_11DB)  # ESP32: ~0.15..2.45 V (S3) / 3.1 V usable range
        return adc

    def battery_divider(self):
        if board_get(self.board, "battery.method", str, "adc") == "pmu":
            return 1.0  # the PMU measures the cell directly
        return board_get(self.board, "battery.divider", (int, float), 2.0)

    def spi(self):
        b = self.board
        baud = board_get(b, "spi.baudrate", int, None) or board_get(b, "spi.baud", int, 8000000)
        return self.machine.SPI(board_get(b, "spi.id", int, 1), baudrate=baud,
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
        v = vext(self.board)
        if v is None:
            return False
        pin, on_level = v
        self._pin("power.vext_pin", "out", value=on_level if on else 1 - on_level, n=pin)
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
