# HC-SR04 / JSN-SR04T ultrasonic rangers, trigger/echo interface.
#
# HC-SR04 datasheet: a >= 10 us high pulse on TRIG starts an 8-cycle 40 kHz burst; ECHO then goes high
# for the round-trip time. Range 2..400 cm; keep >= 60 ms between measurements.
# JSN-SR04T (v2/v3, mode 0 = same interface, waterproof probe): range 25..450 cm, wants a longer
# trigger (we use 20 us, which both accept).
# The echo is timed with machine.time_pulse_us(pin, level, timeout_us), handed in by the HAL; it
# returns -2 when no pulse started and -1 when the pulse outlasted the timeout: both mean no echo.
from citynode.compat import const
from citynode.drivers import ConfigError
from citynode.drivers.distance import DistanceSensor, echo_to_mm, speed_of_sound

_TRIGGER_US = const(20)

MODELS = {
    # model: (blind zone mm, max range mm)
    "hcsr04": (20, 4000),
    "jsn-sr04t": (250, 4500),
}


class HCSR04(DistanceSensor):
    NAME = "hcsr04"

    def __init__(self, trigger, echo, time_pulse_us, clock=None, *, model="hcsr04", **kwargs):
        model = model.replace("_", "-") if isinstance(model, str) else model  # "jsn_sr04t" in configs
        if model not in MODELS:
            raise ConfigError("model", "unknown ultrasonic model %r (hcsr04, jsn-sr04t)" % (model,))
        self.NAME = model
        self.MIN_MM, self.MAX_MM = MODELS[model]
        DistanceSensor.__init__(self, clock, **kwargs)
        self.trigger = trigger
        self.echo = echo
        self.time_pulse_us = time_pulse_us
        trigger.value(0)

    def timeout_us(self):
        """Echo timeout: the round trip to max range at the slowest speed (-40 degC) plus 20 %."""
        return int(2 * self.max_mm / speed_of_sound(-40) * 1000 * 1.2)

    def _ping(self, temperature_c):
        t = self.trigger
        t.value(0)
        self.clock.sleep_us(2)
        t.value(1)
        self.clock.sleep_us(_TRIGGER_US)
        t.value(0)
        try:
            us = self.time_pulse_us(self.echo, 1, self.timeout_us())
        except OSError:  # some ports raise ETIMEDOUT instead of returning a negative value
            return None
        if us < 0:
            return None
        return echo_to_mm(us, temperature_c)
