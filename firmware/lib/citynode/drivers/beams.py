# Passenger counting with two IR break-beams per door (up to 4 doors), for the passenger_count role.
#
# Hardware: per door, beam A on the OUTSIDE (street side) and beam B on the INSIDE (vehicle side), a few
# centimetres apart, each a receiver with an open-collector output (e.g. Adafruit 2167/2168 style:
# output pulled LOW while the beam is broken, hence blocked_level=0 by default), plus an optional
# door-open input from the vehicle's door controller (usually an opto-isolated 24 V signal).
# The pins are passed in (MicroPython machine.Pin API: value(), irq(handler=, trigger=)); this module never
# imports `machine`.
#
# Two halves:
#   1. IRQ side: one handler per input, on both edges. It reads the pin level and ticks_us() and writes
#      (channel, level, ticks_us) into a preallocated ring buffer. No allocation, no state machine, so it is
#      safe as a hard IRQ. A full ring drops the newest event and counts it in `overflows`.
#   2. Main-loop side, `process()`: drains the ring, debounces each input, and feeds the debounced edges in
#      time order into one direction state machine per door.
#
# Debounce: an input's new level is accepted only once it has been stable for `debounce_ms`; the accepted
# edge keeps the time of its FIRST raw edge, so the order of A and B edges is preserved exactly even when
# both are still inside their debounce windows. Bounces shorter than debounce_ms vanish entirely.
#
# Direction state machine per door ("near" = the beam that was blocked first, "far" = the other one;
# near=A means boarding direction, near=B alighting). a/b = debounced "beam blocked".
#
#   | state   | a b (after) | event                        | next     | action                               |
#   |---------|-------------|------------------------------|----------|--------------------------------------|
#   | WAIT    | any         | door closed / not yet clear  | WAIT     | nothing is counted while gated       |
#   | WAIT    | 0 0         | door open and both clear     | IDLE     |                                      |
#   | IDLE    | 1 0 / 0 1   | one beam blocks              | NEAR     | near := that beam                    |
#   | IDLE    | 1 1         | both block within simul_ms   | BOTH?    | near unknown (simultaneous blocking) |
#   | NEAR    | 0 0         | near clears                  | IDLE     | half crossing: not counted           |
#   | NEAR    | 1 1         | far blocks                   | BOTH     |                                      |
#   | BOTH    | far only    | near clears                  | FAR      | person has passed the near beam      |
#   | BOTH    | near only   | far clears                   | NEAR     | reversal under way                   |
#   | BOTH?   | one only    | one beam clears              | FAR      | near := the beam that cleared first  |
#   | BOTH?   | 0 0         | both clear at once           | IDLE     | direction unknowable: not counted    |
#   | BOTH,FAR| 0 0         | both clear within simul_ms   | IDLE     | direction unknowable: not counted    |
#   | FAR     | 0 0         | far clears                   | IDLE     | COUNT (near=A boarding, B alighting) |
#   | FAR     | 1 1         | near blocks again            | BOTH_P   | next person, or same person stepping |
#   | BOTH_P  | near only   | far clears                   | NEAR     | COUNT; the one on near is next       |
#   | BOTH_P  | far only    | near clears                  | FAR      |                                      |
#   | any     | -           | door closes                  | WAIT     | a crossing in progress is dropped    |
#
# A reversal (A, A+B, then back out through A) goes IDLE-NEAR-BOTH-NEAR-IDLE and is never counted; a half
# crossing (A blocks and clears) neither. Known ambiguity of any two-beam counter: in BOTH_P, "person 1
# leaves via far while person 2 steps onto near" and "person 1 steps back and someone then leaves" look
# alike; we resolve it in favour of two people back to back, the common case at a bus door.
#
# Counters per door saturate at 65535 (schema passenger_count.doors[].boardings/alightings max).
# Occupancy = boardings - alightings across all doors, clamped to 0..1000 (schema occupancy max); it is
# reset by command (e.g. at the terminus or a downlink), not by taking the interval counts.
from array import array

from citynode.compat import const

try:
    from time import ticks_diff, ticks_us
except ImportError:  # CPython: same semantics as MicroPython's 30-bit tick counter
    import time as _time

    _TICKS_PERIOD = 1 << 30
    _TICKS_HALF = 1 << 29

    def ticks_us():
        return (_time.monotonic_ns() // 1000) & (_TICKS_PERIOD - 1)

    def ticks_diff(a, b):
        return ((a - b + _TICKS_HALF) & (_TICKS_PERIOD - 1)) - _TICKS_HALF


try:
    from citynode.drivers import ConfigError
except ImportError:  # the shared drivers package is optional for this module

    class ConfigError(ValueError):
        """A driver was configured with an impossible value; `field` names the parameter."""

        def __init__(self, field, message="invalid value"):
            super().__init__("%s: %s" % (field, message))
            self.field = field


_DEBUG = const(False)

MAX_DOORS = const(4)
COUNT_MAX = const(65535)  # schema: boardings/alightings max
OCCUPANCY_MAX = const(1000)  # schema: occupancy max

# Input channels of one door: channel = door_index * 3 + role.
_CH_A = const(0)
_CH_B = const(1)
_CH_DOOR = const(2)
_CH_PER_DOOR = const(3)

# Door states (see the table above).
_WAIT = const(0)
_IDLE = const(1)
_NEAR = const(2)
_BOTH = const(3)
_BOTH_UNKNOWN = const(4)
_FAR = const(5)
_BOTH_P = const(6)

STATE_NAMES = ("WAIT", "IDLE", "NEAR", "BOTH", "BOTH?", "FAR", "BOTH_P")

# machine.Pin trigger values (ESP32 port); used only when the pin object does not expose them.
_IRQ_RISING = const(1)
_IRQ_FALLING = const(2)


class Door:
    """Configuration of one door: its two beam pins and optional door-open pin.

    `number` is the door number sent in the uplink (0..15, schema passenger_count.doors[].door).
    `beam_a` is the outside (street) beam, `beam_b` the inside one. Swap them if wired the other way.
    """

    def __init__(self, number, beam_a, beam_b, door_open=None):
        if not isinstance(number, int) or not 0 <= number <= 15:
            raise ConfigError("door", "door number must be 0..15, got %r" % (number,))
        if beam_a is None:
            raise ConfigError("beam_a", "door %d has no beam A pin" % number)
        if beam_b is None:
            raise ConfigError("beam_b", "door %d has no beam B pin" % number)
        self.number = number
        self.pins = (beam_a, beam_b, door_open)


class BeamCounter:
    """Counts boardings and alightings at up to 4 doors from IR break-beam edges.

    doors           list of Door (1..4)
    debounce_ms     an input level must be stable this long to count as an edge (0..1000 ms)
    simultaneous_ms both beams blocking within this time from idle = simultaneous (direction decided
                    by the side the person leaves through)
    blocked_level   pin level meaning "beam broken" (0 for open-collector receivers with pull-up)
    door_open_level pin level meaning "door open"
    ring_size       events the IRQ ring can hold between two process() calls (each edge = 1 event)
    ticks_us, ticks_diff  clock functions (injected by tests; default: time.ticks_us/ticks_diff)
    attach          install the pin IRQ handlers now (tests may feed edges via `record()` instead)
    hard_irq        request hard IRQs (pin.irq(..., hard=True)); False for ports without them
    """

    def __init__(
        self,
        doors,
        debounce_ms=20,
        simultaneous_ms=5,
        blocked_level=0,
        door_open_level=1,
        ring_size=64,
        ticks_us=ticks_us,
        ticks_diff=ticks_diff,
        attach=True,
        hard_irq=True,
    ):
        if not doors or len(doors) > MAX_DOORS:
            raise ConfigError("doors", "need 1..%d doors, got %d" % (MAX_DOORS, len(doors or ())))
        numbers = [d.number for d in doors]
        for n in numbers:
            if numbers.count(n) > 1:
                raise ConfigError("door", "door number %d used twice" % n)
        if not 0 <= debounce_ms <= 1000:
            raise ConfigError("debounce_ms", "must be 0..1000, got %r" % (debounce_ms,))
        if not 0 <= simultaneous_ms <= 1000:
            raise ConfigError("simultaneous_ms", "must be 0..1000, got %r" % (simultaneous_ms,))
        if blocked_level not in (0, 1):
            raise ConfigError("blocked_level", "must be 0 or 1")
        if door_open_level not in (0, 1):
            raise ConfigError("door_open_level", "must be 0 or 1")
        if not 4 <= ring_size <= 4096:
            raise ConfigError("ring_size", "must be 4..4096, got %r" % (ring_size,))
        self.doors = doors
        self._hard_irq = hard_irq
        self._ticks_us = ticks_us
        self._ticks_diff = ticks_diff
        self._debounce_us = debounce_ms * 1000
        self._simul_us = simultaneous_ms * 1000
        self._blocked = blocked_level
        self._open = door_open_level
        n_ch = len(doors) * _CH_PER_DOOR
        # IRQ ring buffer: preallocated, written only by record().
        self._ring_n = ring_size
        self._ev_ch = bytearray(ring_size)  # channel << 1 | level
        self._ev_t = array("i", [0] * ring_size)  # ticks_us (30-bit on MicroPython: fits int32)
        self._head = 0  # next write (IRQ side)
        self._tail = 0  # next read (process side)
        self.overflows = 0
        # Debounce per channel: raw level + time of its last raw change, and the accepted (stable) level.
        self._raw = bytearray(n_ch)
        self._raw_t = array("i", [0] * n_ch)  # last raw change (stability is measured from here)
        self._first_t = array("i", [0] * n_ch)  # first raw change away from the stable level
        self._stable = bytearray(n_ch)
        # Door state machines.
        nd = len(doors)
        self._state = bytearray(nd)
        self._near = bytearray(nd)  # _CH_A or _CH_B
        self._near_t = array("i", [0] * nd)
        self.boardings = array("i", [0] * nd)
        self.alightings = array("i", [0] * nd)
        self._occupancy = 0
        self._handlers = []
        for i in range(nd):
            pins = doors[i].pins
            for role in (_CH_A, _CH_B, _CH_DOOR):
                ch = i * _CH_PER_DOOR + role
                pin = pins[role]
                if pin is None:  # no door input: the door counts as always open
                    level = self._open
                else:
                    level = pin.value()
                self._raw[ch] = level
                self._stable[ch] = level
            self._state[i] = _WAIT
            self._check_gate(i)
        if attach:
            self.attach()

    # ---- IRQ side -------------------------------------------------------------------------------------

    def attach(self):
        """Install a both-edges IRQ handler on every beam and door pin."""
        for i in range(len(self.doors)):
            for role in (_CH_A, _CH_B, _CH_DOOR):
                pin = self.doors[i].pins[role]
                if pin is None:
                    continue
                trigger = getattr(pin, "IRQ_RISING", _IRQ_RISING) | getattr(pin, "IRQ_FALLING", _IRQ_FALLING)
                handler = self._make_handler(i * _CH_PER_DOOR + role)
                self._handlers.append(handler)  # keep a reference: the IRQ table may hold a weak one
                if self._hard_irq:
                    # Hard IRQ (ESP32 machine.Pin.irq hard=True): ticks are read at the edge, not when
                    # the scheduler gets round to a soft callback, so A/B order stays exact.
                    pin.irq(handler=handler, trigger=trigger, hard=True)
                else:
                    pin.irq(handler=handler, trigger=trigger)

    def detach(self):
        for d in self.doors:
            for pin in d.pins:
                if pin is not None:
                    pin.irq(handler=None)
        self._handlers = []

    def _make_handler(self, ch):
        # Closure built once at attach time; calling it allocates nothing.
        def handler(pin):
            self.record(ch, pin.value(), self._ticks_us())

        return handler

    def record(self, ch, level, t_us):
        """Store one raw edge. IRQ-safe: no allocation, O(1). Full ring: the event is dropped and counted."""
        h = self._head
        nxt = h + 1
        if nxt == self._ring_n:
            nxt = 0
        if nxt == self._tail:
            self.overflows += 1
            return
        self._ev_ch[h] = (ch << 1) | (level & 1)
        self._ev_t[h] = t_us
        self._head = nxt

    # ---- main-loop side -------------------------------------------------------------------------------

    def process(self, now_us=None):
        """Drain the IRQ ring, debounce and run the state machines. Returns the number of events drained.

        Edges whose debounce time has not yet elapsed at `now_us` (default: ticks_us()) stay pending
        until a later call.
        """
        n = 0
        while self._tail != self._head:
            t = self._tail
            v = self._ev_ch[t]
            t_us = self._ev_t[t]
            self._tail = t + 1 if t + 1 < self._ring_n else 0
            n += 1
            self._settle(t_us)
            ch = v >> 1
            level = v & 1
            if level != self._raw[ch]:
                if self._raw[ch] == self._stable[ch]:
                    self._first_t[ch] = t_us  # leaving the stable level: this edge dates the change
                self._raw[ch] = level
                self._raw_t[ch] = t_us
        self._settle(self._ticks_us() if now_us is None else now_us)
        return n

    def _settle(self, now_us):
        # Per door, accept pending levels oldest first while the oldest has been stable for the debounce
        # time at now_us. An older change still bouncing holds back younger ones of the same door, so
        # the state machine always sees A and B edges in the order they began.
        diff = self._ticks_diff
        for i in range(len(self.doors)):
            base = i * _CH_PER_DOOR
            while True:
                oldest = -1
                for ch in range(base, base + _CH_PER_DOOR):
                    if self._raw[ch] != self._stable[ch]:
                        if oldest < 0 or diff(self._first_t[ch], self._first_t[oldest]) < 0:
                            oldest = ch
                if oldest < 0 or diff(now_us, self._raw_t[oldest]) < self._debounce_us:
                    break
                role = oldest - base
                other = base + 1 - role  # the other beam of this door
                if (
                    role != _CH_DOOR
                    and self._raw[other] != self._stable[other]
                    and self._raw[other] == self._raw[oldest]
                    and diff(now_us, self._raw_t[other]) >= self._debounce_us
                    and diff(self._first_t[other], self._first_t[oldest]) < self._simul_us
                ):
                    # Both beams changed the same way within simultaneous_ms: one event, no order.
                    self._stable[oldest] = self._raw[oldest]
                    self._stable[other] = self._raw[other]
                    self._edge_pair(i)
                    continue
                self._stable[oldest] = self._raw[oldest]
                self._edge(i, role, self._first_t[oldest])

    def _blocked_now(self, i, role):
        return self._stable[i * _CH_PER_DOOR + role] == self._blocked

    def _check_gate(self, i):
        # WAIT -> IDLE once the door is open and both beams are clear.
        if self._stable[i * _CH_PER_DOOR + _CH_DOOR] != self._open:
            self._state[i] = _WAIT
        elif self._state[i] == _WAIT and not self._blocked_now(i, _CH_A) and not self._blocked_now(i, _CH_B):
            self._state[i] = _IDLE

    def _edge(self, i, role, t_us):
        if role == _CH_DOOR:
            if self._stable[i * _CH_PER_DOOR + _CH_DOOR] != self._open:
                self._state[i] = _WAIT  # door closed: drop any crossing in progress
            else:
                self._check_gate(i)
            return
        s = self._state[i]
        if s == _WAIT:
            self._check_gate(i)
            return
        blocked = self._blocked_now(i, role)
        a = self._blocked_now(i, _CH_A)
        b = self._blocked_now(i, _CH_B)
        near = self._near[i]
        if s == _IDLE:
            if blocked:
                self._near[i] = role
                self._near_t[i] = t_us
                s = _NEAR
        elif s == _NEAR:
            if role == near and not blocked:
                s = _IDLE  # half crossing or reversal: not counted
            elif role != near and blocked:
                if self._ticks_diff(t_us, self._near_t[i]) < self._simul_us:
                    s = _BOTH_UNKNOWN
                else:
                    s = _BOTH
        elif s == _BOTH:
            if not blocked:
                s = _FAR if role == near else _NEAR
        elif s == _BOTH_UNKNOWN:
            if not blocked:
                if a or b:
                    self._near[i] = role  # the beam left first is the near side
                    s = _FAR
                else:
                    s = _IDLE
        elif s == _FAR:
            if role != near and not blocked:
                self._count(i, near)
                s = _IDLE
            elif role == near and blocked:
                s = _BOTH_P
        elif s == _BOTH_P:
            if not blocked:
                if role != near:
                    self._count(i, near)
                    self._near_t[i] = t_us
                    s = _NEAR
                else:
                    s = _FAR
        if not (a or b):
            # Both beams clear always ends a crossing, whatever path led here.
            s = _IDLE
        self._state[i] = s
        if _DEBUG:
            print("beams: door", self.doors[i].number, "ch", role, "->", STATE_NAMES[s])

    def _edge_pair(self, i):
        # Both beams blocked together from IDLE: direction unknown until one clears. Both cleared
        # together: the crossing ends without a count (the direction cannot be known).
        if self._state[i] == _WAIT:
            self._check_gate(i)
        elif self._blocked_now(i, _CH_A):
            if self._state[i] == _IDLE:
                self._state[i] = _BOTH_UNKNOWN
        else:
            self._state[i] = _IDLE

    def _count(self, i, near):
        if near == _CH_A:
            if self.boardings[i] < COUNT_MAX:
                self.boardings[i] += 1
            if self._occupancy < OCCUPANCY_MAX:
                self._occupancy += 1
        else:
            if self.alightings[i] < COUNT_MAX:
                self.alightings[i] += 1
            if self._occupancy > 0:
                self._occupancy -= 1

    # ---- results --------------------------------------------------------------------------------------

    @property
    def occupancy(self):
        """Estimated passengers on board (0..1000)."""
        return self._occupancy

    def reset_occupancy(self, value=0):
        """Set the occupancy estimate (command: terminus reached, or a downlink with a manual count)."""
        if not isinstance(value, int) or not 0 <= value <= OCCUPANCY_MAX:
            raise ConfigError("occupancy", "must be 0..%d, got %r" % (OCCUPANCY_MAX, value))
        self._occupancy = value

    def state(self, door_index):
        """Name of a door's state machine state (diagnostics)."""
        return STATE_NAMES[self._state[door_index]]

    def door_open(self, door_index):
        return self._stable[door_index * _CH_PER_DOOR + _CH_DOOR] == self._open

    def counts(self):
        """Per-door counters since the last take_counts(): list of dicts in schema order."""
        out = []
        for i in range(len(self.doors)):
            out.append(
                {
                    "door": self.doors[i].number,
                    "boardings": self.boardings[i],
                    "alightings": self.alightings[i],
                }
            )
        return out

    def take_counts(self):
        """counts(), then zero the per-door counters (one uplink interval). Occupancy is kept."""
        out = self.counts()
        for i in range(len(self.doors)):
            self.boardings[i] = 0
            self.alightings[i] = 0
        return out
