# bin_fill: ultrasonic distance (A02YYUW on a UART, or HC-SR04 / JSN-SR04T trigger/echo), tilt
# switch, and the BME680 as thermometer (speed of sound correction and fire alarm) when fitted.
from citynode.drivers import SensorError
from citynode.drivers.bin import BinMonitor, FireAlarm, TiltSwitch
from citynode.roles import Role

_FIELDS = ("distance", "fill_level", "temperature", "tilt")


class BinFill(Role):
    msg_type = "bin_fill"
    sleep = "deep"

    def __init__(self, config, board, hal, clock):
        Role.__init__(self)
        self.clock = clock
        self.hal = hal
        kind = config.get("distance_sensor", "a02yyuw")
        if kind == "a02yyuw":
            from citynode.drivers.a02yyuw import A02YYUW

            self.sensor = A02YYUW(hal.uart("distance"), clock)
        elif kind in ("hcsr04", "jsn_sr04t"):
            from citynode.drivers.hcsr04 import HCSR04

            self.sensor = HCSR04(hal.pin("trigger", "out"), hal.pin("echo", "in"), hal.time_pulse_us, clock,
                                 model=kind)
        else:
            from citynode.config import ConfigError

            raise ConfigError("distance_sensor", "expected a02yyuw, hcsr04 or jsn_sr04t, got %r" % (kind,))
        self.tilt = TiltSwitch(hal.pin("tilt", "in"), clock)
        self.thermometer = None
        if config.get("thermometer", "bme680") == "bme680":
            from citynode.drivers.bme680 import BME680_I2C

            self.thermometer = BME680_I2C(hal.i2c(), board.get("bme680_address", 0x77), clock=clock)
        self._thermo_ready = False
        self.monitor = None
        self.configure(config)

    def configure(self, config):
        alarm = self.monitor.fire if self.monitor else None
        fire = FireAlarm(config["fire_threshold"])
        if alarm is not None:
            fire.active = alarm.active
        self.monitor = BinMonitor(self.sensor, config["bin_depth"], config["mount_offset"], tilt=self.tilt,
                                  fire_alarm=fire)

    def _temperature(self):
        if self.thermometer is None:
            return None
        try:
            if not self._thermo_ready:
                self.thermometer.begin()
                self._thermo_ready = True
            return round(self.thermometer.measure()["temperature"], 1)
        except (SensorError, OSError):
            self._thermo_ready = False
            return None

    def measure(self):
        temperature = self._temperature()
        out = self.monitor.measure(temperature)
        reading = {}
        for key in _FIELDS:
            if key in out:
                reading[key] = out[key]
        faults = [f for f in out.get("faults", ()) if f in _FIELDS and f not in reading]
        flags = []
        if "distance" in faults:
            flags.append("distance")
        if "tilt" in faults:
            flags.append("tilt")
        if temperature is None and self.thermometer is not None:
            flags.append("bme680")
        self._faults = flags
        self._urgent = bool(out.get("urgent"))
        reading["faults"] = faults
        return reading

    def urgent(self, reading):
        return getattr(self, "_urgent", False)
