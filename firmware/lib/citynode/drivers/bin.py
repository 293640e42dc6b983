# Waste-bin monitoring: fill level from an ultrasonic distance, tilt switch, fire alarm.
#
# Geometry (sensor in the lid, looking down):
#
#   sensor face ─┬─                      distance d is measured from the sensor face
#                │ mount_offset_mm       offset = sensor face to the "full" line (rim / lid plane)
#   full line  ──┼──  100 %
#                │ bin_depth_mm          depth = full line to the bottom
#   bottom     ──┴──  0 %
#
#   fill % = (offset + depth - d) / depth * 100, clamped to 0..100.
#   d < offset       -> overfull (waste above the rim): 100 %, overfull flag
#   d > offset+depth -> echo from below the bottom (hole, misaligned): 0 %, flagged
#   blind zone       -> the sensor cannot see closer than its minimum: something is right in front
#                       of it, i.e. the bin is overfull or the sensor is covered: 100 %, flagged,
#                       distance left out (named in faults).
from citynode.compat import const
from citynode.drivers import SensorError, check_range
from citynode.drivers.distance import BlindZone, check_mounting

_TILT_SAMPLES = const(5)


def fill_level(distance_mm, depth_mm, offset_mm):
    """Fill level in whole percent 0..100 for a distance in mm (see the geometry above)."""
    pct = (offset_mm + depth_mm - distance_mm) * 100 / depth_mm
    if pct < 0:
        return 0
    if pct > 100:
        return 100
    return int(pct + 0.5)


class TiltSwitch:
    """A ball/mercury tilt switch (or lid reed switch) on a pin; `active` is the level meaning tilted.
    Reads _TILT_SAMPLES times `debounce_ms` apart and takes the majority, so a rattling ball in a
    bumped bin does not raise an alarm."""

    def __init__(self, pin, clock=None, *, active=1, debounce_ms=5):
        if clock is None:
            from citynode.hal import clock as _clock

            clock = _clock()
        self.pin = pin
        self.clock = clock
        self.active = 1 if active else 0
        self.debounce_ms = debounce_ms

    def tilted(self):
        hits = 0
        for i in range(_TILT_SAMPLES):
            if i:
                self.clock.sleep_ms(self.debounce_ms)
            if self.pin.value() == self.active:
                hits += 1
        return hits * 2 > _TILT_SAMPLES


class FireAlarm:
    """Temperature threshold with hysteresis. update(T) returns True exactly when the alarm rises,
    which is when the app must send an uplink immediately instead of waiting for its slot."""

    def __init__(self, threshold_c=65.0, hysteresis_c=5.0):
        self.threshold_c = check_range("fire_threshold_c", threshold_c, 30, 150)
        self.hysteresis_c = check_range("fire_hysteresis_c", hysteresis_c, 0, 50)
        self.active = False

    def update(self, temperature_c):
        if temperature_c is None:
            return False  # no temperature: keep the state, never invent an alarm
        if not self.active and temperature_c >= self.threshold_c:
            self.active = True
            return True
        if self.active and temperature_c < self.threshold_c - self.hysteresis_c:
            self.active = False
        return False


class BinMonitor:
    """Everything a bin_fill reading needs. measure(temperature_c) returns

    {"distance": mm, "fill_level": %, "temperature": degC, "tilt": bool}   (fields it could measure)
    plus "faults": [names of fields that could not be measured] and the flags "urgent" (fire alarm
    just rose: uplink now), "fire" (alarm active), "overfull", "blind_zone". Never raises for a
    measurement problem; bad geometry raises ConfigError at construction.
    """

    def __init__(self, distance_sensor, depth_mm, offset_mm, *, tilt=None, fire_alarm=None):
        check_mounting(distance_sensor, depth_mm, offset_mm)
        self.sensor = distance_sensor
        self.depth_mm = depth_mm
        self.offset_mm = offset_mm
        self.tilt = tilt
        self.fire = fire_alarm or FireAlarm()

    def measure(self, temperature_c=None):
        out = {}
        faults = []
        if temperature_c is not None:
            out["temperature"] = temperature_c
        else:
            faults.append("temperature")
        try:
            d = self.sensor.measure(temperature_c)
            out["distance"] = d
            out["fill_level"] = fill_level(d, self.depth_mm, self.offset_mm)
            if d < self.offset_mm:
                out["overfull"] = True
            elif d > self.offset_mm + self.depth_mm:
                out["beyond_bottom"] = True
        except BlindZone:
            out["fill_level"] = 100
            out["blind_zone"] = True
            faults.append("distance")
        except SensorError:
            faults.append("distance")
            faults.append("fill_level")
        if self.tilt is not None:
            try:
                out["tilt"] = self.tilt.tilted()
            except OSError:
                faults.append("tilt")
        out["urgent"] = self.fire.update(temperature_c)
        out["fire"] = self.fire.active
        out["faults"] = faults
        return out
