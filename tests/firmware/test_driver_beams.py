"""Break-beam passenger counter (citynode.drivers.beams) on the real MicroPython unix port.

Each case is a sequence of pin edges with times in ms: "A+" = beam A (outside) blocked, "A-" = cleared,
"B+"/"B-" the inside beam, "D+"/"D-" door open/closed. Pins are small fakes with the machine.Pin API
(value(), irq(handler=, trigger=)); edges are delivered through the IRQ handler the driver installed, with
an injected tick clock, so the whole path IRQ -> ring buffer -> debounce -> state machine is exercised.
Debounce is 20 ms unless a case says otherwise.
"""

from __future__ import annotations

import json

import pytest

HARNESS = r"""
import json
from citynode.drivers.beams import BeamCounter, Door

class Clock:
    def __init__(self):
        self.now = 0
    def ticks_us(self):
        return self.now
    def ticks_diff(self, a, b):
        return a - b

class FakePin:
    IRQ_RISING = 1
    IRQ_FALLING = 2
    def __init__(self, level):
        self.level = level
        self.handler = None
        self.trigger = None
    def value(self):
        return self.level
    def irq(self, handler=None, trigger=None, hard=False):
        self.handler = handler
        self.trigger = trigger
        self.hard = hard
    def fire(self, level):
        self.level = level
        if self.handler:
            self.handler(self)

def make(n_doors=1, door_pin=False, door_open=True, **kw):
    clock = Clock()
    doors = []
    pins = []
    for i in range(n_doors):
        p = {"A": FakePin(1), "B": FakePin(1), "D": FakePin(1 if door_open else 0) if door_pin else None}
        pins.append(p)
        doors.append(Door(i, p["A"], p["B"], p["D"]))
    bc = BeamCounter(doors, ticks_us=clock.ticks_us, ticks_diff=clock.ticks_diff, **kw)
    return bc, pins, clock

def play(bc, pins, clock, seq, door=0):
    # seq: list of (t_ms, "A+"), or (t_ms, "A+", door_index)
    for ev in seq:
        t_ms, what = ev[0], ev[1]
        d = ev[2] if len(ev) > 2 else door
        clock.now = int(t_ms * 1000)
        pin = pins[d][what[0]]
        if what[0] == "D":
            pin.fire(1 if what[1] == "+" else 0)
        else:
            pin.fire(0 if what[1] == "+" else 1)  # blocked = LOW (open-collector receiver)
        if len(ev) > 3:
            bc.process(clock.now)
    clock.now += 1000000
    bc.process(clock.now)
    return bc.counts()
"""


def run_cases(micropython, cases: dict, setup: str = "make()") -> dict:
    code = HARNESS + (
        "cases = json.loads(%r)\n"
        "out = {}\n"
        "for name in cases:\n"
        "    bc, pins, clock = %s\n"
        "    c = play(bc, pins, clock, cases[name])\n"
        "    out[name] = [c[0]['boardings'], c[0]['alightings'], bc.occupancy, bc.state(0)]\n"
        "print(json.dumps(out))\n"
    ) % (json.dumps(cases), setup)
    return micropython.eval_json(code)


# name: (events, expected boardings, expected alightings)
DIRECTION_CASES = {
    "boarding": ([(0, "A+"), (100, "B+"), (300, "A-"), (400, "B-")], 1, 0),
    "alighting": ([(0, "B+"), (100, "A+"), (300, "B-"), (400, "A-")], 0, 1),
    "reversal A, A+B, back out through A": ([(0, "A+"), (100, "B+"), (300, "B-"), (400, "A-")], 0, 0),
    "reversal from inside": ([(0, "B+"), (100, "A+"), (300, "A-"), (400, "B-")], 0, 0),
    "half crossing A only": ([(0, "A+"), (250, "A-")], 0, 0),
    "half crossing B only": ([(0, "B+"), (250, "B-")], 0, 0),
    "step back after passing A, then leave inside": (
        [(0, "A+"), (100, "B+"), (300, "A-"), (350, "A+"), (450, "A-"), (600, "B-")],
        1,
        0,
    ),
    "bounce within debounce on A then boarding": (
        [(0, "A+"), (3, "A-"), (6, "A+"), (9, "A-"), (12, "A+"), (100, "B+"), (300, "A-"), (400, "B-")],
        1,
        0,
    ),
    "A bounces while B blocks cleanly: order kept": (
        [(0, "A+"), (2, "A-"), (4, "A+"), (10, "B+"), (300, "A-"), (400, "B-")],
        1,
        0,
    ),
    "glitch shorter than debounce is nothing": ([(0, "A+"), (5, "A-"), (50, "B+"), (60, "B-")], 0, 0),
    "whole pattern inside debounce is noise": ([(0, "A+"), (5, "B+"), (8, "A-"), (12, "B-")], 0, 0),
    "two people back to back boarding": (
        [
            (0, "A+"),
            (100, "B+"),
            (300, "A-"),
            (350, "A+"),
            (400, "B-"),
            (450, "B+"),
            (650, "A-"),
            (750, "B-"),
        ],
        2,
        0,
    ),
    "two people back to back alighting": (
        [
            (0, "B+"),
            (100, "A+"),
            (300, "B-"),
            (350, "B+"),
            (400, "A-"),
            (450, "A+"),
            (650, "B-"),
            (750, "A-"),
        ],
        0,
        2,
    ),
    "three boardings in a row with gaps": (
        [(t + 1000 * k, e) for k in range(3) for t, e in [(0, "A+"), (100, "B+"), (300, "A-"), (400, "B-")]],
        3,
        0,
    ),
    "simultaneous blocking, leave inside": ([(0, "A+"), (1, "B+"), (300, "A-"), (400, "B-")], 1, 0),
    "simultaneous blocking, leave outside": ([(0, "B+"), (0, "A+"), (300, "B-"), (400, "A-")], 0, 1),
    "simultaneous blocking and clearing": ([(0, "A+"), (0, "B+"), (300, "A-"), (300, "B-")], 0, 0),
    "both clear at once after A then B": ([(0, "A+"), (100, "B+"), (300, "A-"), (300, "B-")], 0, 0),
}


@pytest.fixture(scope="module")
def direction_results(micropython):
    return run_cases(micropython, {k: v[0] for k, v in DIRECTION_CASES.items()})


@pytest.mark.parametrize("name", list(DIRECTION_CASES))
def test_direction_state_machine(direction_results, name):
    events, boardings, alightings = DIRECTION_CASES[name]
    got_b, got_a, occupancy, state = direction_results[name]
    assert (got_b, got_a) == (boardings, alightings), f"{name}: events {events}"
    assert occupancy == max(0, boardings - alightings)
    assert state == "IDLE", "every case ends with both beams clear"


# Door-open gating: the counter starts with a door-open pin that is closed (D low).
GATING_CASES = {
    "door closed: boarding not counted": ([(0, "A+"), (100, "B+"), (300, "A-"), (400, "B-")], 0, 0),
    "door opens then boarding counted": (
        [(0, "D+"), (100, "A+"), (200, "B+"), (400, "A-"), (500, "B-")],
        1,
        0,
    ),
    "door closes mid-crossing: dropped": (
        [(0, "D+"), (100, "A+"), (200, "B+"), (300, "D-"), (400, "A-"), (500, "B-")],
        0,
        0,
    ),
    "door opens while A blocked: that crossing dropped, next counted": (
        [
            (0, "A+"),
            (50, "D+"),
            (200, "B+"),
            (400, "A-"),
            (500, "B-"),
            (1000, "B+"),
            (1100, "A+"),
            (1300, "B-"),
            (1400, "A-"),
        ],
        0,
        1,
    ),
    "door bounce shorter than debounce keeps counting": (
        [(0, "D+"), (100, "A+"), (200, "B+"), (250, "D-"), (255, "D+"), (400, "A-"), (500, "B-")],
        1,
        0,
    ),
}


def test_door_open_gating(micropython):
    res = run_cases(
        micropython, {k: v[0] for k, v in GATING_CASES.items()}, setup="make(door_pin=True, door_open=False)"
    )
    for name, (_events, boardings, alightings) in GATING_CASES.items():
        assert res[name][:2] == [boardings, alightings], name


def test_irq_handlers_on_both_edges_and_allocation_free(micropython):
    out = micropython.eval_json(
        HARNESS
        + r"""
import micropython
bc, pins, clock = make(door_pin=True)
trig = [pins[0][k].trigger for k in "ABD"]
hard = [pins[0][k].hard for k in "ABD"]
h = pins[0]["A"].handler
p = pins[0]["A"]
def fire_locked():
    # Like an IRQ: the heap is locked, any allocation raises MemoryError.
    i = 0
    micropython.heap_lock()
    try:
        while i < 10:
            clock.now = i * 1000
            h(p)
            i += 1
    except MemoryError:
        pass
    micropython.heap_unlock()
    return i == 10
ok = fire_locked()
print(json.dumps({"trig": trig, "hard": hard, "alloc_free": ok, "drained": bc.process(clock.now)}))
"""
    )
    assert out["trig"] == [3, 3, 3], "IRQ_RISING | IRQ_FALLING on beam A, beam B and the door pin"
    assert out["hard"] == [True, True, True], "hard IRQs: the edge time is read in the interrupt"
    assert out["alloc_free"], "the IRQ handler allocated on the heap"
    assert out["drained"] == 10


def test_ring_overflow_is_counted_not_fatal(micropython):
    out = micropython.eval_json(
        HARNESS
        + r"""
bc, pins, clock = make(ring_size=4)
for i in range(10):
    clock.now = i * 1000
    pins[0]["A"].fire(i % 2)
n = bc.process(clock.now)
print(json.dumps([n, bc.overflows]))
"""
    )
    assert out == [3, 7], "a ring of 4 holds 3 events; the other 7 are dropped and counted"


def test_saturation_occupancy_clamp_reset_and_take_counts(micropython):
    out = micropython.eval_json(
        HARNESS
        + r"""
BOARD = [(0, "A+"), (100, "B+"), (300, "A-"), (400, "B-")]
ALIGHT = [(0, "B+"), (100, "A+"), (300, "B-"), (400, "A-")]
r = {}
bc, pins, clock = make()
play(bc, pins, clock, [(t + clock.now // 1000, e) for t, e in ALIGHT])
r["alight_at_zero_occupancy"] = bc.occupancy
bc.boardings[0] = 65534
for k in range(2):
    play(bc, pins, clock, [(t + clock.now // 1000, e) for t, e in BOARD])
r["saturated"] = bc.counts()[0]["boardings"]
r["occupancy"] = bc.occupancy
r["taken"] = bc.take_counts()
r["after_take"] = bc.counts()
r["occupancy_after_take"] = bc.occupancy
bc.reset_occupancy(999)
play(bc, pins, clock, [(t + clock.now // 1000, e) for t, e in BOARD])
play(bc, pins, clock, [(t + clock.now // 1000, e) for t, e in BOARD])
r["occupancy_clamped"] = bc.occupancy
bc.reset_occupancy()
r["occupancy_reset"] = bc.occupancy
try:
    bc.reset_occupancy(1001)
except ValueError as e:
    r["bad_reset"] = str(e)
print(json.dumps(r))
"""
    )
    assert out["alight_at_zero_occupancy"] == 0
    assert out["saturated"] == 65535
    assert out["occupancy"] == 2
    assert out["taken"] == [{"door": 0, "boardings": 65535, "alightings": 1}]
    assert out["after_take"] == [{"door": 0, "boardings": 0, "alightings": 0}]
    assert out["occupancy_after_take"] == 2
    assert out["occupancy_clamped"] == 1000
    assert out["occupancy_reset"] == 0
    assert "occupancy" in out["bad_reset"]


def test_four_doors_count_independently(micropython):
    out = micropython.eval_json(
        HARNESS
        + r"""
bc, pins, clock = make(n_doors=4)
seq = [(0, "A+", 0), (10, "B+", 1), (50, "A+", 1), (100, "B+", 0), (150, "B+", 2), (160, "B-", 2),
       (300, "A-", 0), (310, "B-", 1), (400, "B-", 0), (420, "A-", 1),
       (500, "A+", 3), (600, "B+", 3), (700, "A-", 3), (800, "B-", 3)]
print(json.dumps([play(bc, pins, clock, seq), bc.occupancy]))
"""
    )
    counts, occupancy = out
    assert counts == [
        {"door": 0, "boardings": 1, "alightings": 0},
        {"door": 1, "boardings": 0, "alightings": 1},
        {"door": 2, "boardings": 0, "alightings": 0},
        {"door": 3, "boardings": 1, "alightings": 0},
    ]
    assert occupancy == 1


@pytest.mark.parametrize(
    "setup, field",
    [
        ("make(n_doors=5)", "doors"),
        ("make(debounce_ms=5000)", "debounce_ms"),
        ("make(blocked_level=2)", "blocked_level"),
        ("make(ring_size=2)", "ring_size"),
        ("(Door(16, FakePin(1), FakePin(1)),)", "door"),
        ("(Door(0, None, FakePin(1)),)", "beam_a"),
        ("(BeamCounter([Door(1, FakePin(1), FakePin(1)), Door(1, FakePin(1), FakePin(1))]),)", "door"),
    ],
)
def test_bad_configuration_names_the_field(micropython, setup, field):
    out = micropython.eval_json(
        HARNESS + "try:\n    %s\n    print(json.dumps(None))\n"
        "except ValueError as e:\n    print(json.dumps(getattr(e, 'field', str(e))))\n" % setup
    )
    assert out == field


def test_imports_under_cpython():
    import importlib
    import sys

    from gateway.paths import firmware_dir

    sys.path.insert(0, str(firmware_dir() / "lib"))
    try:
        beams = importlib.import_module("citynode.drivers.beams")
        assert beams.COUNT_MAX == 65535
        assert beams.ticks_diff(5, (1 << 30) - 5) == 10, "30-bit tick wrap like MicroPython"
    finally:
        sys.path.remove(str(firmware_dir() / "lib"))


def test_process_is_allocation_free(micropython):
    # The main loop drains the ring every cycle for years: processing must not grow or churn the heap.
    out = micropython.eval_json(
        HARNESS
        + r"""
import micropython
bc, pins, clock = make(n_doors=4)
seq = [(0, 0, 0), (100000, 1, 0), (300000, 0, 1), (400000, 1, 1)]   # beam A=ch 0, B=ch 1 of door 0
for k in range(5):
    for t, ch, level in seq:
        bc.record(ch, level, t + k * 1000000)
def run():
    micropython.heap_lock()
    try:
        bc.process(10000000)
        ok = True
    except MemoryError:
        ok = False
    micropython.heap_unlock()
    return ok
ok = run()
print(json.dumps([ok, bc.counts()[0]["boardings"]]))
"""
    )
    assert out == [True, 5]
