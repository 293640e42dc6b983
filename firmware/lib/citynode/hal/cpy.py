# CircuitPython HAL backend: busio / digitalio / analogio / alarm objects wrapped in adapters that
# offer the machine-style methods our drivers call (i2c.readfrom_mem, uart.any, pin.value, pin.irq,
# adc.read_uv, rtc.memory), so the same drivers run on both runtimes.
#
# Board fields are the ones hal/mpy.py documents. A pin is a GPIO number (looked up as
# microcontroller.pin.GPIO<n>) or a board pin name string ("D5", "IO43", "SDA").
# CircuitPython has no pin interrupts: CpyPin.irq registers the pin with keypad.Keys, whose
# timestamped event queue the app drains with hal.poll() in its loop.
from citynode.hal import (
    RESET_BROWNOUT,
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
)


def _import(name):
    return __import__(name)


class CpyI2C:
    """machine.I2C-style calls over busio.I2C (which needs try_lock/unlock around every transfer)."""

    def __init__(self, bus):
        self.bus = bus
        self._reg = bytearray(1)

    def _lock(self):
        while not self.bus.try_lock():
            pass

    def scan(self):
        self._lock()
        try:
            return self.bus.scan()
        finally:
            self.bus.unlock()

    def readfrom_mem_into(self, addr, reg, buf):
        self._reg[0] = reg
        self._lock()
        try:
            self.bus.writeto_then_readfrom(addr, self._reg, buf)
        finally:
            self.bus.unlock()

    def readfrom_mem(self, addr, reg, n):
        buf = bytearray(n)
        self.readfrom_mem_into(addr, reg, buf)
        return bytes(buf)

    def writeto_mem(self, addr, reg, data):
        self.writeto(addr, bytes((reg,)) + bytes(data))

    def writeto(self, addr, data):
        self._lock()
        try:
            self.bus.writeto(addr, data)
        finally:
            self.bus.unlock()
        return len(data)

    def readfrom_into(self, addr, buf):
        self._lock()
        try:
            self.bus.readfrom_into(addr, buf)
        finally:
            self.bus.unlock()


class CpyUART:
    """machine.UART-style any()/read()/write() over busio.UART."""

    def __init__(self, uart):
        self.uart = uart

    def any(self):
        return self.uart.in_waiting

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.uart.in_waiting
        if not n:
            return None
        return self.uart.read(n)

    def write(self, data):
        return self.uart.write(data)


class CpyPin:
    """machine.Pin-style value()/irq() over digitalio.DigitalInOut."""

    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, hal, board_pin_obj, io):
        self.hal = hal
        self.board_pin = board_pin_obj
        self.io = io
        self._handler = None
        self._trigger = 0

    def value(self, v=None):
        if v is None:
            return 1 if self.io.value else 0
        self.io.value = bool(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3):
        self._handler = handler
        self._trigger = trigger
        self.hal._watch(self)


class CpyADC:
    """read_u16()/read_uv() over analogio.AnalogIn (value is 16-bit scaled to reference_voltage)."""

    def __init__(self, ain):
        self.ain = ain

    def read_u16(self):
        return self.ain.value

    def read_uv(self):
        return int(self.ain.value * self.ain.reference_voltage * 1000000 / 65535)


class CpyRTC:
    """memory() over alarm.sleep_memory (survives deep sleep, like the ESP32 RTC memory)."""

    def __init__(self, alarm):
        self.alarm = alarm

    def memory(self, data=None):
        mem = self.alarm.sleep_memory
        if data is None:
            n = mem[0] | (mem[1] << 8)
            return bytes(mem[2:2 + n]) if 0 < n <= len(mem) - 2 else b""
        if len(data) > len(mem) - 2:
            raise ValueError("sleep memory holds %d bytes" % (len(mem) - 2))
        mem[2:2 + len(data)] = data
        mem[0], mem[1] = len(data) & 0xFF, len(data) >> 8


class CpyWDT:
    def __init__(self, microcontroller, watchdog_mode, timeout_ms):
        wd = microcontroller.watchdog
        wd.timeout = timeout_ms / 1000
        wd.mode = watchdog_mode.RESET
        self.wd = wd

    def feed(self):
        self.wd.feed()


class CpyWifiSource:
    """Frame source over CircuitPython's wifi.Monitor (ESP32-S2/S3): read(buf) packs queued packets
    into the citynode record format, keeping only the 24-byte 802.11 management header (the
    transmitter address is all the counter needs; the frame body with the SSIDs is never copied)."""

    CAPTURE = 24

    def __init__(self, monitor, keys):
        self.monitor = monitor
        self.keys = keys  # wifi.Packet: the packet dict's keys (RAW, RSSI, CH)
        self._pending = None

    def read(self, buf):
        pos = 0
        while True:
            pkt = self._pending or self.monitor.packet()
            self._pending = None
            if not pkt:
                return pos
            raw = pkt[self.keys.RAW]
            n = min(len(raw), self.CAPTURE)
            if pos + 4 + n > len(buf):
                self._pending = pkt
                return pos
            rssi = pkt[self.keys.RSSI]
            ch = pkt[self.keys.CH]
            buf[pos] = n & 0xFF
            buf[pos + 1] = n >> 8
            buf[pos + 2] = rssi & 0xFF
            buf[pos + 3] = ch & 0xFF
            buf[pos + 4:pos + 4 + n] = raw[:n]
            pos += 4 + n


class CpyHal:
    hard_irq = False  # CircuitPython has no pin interrupts (see poll())

    def __init__(self, board, modules=None):
        """modules: {"board", "busio", "digitalio", "analogio", "alarm", "microcontroller", "keypad",
        "pulseio", "watchdog", "time"} for tests; missing ones are imported on first use."""
        if not isinstance(board, dict):
            raise BoardError("board", "expected a dict, got %r" % (type(board).__name__,))
        self.board = board
        self._mods = dict(modules or {})
        self.clock = Clock()
        self._i2c = None
        self._uarts = {}
        self._keys = []  # (keypad.Keys, CpyPin)

    def _m(self, name):
        if name not in self._mods:
            self._mods[name] = _import(name)
        return self._mods[name]

    def _board_pin(self, path, p=None):
        if p is None:
            p = board_pin(self.board, path)
        if isinstance(p, str):
            obj = getattr(self._m("board"), p, None)
            if obj is None:
                raise BoardError(path, "this board has no pin named %r" % p)
            return obj
        obj = getattr(self._m("microcontroller").pin, "GPIO%d" % p, None)
        if obj is None:
            raise BoardError(path, "this chip has no GPIO%d" % p)
        return obj

    def i2c(self):
        if self._i2c is None:
            freq = board_get(self.board, "i2c.freq", int, 400000)
            bus = self._m("busio").I2C(self._board_pin("i2c.scl"), self._board_pin("i2c.sda"), frequency=freq)
            self._i2c = CpyI2C(bus)
        return self._i2c

    def uart(self, name):
        if name not in self._uarts:
            base, _uid, tx, rx, baud = uart_config(self.board, name)
            u = self._m("busio").UART(self._board_pin(base + ".tx", tx), self._board_pin(base + ".rx", rx),
                                      baudrate=baud, timeout=0, receiver_buffer_size=256)
            self._uarts[name] = CpyUART(u)
        return self._uarts[name]

    def pin(self, name, mode="in", pull=None, value=None):
        dio = self._m("digitalio")
        bp = self._board_pin(*named_pin(self.board, name))
        io = dio.DigitalInOut(bp)
        if mode == "out":
            io.switch_to_output(value=bool(value))
        else:
            io.switch_to_input(pull=dio.Pull.UP if pull == "up" else (dio.Pull.DOWN if pull == "down" else None))
        return CpyPin(self, bp, io)

    def adc(self, name):
        path, p = battery_pin(self.board) if name == "battery" else named_pin(self.board, name)
        return CpyADC(self._m("analogio").AnalogIn(self._board_pin(path, p)))

    def battery_divider(self):
        return board_get(self.board, "battery.divider", (int, float), 2.0)

    def spi(self):
        return self._m("busio").SPI(self._board_pin("spi.sck"), MOSI=self._board_pin("spi.mosi"),
                                    MISO=self._board_pin("spi.miso"))

    def wdt(self, timeout_ms=30000):
        return CpyWDT(self._m("microcontroller"), self._m("watchdog").WatchDogMode, timeout_ms)

    def rtc(self):
        return CpyRTC(self._m("alarm"))

    def time_pulse_us(self, pin, level, timeout_us=1000000):
        """machine.time_pulse_us semantics with pulseio.PulseIn: pulse length in us, -2 when no pulse
        started, -1 when it outlasted timeout_us. `pin` is a CpyPin (its DigitalInOut is released)."""
        pin.io.deinit()
        pulses = self._m("pulseio").PulseIn(pin.board_pin, maxlen=4, idle_state=not level)
        try:
            clock = self.clock
            start = clock.ticks_ms()
            while len(pulses) < 1:
                if clock.ticks_diff(clock.ticks_ms(), start) * 1000 > 2 * timeout_us:
                    return -2
            us = pulses[0]
            return -1 if us > timeout_us else us
        finally:
            pulses.deinit()
            pin.io = self._m("digitalio").DigitalInOut(pin.board_pin)

    def _watch(self, pin):
        keys = self._m("keypad").Keys((pin.board_pin,), value_when_pressed=True, pull=False)
        pin.io.deinit()
        self._keys.append((keys, pin))

    def poll(self):
        """Dispatch queued edges to CpyPin.irq handlers (call it from the app's loop)."""
        for keys, pin in self._keys:
            ev = keys.events.get()
            while ev:
                if (ev.pressed and pin._trigger & 1) or (ev.released and pin._trigger & 2):
                    pin._handler(pin)
                ev = keys.events.get()

    def reset_cause(self):
        mc = self._m("microcontroller")
        reason = mc.cpu.reset_reason
        rr = mc.ResetReason
        table = (
            ("WATCHDOG", RESET_WATCHDOG),
            ("DEEP_SLEEP_ALARM", RESET_DEEP_SLEEP),
            ("SOFTWARE", RESET_SOFT),
            ("BROWNOUT", RESET_BROWNOUT),
            ("POWER_ON", RESET_POWER_ON),
        )
        for attr, name in table:
            if getattr(rr, attr, None) == reason:
                return name
        return RESET_POWER_ON

    def reset(self):
        self._m("microcontroller").reset()

    def wifi_source(self, channel=1):
        """wifi.Monitor on `channel` (CircuitPython on ESP32-S2/S3) as a frame source."""
        if not 1 <= channel <= 14:
            raise BoardError("wifi_channel", "must be 1..14, got %r" % (channel,))
        wifi = self._m("wifi")
        return CpyWifiSource(wifi.Monitor(channel=channel, queue=64), wifi.Packet)

    def bluetooth(self):
        raise BoardError("bluetooth", "CircuitPython has no `bluetooth` gap_scan module; use MicroPython "
                         "for BLE counting")

    def deep_sleep(self, ms):
        alarm = self._m("alarm")
        t = self._m("time")
        wake = alarm.time.TimeAlarm(monotonic_time=t.monotonic() + ms / 1000)
        alarm.exit_and_deep_sleep_until_alarms(wake)
