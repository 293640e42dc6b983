"""Battery voltage from an ADC divider, on the real MicroPython unix port with a simulated ADC."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import env_sim_paths  # noqa: F401

_RUN = """
import json
from citynode_sim.sim import SimADC
from citynode.drivers import SensorError
from citynode.drivers.battery import Battery
class U16Only:  # an ADC without read_uv (older ports)
    def __init__(self, adc):
        self.read_u16 = adc.read_u16
for name, adc_args, bat_args in json.loads({cases!r}):
    adc = SimADC(**adc_args)
    if bat_args.pop("u16_only", False):
        adc = U16Only(adc)
    try:
        out = Battery(adc, **bat_args).read_volts()
    except SensorError as e:
        out = str(e)
    print(json.dumps([name, out]))
"""

# name, SimADC arguments (uv = microvolts at the pin), Battery arguments, expected volts or error
CASES = [
    ("full LiPo, 1:2 divider", {"uv": 2100000}, {"divider": 2.0}, 4.2),
    ("nominal, Heltec V3 390k/100k", {"uv": 755102}, {"divider": 4.9}, 3.7),
    ("spikes trimmed", {"uv": [1850000, 3300000, 1850000, 1850000, 0, 1850000, 1850000, 1850000]}, {"divider": 2.0}, 3.7),
    ("noise averaged", {"uv": 1900000, "noise_uv": 15000, "seed": 3}, {"divider": 2.0, "samples": 16}, 3.8),
    ("per-node calibration", {"uv": 1900000}, {"divider": 2.0, "calibration": 1.02}, 3.88),
    ("single sample", {"uv": 1650000}, {"divider": 2.0, "samples": 1}, 3.3),
    ("read_u16 fallback", {"uv": 1650000}, {"divider": 2.0, "u16_only": True}, 3.3),
    ("read_u16, other full scale", {"uv": 1000000, "full_scale_uv": 2000000},
     {"divider": 2.0, "u16_only": True, "full_scale_v": 2.0}, 2.0),
    ("broken divider", {"uv": 0}, {"divider": 2.0}, "battery: 0.00 V outside 0.5..6.0 V"),
    ("wrong divider", {"uv": 3000000}, {"divider": 4.9}, "battery: 14.70 V outside 0.5..6.0 V"),
]


def test_battery_table(micropython):
    code = _RUN.format(cases=json.dumps([c[:3] for c in CASES]))
    results = dict(json.loads(line) for line in micropython.run(code).strip().splitlines())
    assert len(results) == len(CASES)
    for name, _, _, expected in CASES:
        assert results[name] == (pytest.approx(expected, abs=0.011) if isinstance(expected, float) else expected), name


def test_adc_failure_is_a_sensor_error(micropython):
    code = """
import json
from citynode.drivers import SensorError
from citynode.drivers.battery import Battery
class DeadADC:
    def read_uv(self):
        raise OSError(5)
try:
    Battery(DeadADC()).read_volts()
except SensorError as e:
    print(json.dumps(str(e)))
"""
    assert micropython.eval_json(code).startswith("battery: ADC error")


@pytest.mark.parametrize("kwargs, field", [({"divider": 0.5}, "divider"), ({"samples": 0}, "samples"),
                                           ({"calibration": 2.0}, "calibration")])
def test_bad_configuration_names_the_field(kwargs, field):
    from citynode_sim.sim import SimADC

    from citynode.drivers import ConfigError
    from citynode.drivers.battery import Battery

    with pytest.raises(ConfigError) as info:
        Battery(SimADC(1), **kwargs)
    assert info.value.field == field
