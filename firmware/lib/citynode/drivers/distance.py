# Ultrasonic distance sensors: the chip-agnostic part (median of N pings, outlier rejection, speed of
# sound corrected for air temperature, range limits). Subclasses only know how to take one ping.
#
# Speed of sound in dry air: c = 331.3 + 0.606 * T m/s (T in degC; linearisation of
# c = 331.3 * sqrt(1 + T/273.15), good to 0.2 % over -40..+60 degC). 1 m/s == 1 mm/ms.
from citynode.compat import const
from citynode.drivers import ConfigError, SensorError, check_range

_DEBUG = const(False)
DEFAULT_TEMPERATURE_C = 20.0


def speed_of_sound(temperature_c):
    """m/s (== mm/ms) at temperature_c; 20 degC when unknown."""
    if temperature_c is None:
        temperature_c = DEFAULT_TEMPERATURE_C
    return 331.3 + 0.606 * temperature_c


def echo_to_mm(echo_us, temperature_c=None):
    """Round-trip echo time in us to the one-way distance in mm: d = t * c / 2."""
    return echo_us * speed_of_sound(temperature_c) / 2000


def median(values):
    """Median of a non-empty list (mean of the middle two for an even count)."""
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


class BlindZone(SensorError):
    """Most pings came back from inside the sensor's blind zone: something is right in front of it."""


class DistanceSensor:
    """Base class: subclasses set NAME, MIN_MM (blind zone), MAX_MM and implement _ping(temperature_c)
    returning one distance in mm, or None when no echo came back.

    measure() takes `pings` pings `interval_ms` apart, drops pings without echo and beyond max range,
    rejects outliers farther than max(outlier_mm, outlier_pct % of the median) from the median of
    the rest, and returns the median of what remains as an int in mm. Fewer than `min_valid` good
    pings raise SensorError; a majority inside the blind zone raises BlindZone.
    """

    NAME = "distance"
    MIN_MM = 20
    MAX_MM = 4000

    def __init__(self, clock=None, *, pings=5, interval_ms=60, min_valid=None, outlier_mm=30, outlier_pct=10,
                 min_mm=None, max_mm=None):
        if clock is None:
            from citynode.hal import clock as _clock

            clock = _clock()
        self.clock = clock
        self.pings = check_range("pings", pings, 1, 31)
        self.interval_ms = check_range("interval_ms", interval_ms, 0, 10000)
        self.min_valid = check_range("min_valid", pings // 2 + 1 if min_valid is None else min_valid, 1, pings)
        self.outlier_mm = check_range("outlier_mm", outlier_mm, 0, 10000)
        self.outlier_pct = check_range("outlier_pct", outlier_pct, 0, 100)
        self.min_mm = check_range("min_mm", self.MIN_MM if min_mm is None else min_mm, 0, 10000)
        self.max_mm = check_range("max_mm", self.MAX_MM if max_mm is None else max_mm, self.min_mm + 1, 20000)
        self.last = None  # (pings in mm or None, accepted list) of the last measure(), for diagnostics

    def _ping(self, temperature_c):
        raise NotImplementedError

    def measure(self, temperature_c=None):
        raw = []
        for i in range(self.pings):
            if i and self.interval_ms:
                self.clock.sleep_ms(self.interval_ms)  # let the previous burst's echoes die away
            raw.append(self._ping(temperature_c))
        in_range = [d for d in raw if d is not None and self.min_mm <= d <= self.max_mm]
        blind = sum(1 for d in raw if d is not None and d < self.min_mm)
        if blind * 2 > self.pings:
            self.last = (raw, [])
            raise BlindZone(self.NAME, "%d of %d pings inside the %d mm blind zone" % (blind, self.pings, self.min_mm))
        accepted = in_range
        if in_range:
            m = median(in_range)
            limit = max(self.outlier_mm, m * self.outlier_pct / 100)
            accepted = [d for d in in_range if abs(d - m) <= limit]
        self.last = (raw, accepted)
        if _DEBUG:
            print(self.NAME, "pings", raw, "accepted", accepted)
        if len(accepted) < self.min_valid:
            raise SensorError(self.NAME, "%d of %d pings usable (need %d)" % (len(accepted), self.pings, self.min_valid))
        return int(median(accepted) + 0.5)


def check_mounting(sensor, depth_mm, offset_mm):
    """Validate a bin's geometry against the sensor's range; raise ConfigError naming the field."""
    check_range("bin_depth_mm", depth_mm, 50, 10000)
    check_range("mount_offset_mm", offset_mm, 0, 10000)
    if offset_mm < sensor.min_mm:
        raise ConfigError("mount_offset_mm", "%d mm is inside the %s blind zone (%d mm): a full bin could not be seen"
                          % (offset_mm, sensor.NAME, sensor.min_mm))
    if offset_mm + depth_mm > sensor.max_mm:
        raise ConfigError("bin_depth_mm", "bottom at %d mm is beyond the %s range (%d mm)"
                          % (offset_mm + depth_mm, sensor.NAME, sensor.max_mm))
