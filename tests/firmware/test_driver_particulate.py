"""SDS011 and PMS5003 drivers on the real MicroPython unix port: frames, checksums, resync after
garbage, partial frames, commands, sleep/wake and warm-up, failures as SensorError."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import env_sim_paths  # noqa: F401  (firmware/lib on sys.path for CPython-side checks)

# --- frame parsing: one table per sensor, run in a single MicroPython process per table -------------

_PARSE = """
import json
from citynode_sim.sim import SimUART, SimClock
from citynode.drivers import SensorError
from citynode.drivers.{module} import {cls}
for hexbytes, chunk in json.loads({cases!r}):
    s = {cls}(SimUART(bytes.fromhex(hexbytes), chunk=chunk), SimClock(), timeout_ms=200)
    got = []
    while True:
        try:
            got.append(s.read_frame())
        except SensorError:
            break
    print(json.dumps([got, s.bad_checksums, s.skipped_bytes]))
"""


def _parse_table(micropython, module, cls, cases):
    code = _PARSE.format(module=module, cls=cls, cases=json.dumps([[c[1].replace(" ", ""), c[2]] for c in cases]))
    return [json.loads(line) for line in micropython.run(code).strip().splitlines()]


# Nova SDS011 protocol V1.3 example data frame: PM2.5 0x04D4 = 123.6, PM10 0x0A3A = 261.8, id A160
SDS_GOOD = "AA C0 D4 04 3A 0A A1 60 1D AB"
SDS_BAD_CS = "AA C0 D4 04 3A 0A A1 60 1E AB"
SDS_SMALL = "AA C0 64 00 96 00 A1 60 FB AB"  # 10.0 / 15.0
SDS_REPLY = "AA C5 06 01 00 01 A1 60 09 AB"  # reply to "set work": not a data frame

SDS_CASES = [
    # name, bytes, chunk, expected values, bad checksums, skipped bytes
    ("datasheet frame", SDS_GOOD, 0, [{"pm2_5": 123.6, "pm10": 261.8}], 0, 0),
    ("bad checksum", SDS_BAD_CS, 0, [], 1, 10),
    ("garbage then frame", "00 FF 13 AB " + SDS_GOOD, 0, [{"pm2_5": 123.6, "pm10": 261.8}], 0, 4),
    ("false header in garbage", "AA AA " + SDS_SMALL, 0, [{"pm2_5": 10.0, "pm10": 15.0}], 0, 2),
    ("bad frame then good frame", SDS_BAD_CS + " " + SDS_SMALL, 0, [{"pm2_5": 10.0, "pm10": 15.0}], 1, 10),
    ("split into 3-byte reads", SDS_GOOD + " " + SDS_SMALL, 3,
     [{"pm2_5": 123.6, "pm10": 261.8}, {"pm2_5": 10.0, "pm10": 15.0}], 0, 0),
    ("truncated frame", "AA C0 D4 04 3A", 0, [], 0, 0),
    ("wrong tail byte", "AA C0 D4 04 3A 0A A1 60 1D AA", 0, [], 0, 9),  # final AA may start a frame
    ("command reply is skipped", SDS_REPLY + " " + SDS_SMALL, 0, [{"pm2_5": 10.0, "pm10": 15.0}], 0, 0),
]


def test_sds011_frame_table(micropython):
    results = _parse_table(micropython, "sds011", "SDS011", SDS_CASES)
    assert len(results) == len(SDS_CASES)
    for (name, _, _, values, bad, skipped), (got, got_bad, got_skipped) in zip(SDS_CASES, results):
        assert (got, got_bad, got_skipped) == (values, bad, skipped), name


PMS_GOOD = ("42 4D 00 1C 00 05 00 08 00 0B 00 05 00 08 00 0B 03 84 01 0E 00 3C 00 08 00 02 00 01 97 00 02 4F")
PMS_BAD_CS = PMS_GOOD[:-2] + "50"
PMS_ACK = "42 4D 00 04 E1 00 01 74"
PMS_VALUES = {"pm1_0": 5, "pm2_5": 8, "pm10": 11}

PMS_CASES = [
    ("manual layout frame", PMS_GOOD, 0, [PMS_VALUES], 0, 0),
    ("bad checksum", PMS_BAD_CS, 0, [], 1, 31),  # the last byte waits: it could start a header
    ("garbage then frame", "4D 42 00 13 " + PMS_GOOD, 0, [PMS_VALUES], 0, 4),
    ("impossible length resyncs", "42 4D 01 00 " + PMS_GOOD, 0, [PMS_VALUES], 0, 4),
    ("bad frame then good frame", PMS_BAD_CS + " " + PMS_GOOD, 0, [PMS_VALUES], 1, 32),
    ("split into 5-byte reads", PMS_GOOD + " " + PMS_GOOD, 5, [PMS_VALUES, PMS_VALUES], 0, 0),
    ("truncated frame", PMS_GOOD[:39], 0, [], 0, 0),
    ("command ack is skipped", PMS_ACK + " " + PMS_GOOD, 0, [PMS_VALUES], 0, 0),
]


def test_pms5003_frame_table(micropython):
    results = _parse_table(micropython, "pms5003", "PMS5003", PMS_CASES)
    assert len(results) == len(PMS_CASES)
    for (name, _, _, values, bad, skipped), (got, got_bad, got_skipped) in zip(PMS_CASES, results):
        assert (got, got_bad, got_skipped) == (values, bad, skipped), name


# --- commands: byte-exact against the protocol documents ---------------------------------------------

@pytest.mark.parametrize(
    "call, frame",
    [
        ("sds011.command(6, 1, 0)", "aab406010000000000000000000000ffff05ab"),  # sleep (V1.3 example)
        ("sds011.command(6, 1, 1)", "aab406010100000000000000000000ffff06ab"),  # work
        ("sds011.command(4)", "aab404000000000000000000000000ffff02ab"),  # query data
        ("sds011.command(2, 1, 1)", "aab402010100000000000000000000ffff02ab"),  # query reporting mode
        ("pms5003.command(0xE1, 0)", "424de100000170"),  # passive mode
        ("pms5003.command(0xE1, 1)", "424de100010171"),  # active mode
        ("pms5003.command(0xE2)", "424de200000171"),  # read in passive mode
        ("pms5003.command(0xE4, 0)", "424de400000173"),  # sleep
        ("pms5003.command(0xE4, 1)", "424de400010174"),  # wake up
    ],
)
def test_command_frames(micropython, call, frame):
    code = f"""
import json
from citynode.drivers import sds011, pms5003
print(json.dumps({call}.hex()))
"""
    assert micropython.eval_json(code) == frame


# --- whole readings through the simulated sensors ----------------------------------------------------

_READ = """
import json
from citynode_sim.sim import SimClock
from citynode_sim.simdev import SimSDS011, SimPMS5003
from citynode.drivers import SensorError
from citynode.drivers.sds011 import SDS011
from citynode.drivers.pms5003 import PMS5003
clock = SimClock()
{setup}
try:
    out = s.read()
except SensorError as e:
    out = {{"error": str(e)}}
print(json.dumps([out, clock.ticks_ms(), u.sleeping, u.commands, s.bad_checksums]))
"""


def _read(micropython, setup):
    return micropython.eval_json(_READ.format(setup=setup))


def test_sds011_reading_wakes_warms_up_averages_and_sleeps(micropython):
    out, t_ms, sleeping, commands, bad = _read(micropython, """
u = SimSDS011([(12.0, 20.0), (13.0, 21.0), (14.0, 25.0)], clock=clock)
s = SDS011(u, clock, warmup_s=30, samples=3, sample_interval_ms=1000)
""")
    assert out == {"pm2_5": 13.0, "pm10": 22.0}
    assert sleeping is True
    assert commands[:2] == [6, 2]  # work, then query reporting mode
    assert commands[2:] == [4, 4, 4, 6]  # three queries, then sleep
    assert 32000 <= t_ms < 40000  # 30 s warm-up + 2 x 1 s between samples (virtual time)


def test_sds011_retries_a_missed_wake_and_survives_garbage_and_corruption(micropython):
    out, _, sleeping, commands, bad = _read(micropython, """
u = SimSDS011([(5.0, 9.0)], clock=clock, drop_first_wake=True, inject=[b"\\x00\\xaa\\x13", b"\\xab\\xab"],
              corrupt=[0], chunk=4)
s = SDS011(u, clock, warmup_s=30, samples=2)
""")
    assert out == {"pm2_5": 5.0, "pm10": 9.0}
    assert commands[:2] == [6, 6]  # the first work command was ignored by the sleeping sensor
    assert bad == 1 and sleeping is True


def test_pms5003_reading_uses_passive_mode_and_sleeps(micropython):
    out, t_ms, sleeping, commands, bad = _read(micropython, """
u = SimPMS5003([(4, 7, 12), (6, 9, 16)], chunk=7)  # no clock: no active-mode stream while warming up
s = PMS5003(u, clock, warmup_s=30, samples=2)
""")
    assert out == {"pm1_0": 5.0, "pm2_5": 8.0, "pm10": 14.0}
    assert commands == [[0xE4, 1], [0xE1, 0], [0xE2, 0], [0xE2, 0], [0xE4, 0]]
    assert sleeping is True and t_ms >= 30000


@pytest.mark.parametrize("sensor", ["SimSDS011", "SimPMS5003"])
def test_dead_sensor_raises_sensor_error_not_a_crash(micropython, sensor):
    driver = "SDS011" if sensor == "SimSDS011" else "PMS5003"
    out, *_ = _read(micropython, f"""
u = {sensor}(clock=clock, dead=True)
s = {driver}(u, clock)
""")
    assert "error" in out and out["error"].startswith(driver.lower())


def test_persistently_corrupt_answers_give_up_after_retries(micropython):
    out, _, sleeping, commands, bad = _read(micropython, """
u = SimPMS5003([(4, 7, 12)], clock=clock, corrupt=range(10))
s = PMS5003(u, clock, samples=1)
""")
    assert "no valid frame" in out["error"]
    assert bad == 3  # one per attempt
    assert commands[-1] == [0xE4, 0]  # the laser is put to sleep even after a failure


def test_a_lost_sample_is_left_out_of_the_average(micropython):
    code = """
import json
from citynode_sim.sim import SimClock
from citynode_sim.simdev import SimSDS011
from citynode.drivers.sds011 import SDS011
clock = SimClock()
u = SimSDS011([(10.0, 20.0), (99.0, 99.0), (99.0, 99.0), (99.0, 99.0), (12.0, 22.0)], corrupt=[1, 2, 3])
s = SDS011(u, clock, samples=2)
print(json.dumps([s.read(), s.last_samples, s.bad_checksums]))
"""
    # sample 1: 10/20; sample 2: three corrupted answers, then given up; only one sample averaged
    assert micropython.eval_json(code) == [{"pm2_5": 10.0, "pm10": 20.0}, 1, 3]


def test_no_second_warm_up_while_awake(micropython):
    code = """
import json
from citynode_sim.sim import SimClock
from citynode_sim.simdev import SimSDS011
from citynode.drivers.sds011 import SDS011
clock = SimClock()
s = SDS011(SimSDS011([(1.0, 2.0)], clock=clock), clock, warmup_s=30, samples=1, sleep_after=False)
s.read()
t1 = clock.ticks_ms()
s.read()
print(json.dumps([t1, clock.ticks_ms() - t1]))
"""
    t1, t2 = micropython.eval_json(code)
    assert t1 >= 30000 and t2 < 1000


def test_random_values_are_repeatable_for_a_seed(micropython):
    code = """
import json
from citynode_sim.sim import SimClock
from citynode_sim.simdev import SimPMS5003
from citynode.drivers.pms5003 import PMS5003
out = []
for seed in (7, 7, 8):
    clock = SimClock()
    out.append(PMS5003(SimPMS5003(seed=seed, clock=clock), clock, samples=2).read())
print(json.dumps(out))
"""
    a, b, c = micropython.eval_json(code)
    assert a == b and a != c


@pytest.mark.parametrize(
    "kwargs, field", [({"samples": 0}, "samples"), ({"warmup_s": -1}, "warmup_s"), ({"timeout_ms": 10}, "timeout_ms")]
)
def test_bad_configuration_names_the_field(kwargs, field):
    from citynode_sim.sim import SimClock, SimUART

    from citynode.drivers import ConfigError
    from citynode.drivers.sds011 import SDS011

    with pytest.raises(ConfigError) as info:
        SDS011(SimUART(), SimClock(), **kwargs)
    assert info.value.field == field


def test_unknown_particulate_sensor_is_a_config_error():
    from citynode_sim.sim import SimClock, SimUART

    from citynode.drivers import ConfigError
    from citynode.drivers.particulate import particulate_sensor

    with pytest.raises(ConfigError, match="particulate"):
        particulate_sensor("hpma115", SimUART(), SimClock())
    assert particulate_sensor("pms5003", SimUART(), SimClock()).NAME == "pms5003"
