# Simulated peripherals for the MicroPython unix port and tests. Same method names as machine.*:
# I2C.readfrom_mem/writeto_mem, UART.read/write/any, Pin.value/irq, ADC.read_uv, time_pulse_us.
# Everything is deterministic: randomness comes from SimRandom (xorshift32), which yields the same
# sequence on MicroPython and CPython for the same seed; time is virtual (SimClock).
from citynode.compat import const
from citynode.hal import RESET_DEEP_SLEEP, RESET_POWER_ON, BoardError, board_get

_ENODEV = const(19)  # errno MicroPython's machine.I2C raises when no device ACKs the address
_ETIMEDOUT = const(110)


class SimRandom:
    """xorshift32 (Marsaglia 2003): tiny, seedable and identical on every runtime."""

    def __init__(self, seed=1):
        self.seed(seed)

    def seed(self, seed):
        self._s = (seed * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF or 1

    def next32(self):
        x = self._s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._s = x
        return x

    def random(self):
        """Float in [0, 1)."""
        return (self.next32() >> 8) / 16777216

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.random()

    def randint(self, lo, hi):
        return lo + self.next32() % (hi - lo + 1)

    def noise(self, sigma):
        """Approximately normal noise (Irwin-Hall sum of 4 uniforms, variance matched)."""
        s = self.random() + self.random() + self.random() + self.random() - 2.0
        return s * sigma * 1.7320508  # var(sum of 4 U(0,1)) = 1/3


class SimClock:
    """Virtual time: sleeping advances it instantly, so a 30 s warm-up costs no wall time."""

    def __init__(self, start_ms=0):
        self.now_us = start_ms * 1000
        self.slept_ms = 0

    def ticks_ms(self):
        return self.now_us // 1000

    def ticks_us(self):
        return self.now_us

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        if ms > 0:
            self.now_us += int(ms) * 1000
            self.slept_ms += int(ms)

    def sleep_us(self, us):
        if us > 0:
            self.now_us += int(us)

    def advance(self, ms):
        self.now_us += int(ms) * 1000


class RegisterDevice:
    """An I2C device modelled as a register map with an auto-incrementing register pointer."""

    def __init__(self, size=256):
        self.regs = bytearray(size)
        self.pointer = 0

    def read(self, reg, n):
        out = bytearray(n)
        for i in range(n):
            out[i] = self.read_reg((reg + i) & 0xFF)
        return out

    def write(self, reg, data):
        for i in range(len(data)):
            self.write_reg((reg + i) & 0xFF, data[i])

    def write_raw(self, buf):
        """A raw bus write: first byte sets the pointer, the rest are written auto-incrementing."""
        if len(buf):
            self.pointer = buf[0]
            if len(buf) > 1:
                self.write(buf[0], buf[1:])

    def read_reg(self, reg):
        return self.regs[reg]

    def write_reg(self, reg, value):
        self.regs[reg] = value


class SimI2C:
    """I2C bus holding RegisterDevices by 7-bit address. Missing addresses raise OSError(ENODEV)."""

    def __init__(self, devices=None):
        self.devices = dict(devices or {})
        self.transactions = 0

    def attach(self, addr, device):
        self.devices[addr] = device
        return device

    def _dev(self, addr):
        self.transactions += 1
        dev = self.devices.get(addr)
        if dev is None:
            raise OSError(_ENODEV)
        return dev

    def scan(self):
        return sorted(self.devices)

    # memory-style access (machine.I2C)
    def readfrom_mem(self, addr, reg, n, addrsize=8):
        return bytes(self._dev(addr).read(reg, n))

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        data = self._dev(addr).read(reg, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        self._dev(addr).write(reg, buf)

    # raw access: first written byte sets the register pointer (Bosch / most sensors, and busio style)
    def writeto(self, addr, buf, stop=True):
        self._dev(addr).write_raw(buf)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        dev = self._dev(addr)
        data = dev.read(dev.pointer, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]
        dev.pointer = (dev.pointer + len(buf)) & 0xFF

    def readfrom(self, addr, n, stop=True):
        buf = bytearray(n)
        self.readfrom_into(addr, buf)
        return bytes(buf)


class SimUART:
    """UART with a scripted receive stream. `responder(data)` sees every write and may feed() replies.

    `chunk` limits how many bytes one read() returns, to exercise partial-frame handling.
    read() returns None when nothing is waiting, like machine.UART after its timeout.
    """

    def __init__(self, rx=b"", responder=None, chunk=0):
        self.rx = bytearray(rx)
        self.tx = []
        self.responder = responder
        self.chunk = chunk

    def feed(self, data):
        self.rx.extend(data)

    def any(self):
        return len(self.rx)

    def read(self, n=-1):
        if not self.rx:
            return None
        if n is None or n < 0:
            n = len(self.rx)
        if self.chunk:
            n = min(n, self.chunk)
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out

    def readinto(self, buf, n=-1):
        data = self.read(len(buf) if n < 0 else n)
        if not data:
            return None
        for i in range(len(data)):
            buf[i] = data[i]
        return len(data)

    def write(self, data):
        data = bytes(data)
        self.tx.append(data)
        if self.responder is not None:
            self.responder(data)
        return len(data)

    def flush(self):
        pass


class SimPin:
    """GPIO with a settable level, an optional script of levels read one per value() call, a history
    of written levels, and irq() handlers fired by edge()."""

    IN = const(1)
    OUT = const(3)
    PULL_UP = const(2)
    PULL_DOWN = const(1)
    IRQ_RISING = const(1)
    IRQ_FALLING = const(2)

    def __init__(self, value=0, script=None, name=None):
        self.level = value
        self.script = list(script) if script else []
        self.written = []
        self.name = name
        self._handler = None
        self._trigger = 0

    def value(self, v=None):
        if v is None:
            if self.script:
                self.level = self.script.pop(0)
            return self.level
        self.level = 1 if v else 0
        self.written.append(self.level)
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3):
        self._handler = handler
        self._trigger = trigger

    def edge(self, level):
        """Drive the pin to `level` from outside; fire the irq handler if the edge matches."""
        old, self.level = self.level, level
        if self._handler is None or old == level:
            return
        if (level and self._trigger & 1) or (not level and self._trigger & 2):
            self._handler(self)


class SimADC:
    """ADC returning a scripted voltage in microvolts (a number, or a list consumed per read, the last
    value repeating), with optional seeded noise. read_u16 assumes `full_scale_uv`."""

    def __init__(self, uv=0, noise_uv=0, seed=1, full_scale_uv=3300000):
        self.script = list(uv) if isinstance(uv, (list, tuple)) else [uv]
        self.noise_uv = noise_uv
        self.rng = SimRandom(seed)
        self.full_scale_uv = full_scale_uv
        self.reads = 0

    def set_uv(self, uv):
        self.script = [uv]

    def read_uv(self):
        self.reads += 1
        uv = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if self.noise_uv:
            uv += int(self.rng.noise(self.noise_uv))
        return max(0, min(self.full_scale_uv, int(uv)))

    def read_u16(self):
        return self.read_uv() * 65535 // self.full_scale_uv


class SimPulse:
    """Replay of machine.time_pulse_us(pin, level, timeout_us): returns scripted durations in us.

    A scripted value < 0 is returned as is (-2: no pulse started, -1: pulse longer than timeout);
    a duration above the caller's timeout becomes -1, as on the real port.
    """

    def __init__(self, durations=(), repeat_last=True):
        self.durations = list(durations)
        self.repeat_last = repeat_last
        self.calls = 0

    def push(self, *durations):
        self.durations.extend(durations)

    def __call__(self, pin, level, timeout_us=1000000):
        self.calls += 1
        if not self.durations:
            return -2
        d = self.durations[0] if (self.repeat_last and len(self.durations) == 1) else self.durations.pop(0)
        if d >= 0 and d > timeout_us:
            return -1
        return d


def echo_us(distance_mm, temperature_c=20.0):
    """Round-trip echo time for a target at distance_mm: t = 2 d / c, c = 331.3 + 0.606 T m/s."""
    c = 331.3 + 0.606 * temperature_c  # m/s == mm/ms
    return int(2 * distance_mm * 1000 / c + 0.5)


class SimWDT:
    def __init__(self, timeout=5000):
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class SimRTC:
    """RTC with battery-backed memory (machine.RTC().memory() survives deep sleep on ESP32)."""

    def __init__(self):
        self._mem = b""
        self._dt = (2026, 1, 1, 3, 0, 0, 0, 0)

    def memory(self, data=None):
        if data is None:
            return self._mem
        if len(data) > 2048:
            raise ValueError("rtc memory: max 2048 bytes")
        self._mem = bytes(data)

    def datetime(self, dt=None):
        if dt is None:
            return self._dt
        self._dt = tuple(dt)


class SimHal:
    """The simulated board: builds sim peripherals by the same names the real HALs use.

    `values` scripts the sensors (see citynode.hal.simdev.build_devices); `seed` makes randomised
    values repeatable. deep_sleep() advances virtual time and marks the next reset as a wake-up.
    """

    def __init__(self, board=None, seed=1, values=None, clock=None):
        self.board = board or {}
        self.rng = SimRandom(seed)
        self.clock = clock or SimClock()
        self.values = values or {}
        self._reset_cause = RESET_POWER_ON
        self._i2c = None
        self._uarts = {}
        self._pins = {}
        self._adcs = {}
        self._rtc = SimRTC()
        self.pulse = SimPulse()
        self.slept_ms = 0
        from citynode.hal import simdev

        self.devices = simdev.build_devices(self, self.values)

    def i2c(self, bus=0):
        if self._i2c is None:
            self._i2c = SimI2C()
        return self._i2c

    def uart(self, name):
        if name not in self._uarts:
            self._uarts[name] = SimUART()
        return self._uarts[name]

    def pin(self, name, mode=None, pull=None, value=None):
        if name not in self._pins:
            self._pins[name] = SimPin(0 if value is None else value, name=name)
        return self._pins[name]

    def adc(self, name):
        if name not in self._adcs:
            self._adcs[name] = SimADC(0)
        return self._adcs[name]

    def spi(self, bus=0):
        raise BoardError("spi", "the sim board has no SPI devices")

    def wdt(self, timeout_ms=30000):
        return SimWDT(timeout_ms)

    def rtc(self):
        return self._rtc

    def time_pulse_us(self, pin, level, timeout_us=1000000):
        return self.pulse(pin, level, timeout_us)

    def battery_divider(self):
        return board_get(self.board, "battery.divider", (int, float), 2.0)

    def reset_cause(self):
        return self._reset_cause

    def deep_sleep(self, ms):
        self.clock.advance(ms)
        self.slept_ms += ms
        self._reset_cause = RESET_DEEP_SLEEP
