# air_quality: BME680 (climate + gas) and a particulate sensor (SDS011 or PMS5003) on a UART.
from citynode.drivers import SensorError
from citynode.drivers.bme680 import BME680_I2C
from citynode.drivers.particulate import particulate_sensor
from citynode.roles import Role

_PM_FIELDS = ("pm1_0", "pm2_5", "pm10")
_CLIMATE_FIELDS = ("temperature", "relative_humidity", "pressure", "gas_resistance")


class AirQuality(Role):
    msg_type = "air_quality"
    sleep = "deep"

    def __init__(self, config, board, hal, clock):
        Role.__init__(self)
        self.clock = clock
        self.bme = BME680_I2C(hal.i2c(), board.get("bme680_address", 0x77), clock=clock)
        self._bme_ready = False
        self.pm_kind = config.get("pm_sensor", "sds011")
        self.pm = particulate_sensor(self.pm_kind, hal.uart("pm"), clock, warmup_s=config["pm_warmup"])

    def configure(self, config):
        self.pm.warmup_ms = config["pm_warmup"] * 1000

    def measure(self):
        reading = {}
        faults = []
        flags = []
        try:
            if not self._bme_ready:
                self.bme.begin()
                self._bme_ready = True
            for key, value in self.bme.measure().items():
                if key in _CLIMATE_FIELDS:
                    reading[key] = value
        except (SensorError, OSError):
            self._bme_ready = False
            flags.append("bme680")
        for key in _CLIMATE_FIELDS:
            if key not in reading:
                faults.append(key)
        try:
            pm = self.pm.read()
            for key in _PM_FIELDS:
                if key in pm:
                    reading[key] = pm[key]
        except (SensorError, OSError):
            flags.append("particulate")
        for key in _PM_FIELDS:  # the SDS011 measures no PM1.0: a fault, honestly named
            if key not in reading:
                faults.append(key)
        self._faults = flags
        reading["faults"] = faults
        return reading
