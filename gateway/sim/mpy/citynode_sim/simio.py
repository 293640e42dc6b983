# Simulated time, pins and watchdog: what every role's sim board uses, in the firmware process too
# when the simulators run on the host (citynode_sim.simlink). The seeded randomness and the ADC live
# in citynode_sim.simrandom, time_pulse_us replay in citynode_sim.simextra, the RTC in simrtc (all
# re-exported here on access).
from citynode.compat import const

LOG_LIMIT = const(16)  # recorded writes/commands kept per device: enough for a test, bounded for 1000 cycles


def log(entries, item):
    """Append to a bounded log (oldest entries dropped), so simulators do not grow the heap."""
    if len(entries) >= LOG_LIMIT:
        entries.pop(0)
    entries.append(item)


_TICKS_MASK = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)


class SimClock:
    """Virtual time: sleeping advances it instantly, so a 30 s warm-up costs no wall time.
    every(period_ms, fn) registers simulated hardware activity (e.g. BLE adverts arriving by IRQ)
    that fires while time passes, as it would during a real sleep."""

    def __init__(self, start_ms=0):
        self.now_us = start_ms * 1000
        self.slept_ms = 0
        self._timers = []  # [due_ms, period_ms, fn]
        # Hardware events at exact instants (beam edges): an object with `due_us` (int, or None when
        # it has nothing more) and fire() (acts at due_us and moves due_us on). A sleep stops the
        # clock at each due instant and fires it, so an IRQ handler reading ticks_us() sees the
        # time of its own edge, as on a board.
        self.events = None

    def ticks_ms(self):
        return self.now_us // 1000

    def ticks_us(self):
        # 30-bit like MicroPython's time.ticks_us() (drivers keep ticks in int32 arrays); ticks_ms()
        # is left unbounded because simulators compare it directly. now_us is the true time.
        return self.now_us & _TICKS_MASK

    def ticks_diff(self, a, b):
        # time.ticks_diff(): wrap-aware, exact for |a - b| < 2**29 (ms ticks: 6 days; us: 536 s)
        return ((a - b + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF

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

    def _run_events(self, end_us):
        events = self.events
        due = events.due_us
        while due is not None and due <= end_us:
            if due > self.now_us:
                self.now_us = due
            events.fire()
            due = events.due_us

    def sleep_ms(self, ms):
        if ms > 0:
            end = self.now_us + int(ms) * 1000
            if self.events is not None:
                self._run_events(end)
            self.now_us = end
            self.slept_ms += int(ms)
            if self._timers:
                self._fire()

    def sleep_us(self, us):
        if us > 0:
            end = self.now_us + int(us)
            if self.events is not None:
                self._run_events(end)
            self.now_us = end

    def advance(self, ms):
        end = self.now_us + int(ms) * 1000
        if self.events is not None:
            self._run_events(end)
        self.now_us = end
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


class SimWDT:
    """machine.WDT on the virtual board. A cycle that runs longer than `timeout` virtual ms without a
    feed ends the run with exit status 65, which the virtual device turns into a watchdog reset (and the
    next boot reports it). Checked at every feed and while virtual time passes; paused in deep sleep,
    when a real chip is off."""

    def __init__(self, timeout=5000, clock=None):
        self.timeout = timeout
        self.feeds = 0
        self.clock = clock
        self.paused = False
        if clock is not None:
            self._fed = clock.ticks_ms()
            clock.every(timeout, self._check)

    def _check(self):
        if self.clock is None or self.paused:
            return
        if self.clock.ticks_diff(self.clock.ticks_ms(), self._fed) > self.timeout:
            print("watchdog: no feed for %d ms, resetting" % self.timeout)
            raise SystemExit(65)

    def feed(self):
        self._check()
        self.feeds += 1
        if self.clock is not None:
            self._fed = self.clock.ticks_ms()


def __getattr__(name):  # loaded only by the simulators that use them
    if name in ("SimRandom", "SimADC"):
        from citynode_sim import simrandom

        return getattr(simrandom, name)
    if name in ("SimPulse", "echo_us"):
        from citynode_sim import simextra

        return getattr(simextra, name)
    if name == "SimRTC":
        from citynode_sim.simrtc import SimRTC

        return SimRTC
    raise AttributeError(name)
