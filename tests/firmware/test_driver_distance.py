"""Ultrasonic distance (HC-SR04 / JSN-SR04T trigger-echo, A02YYUW UART) and the bin logic built on
it, on the real MicroPython unix port with simulated pins, pulses and UART frames."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import env_sim_paths  # noqa: F401

# --- speed of sound: c = 331.3 + 0.606 T m/s -----------------------------------------------------------

@pytest.mark.parametrize(
    "temperature_c, c_ms", [(-40, 307.06), (-20, 319.18), (0, 331.3), (20, 343.42), (35, 352.51), (None, 343.42)]
)
def test_speed_of_sound(micropython, temperature_c, c_ms):
    code = f"""
from citynode.drivers.distance import speed_of_sound
print(speed_of_sound({temperature_c!r}))
"""
    assert micropython.eval_json(code) == pytest.approx(c_ms, abs=1e-9)


# --- HC-SR04 / JSN-SR04T: pings scripted as echo durations (us) through SimPulse ----------------------

_HC = """
import json
from citynode_sim.sim import SimClock, SimPin, SimPulse, echo_us
from citynode.drivers import SensorError
from citynode.drivers.distance import BlindZone
from citynode.drivers.hcsr04 import HCSR04
for name, script, temp, model in json.loads({cases!r}):
    durations = [echo_us(d, 20.0) if isinstance(d, int) and d >= 0 else d for d in script]
    trig, echo = SimPin(), SimPin()
    s = HCSR04(trig, echo, SimPulse(durations, repeat_last=False), SimClock(), model=model)
    try:
        out = s.measure(temp)
    except BlindZone as e:
        out = "blind"
    except SensorError as e:
        out = "error"
    print(json.dumps([name, out]))
"""

# name, target distances in mm (echo times computed at 20 degC; -1/-2 = time_pulse_us timeouts),
# air temperature given to the driver, model, expected result
HC_CASES = [
    ("five clean pings", [1000] * 5, 20.0, "hcsr04", 1000),
    ("one multipath outlier", [1000, 1002, 2500, 998, 1001], 20.0, "hcsr04", 1001),
    ("two outliers both sides", [1000, 400, 1003, 1900, 997], 20.0, "hcsr04", 1000),
    ("two lost echoes", [-2, 1000, -1, 1004, 1000], 20.0, "hcsr04", 1000),
    ("three lost echoes", [-2, -2, 1000, -1, 1000], 20.0, "hcsr04", "error"),
    ("nothing answers", [-2] * 5, 20.0, "hcsr04", "error"),
    ("beyond max range dropped", [1500, 1500, 5200, 1500, 5200], 20.0, "hcsr04", 1500),
    ("even count of survivors", [1000, 1010, -2, 1000, 1010], 20.0, "hcsr04", 1005),
    ("scattered, no majority", [500, 900, 1300, 1700, 2100], 20.0, "hcsr04", "error"),
    ("hc-sr04 close target", [30] * 5, 20.0, "hcsr04", 30),
    ("jsn-sr04t blind zone", [100, 120, 110, 1000, 1000], 20.0, "jsn-sr04t", "blind"),
    ("jsn-sr04t two blind pings", [100, 120, 1000, 1000, 1000], 20.0, "jsn-sr04t", 1000),
    # same echo time (made at 20 degC for 1000 mm) read at other temperatures: d scales with c(T)
    ("cold air shortens", [1000] * 5, -10.0, "hcsr04", 947),  # 5824 us echo * 325.24 / 2000
    ("hot air lengthens", [1000] * 5, 35.0, "hcsr04", 1027),  # 5824 us echo * 352.51 / 2000
]


def test_trigger_echo_table(micropython):
    code = _HC.format(cases=json.dumps([c[:4] for c in HC_CASES]))
    results = dict(json.loads(line) for line in micropython.run(code).strip().splitlines())
    assert len(results) == len(HC_CASES)
    for name, *_, expected in HC_CASES:
        assert results[name] == expected, name


def test_trigger_waveform_and_ping_spacing(micropython):
    code = """
import json
from citynode_sim.sim import SimClock, SimPin, SimPulse, echo_us
from citynode.drivers.hcsr04 import HCSR04
clock = SimClock()
trig, echo = SimPin(), SimPin()
pulse = SimPulse([echo_us(800)])
s = HCSR04(trig, echo, pulse, clock, pings=3, interval_ms=60)
d = s.measure(20.0)
print(json.dumps([d, trig.written, pulse.calls, clock.now_us, s.timeout_us()]))
"""
    d, written, calls, now_us, timeout = micropython.eval_json(code)
    assert d == 800
    assert written == [0] + [0, 1, 0] * 3  # idle low, then a high pulse per ping
    assert calls == 3
    assert now_us == 2 * 60000 + 3 * 22  # two 60 ms gaps (HC-SR04: >= 60 ms cycle), 2 + 20 us per trigger
    assert timeout == 31264  # 2 x 4000 mm at 307.06 m/s (-40 degC) + 20 %


def test_time_pulse_us_raising_counts_as_no_echo(micropython):
    code = """
import json
from citynode_sim.sim import SimClock, SimPin
from citynode.drivers import SensorError
from citynode.drivers.hcsr04 import HCSR04
def broken(pin, level, timeout):
    raise OSError(110)
try:
    HCSR04(SimPin(), SimPin(), broken, SimClock()).measure()
    print(json.dumps("no error"))
except SensorError as e:
    print(json.dumps([e.sensor, str(e)]))
"""
    assert micropython.eval_json(code) == ["hcsr04", "hcsr04: 0 of 5 pings usable (need 3)"]


# --- A02YYUW UART frames -------------------------------------------------------------------------------

_A02 = """
import json
from citynode_sim.sim import SimClock, SimUART
from citynode.drivers import SensorError
from citynode.drivers.a02yyuw import A02YYUW
for name, hexbytes in json.loads({cases!r}):
    clock = SimClock()
    s = A02YYUW(SimUART(), clock, pings=3)
    s.uart.feed(bytes.fromhex(hexbytes))
    try:
        out = s.measure(20.0, flush=False)  # the fed bytes are the test input, not a stale backlog
    except SensorError as e:
        out = "error"
    print(json.dumps([name, out, s.bad_checksums]))
"""

F1000 = "FF 03 E8 EA"  # 1000 mm: 0xFF + 0x03 + 0xE8 = 0x1EA -> 0xEA
F1010 = "FF 03 F2 F4"
F_BAD = "FF 03 E8 EB"
A02_CASES = [
    ("three frames", f"{F1000} {F1010} {F1000}", 1000, 0),
    ("garbage before frames", f"00 13 E8 {F1000} {F1000} {F1010}", 1000, 0),
    ("bad checksum skipped", f"{F_BAD} {F1010} {F1010} {F1010}", 1010, 1),
    ("header swallowed by a bad frame", f"FF 03 FF 03 E8 EA {F1000} {F1000}", 1000, 1),
    ("too few frames", f"{F1000}", "error", 0),
    ("no-echo zeros", "FF 00 00 FF FF 00 00 FF " + F1000, "error", 0),
]


def test_a02yyuw_frame_table(micropython):
    code = _A02.format(cases=json.dumps([[c[0], c[1].replace(" ", "")] for c in A02_CASES]))
    results = {r[0]: r[1:] for r in (json.loads(line) for line in micropython.run(code).strip().splitlines())}
    for name, _, expected, bad in A02_CASES:
        assert results[name] == [expected, bad], name


def test_a02yyuw_streaming_sim_with_a_flaky_line(micropython):
    code = """
import json
from citynode_sim.sim import SimClock
from citynode_sim.simdev import SimA02YYUW
from citynode.drivers.a02yyuw import A02YYUW
clock = SimClock()
u = SimA02YYUW([812, 815, 2400, 811, 813], clock=clock, inject=[b"\\x00\\xff"], corrupt=[1], chunk=3)
print(json.dumps(A02YYUW(u, clock, pings=5).measure(20.0)))
"""
    # 812 arrives during the backlog flush; 815 is corrupted; 2400 is rejected as an outlier;
    # the median of 811, 813, 813, 813 (the script's last value repeats) is 813
    assert micropython.eval_json(code) == 813


# --- fill level and the bin monitor ----------------------------------------------------------------------

# bin 1000 mm deep, sensor 300 mm above the full line
FILL_CASES = [
    ("empty", 1300, 0),
    ("full", 300, 100),
    ("half", 800, 50),
    ("one third rounds", 967, 33),
    ("overfull above the rim", 250, 100),
    ("echo below the bottom", 1450, 0),
    ("just above empty", 1295, 1),
]


@pytest.mark.parametrize("name, distance_mm, expected", FILL_CASES, ids=[c[0] for c in FILL_CASES])
def test_fill_level(micropython, name, distance_mm, expected):
    code = f"""
from citynode.drivers.bin import fill_level
print(fill_level({distance_mm}, 1000, 300))
"""
    assert micropython.eval_json(code) == expected


_MONITOR = """
import json
from citynode_sim.sim import SimClock, SimPin, SimPulse, echo_us
from citynode.drivers.hcsr04 import HCSR04
from citynode.drivers.bin import BinMonitor, FireAlarm, TiltSwitch
clock = SimClock()
pulse = SimPulse()
tilt_pin = SimPin()
m = BinMonitor(HCSR04(SimPin(), SimPin(), pulse, clock, model="jsn-sr04t"), 1000, 300,
               tilt=TiltSwitch(tilt_pin, clock), fire_alarm=FireAlarm(65, 5))
for distances, temp, tilt_levels in json.loads({steps!r}):
    pulse.durations = [d if d < 0 else echo_us(d, temp if temp is not None else 20.0) for d in distances]
    tilt_pin.script = tilt_levels
    print(json.dumps(m.measure(temp)))
"""


def test_bin_monitor_sequence(micropython):
    steps = [
        ([1300] * 5, 20.0, [0] * 5),  # empty bin, upright
        ([800] * 5, 21.0, [1, 0, 0, 1, 0]),  # half full, tilt switch rattles: not tilted
        ([260] * 5, 22.0, [1, 1, 0, 1, 1]),  # overfull, tipped over
        ([100] * 5, 70.0, [0] * 5),  # sensor covered (blind zone), fire: urgent uplink
        ([-2] * 5, 72.0, [0] * 5),  # no echo at all, still burning: not urgent again
        ([800] * 5, 59.0, [0] * 5),  # cooled below threshold - hysteresis: alarm clears
        ([800] * 5, 66.0, [0] * 5),  # rises again: urgent again
        ([800] * 5, None, [0] * 5),  # no temperature: distance at 20 degC, temperature in faults
    ]
    code = _MONITOR.format(steps=json.dumps(steps))
    out = [json.loads(line) for line in micropython.run(code).strip().splitlines()]
    assert [(o.get("fill_level"), o.get("distance")) for o in out] == [
        (0, 1300), (50, 800), (100, 260), (100, None), (None, None), (50, 800), (50, 800), (50, 800)
    ]
    assert [o["tilt"] for o in out] == [False, False, True, False, False, False, False, False]
    assert [o["urgent"] for o in out] == [False, False, False, True, False, False, True, False]
    assert [o["fire"] for o in out] == [False, False, False, True, True, False, True, True]
    assert out[2]["overfull"] is True
    assert out[3]["blind_zone"] is True and out[3]["faults"] == ["distance"]
    assert out[4]["faults"] == ["distance", "fill_level"]
    assert out[7]["faults"] == ["temperature"] and "temperature" not in out[7]


@pytest.mark.parametrize(
    "model, depth, offset, field",
    [
        ("jsn-sr04t", 1000, 100, "mount_offset_mm"),  # full line inside the 250 mm blind zone
        ("hcsr04", 3900, 300, "bin_depth_mm"),  # bottom beyond the 4 m range
        ("hcsr04", 10, 300, "bin_depth_mm"),
        ("hcsr04", 1000, -5, "mount_offset_mm"),
    ],
)
def test_impossible_mounting_fails_early_naming_the_field(model, depth, offset, field):
    from citynode_sim.sim import SimClock, SimPin, SimPulse

    from citynode.drivers import ConfigError
    from citynode.drivers.bin import BinMonitor
    from citynode.drivers.hcsr04 import HCSR04

    with pytest.raises(ConfigError) as info:
        BinMonitor(HCSR04(SimPin(), SimPin(), SimPulse(), SimClock(), model=model), depth, offset)
    assert info.value.field == field


def test_unknown_ultrasonic_model_is_a_config_error():
    from citynode_sim.sim import SimPin, SimPulse

    from citynode.drivers import ConfigError
    from citynode.drivers.hcsr04 import HCSR04

    with pytest.raises(ConfigError, match="model"):
        HCSR04(SimPin(), SimPin(), SimPulse(), model="srf05")
    assert HCSR04(SimPin(), SimPin(), SimPulse(), model="jsn_sr04t").min_mm == 250  # config spelling
