# citynode sensor drivers. Every driver takes its bus / pin / clock through the constructor (docs/nodes.md,
# "Sensors and the HAL") and never imports `machine`, `busio` or `board`: the HAL builds those objects.
#
# A measurement that cannot be made raises SensorError; the application catches it, leaves the field
# out of the reading and names it in "faults". Bad configuration raises ConfigError naming the field.


class SensorError(Exception):
    """A sensor could not deliver a valid measurement (absent, timeout, bad checksum, out of range).

    `sensor` names the part ("bme680", "sds011", ...) so the app can map it to the faulted fields.
    """

    def __init__(self, sensor, message):
        super().__init__("%s: %s" % (sensor, message))
        self.sensor = sensor
        self.message = message


class ConfigError(ValueError):
    """A driver was configured with an impossible value; `field` names the parameter."""

    def __init__(self, field, message="invalid value"):
        super().__init__("%s: %s" % (field, message))
        self.field = field


def check_range(field, value, lo, hi):
    """Return `value` if lo <= value <= hi, else raise ConfigError(field)."""
    if value is None or not (lo <= value <= hi):
        raise ConfigError(field, "must be between %s and %s, got %r" % (lo, hi, value))
    return value
