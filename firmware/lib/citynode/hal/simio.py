# Simulated randomness, time, pins, ADC, time_pulse_us replay, watchdog and RTC for citynode.hal.sim.
from citynode.compat import const
from citynode.hal.simbus import log


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
    """Virtual time: sleeping advances it instantly, so a 30 s warm-up costs no wall time.
    every(period_ms, fn) registers simulated hardware activity (e.g. BLE adverts arriving by IRQ)
    that fires while time passes, as it would during a real sleep."""

    def __init__(self, start_ms=0):
        self.now_us = start_ms * 1000
        self.slept_ms = 0
        self._timers = []  # [due_ms, period_ms, fn]

    def ticks_ms(self):
        return self.now_us // 1000

    def ticks_us(self):
        return self.now_us

    def ticks_diff(self, a, b):
        return a - b

    def every(self, period_ms, fn):
        timer = [self.ticks_ms() + period_ms, period_ms, fn]
        self._timers.append(timer)
        return timer

    def cancel(self, timer):
        if timer in self._timers:
            self._timers.remove(timer)

    def _fire(self):
        now = self.ticks_ms()
        for timer in list(self._timers):
            if now >= timer[0]:
                timer[0] = now + timer[1]  # once per elapsed stretch: no burst after a long sleep
                timer[2]()

    def sleep_ms(self, ms):
        if ms > 0:
            self.now_us += int(ms) * 1000
            self.slept_ms += int(ms)
            if self._timers:
                self._fire()

    def sleep_us(self, us):
        if us > 0:
            self.now_us += int(us)

    def advance(self, ms):
        self.now_us += int(ms) * 1000
        if self._timers:
            self._fire()


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
        log(self.written, self.level)
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
