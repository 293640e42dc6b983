# Battery voltage through a resistor divider on an ADC pin.
#
#   V_batt = V_adc * divider * calibration,   divider = (R_top + R_bottom) / R_bottom (e.g. 2.0 for
#   two equal resistors; Heltec V3 uses 390k/100k -> 4.9).
# The ADC object comes from the HAL. We prefer read_uv() (MicroPython >= 1.20 on ESP32 applies the
# chip's eFuse calibration there; the CircuitPython HAL adapter provides it too) and fall back to
# read_u16() scaled by full_scale_v. ESP32 ADC readings carry spikes, so several samples are taken
# and the highest and lowest dropped before averaging.
from citynode.compat import const
from citynode.drivers import SensorError, check_range

_DEBUG = const(False)


class Battery:
    def __init__(self, adc, divider=2.0, *, samples=8, calibration=1.0, full_scale_v=3.3, min_v=0.5, max_v=6.0):
        self.adc = adc
        self.divider = check_range("divider", divider, 1.0, 20.0)
        self.samples = check_range("samples", samples, 1, 64)
        self.calibration = check_range("calibration", calibration, 0.8, 1.2)  # per-node trim from a DMM reading
        self.full_scale_v = full_scale_v
        self.min_v = min_v  # below: divider or wire broken (a real cell this flat has browned out)
        self.max_v = max_v  # above: wrong divider or pin
        self._uv = hasattr(adc, "read_uv")

    def _sample_v(self):
        if self._uv:
            return self.adc.read_uv() / 1000000
        return self.adc.read_u16() * self.full_scale_v / 65535

    def read_volts(self):
        """Battery voltage in V, rounded to 10 mV. Raises SensorError for an ADC failure or a reading
        outside min_v..max_v."""
        try:
            values = [self._sample_v() for _ in range(self.samples)]
        except OSError as exc:
            raise SensorError("battery", "ADC error %s" % exc)
        if len(values) >= 4:
            values.sort()
            values = values[1:-1]  # trimmed mean: drop one spike each side
        v = sum(values) / len(values) * self.divider * self.calibration
        if _DEBUG:
            print("battery", v)
        if not self.min_v <= v <= self.max_v:
            raise SensorError("battery", "%.2f V outside %.1f..%.1f V" % (v, self.min_v, self.max_v))
        return round(v, 2)
