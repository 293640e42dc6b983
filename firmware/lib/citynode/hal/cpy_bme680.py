# CircuitPython glue: the adafruit-circuitpython-bme680 driver behind the measure() API of
# citynode.drivers.bme680, for nodes running CircuitPython (chosen by drivers.bme680.bme680_for).
from citynode.drivers import SensorError, check_range

_REG_RANGE_SW_ERR = 0x04


class AdafruitBME680:
    """CircuitPython: adafruit_bme680's driver behind our measure() API (same dict, SensorError).

    Two calibration fields are corrected after Adafruit reads them, because its unpacking differs
    from the datasheet (3.11.1): par_h1/par_h2 share register 0xE2 (h1 = 0xE3<<4 | 0xE2<3:0>,
    h2 = 0xE1<<4 | 0xE2<7:4>) and range_sw_err is signed. Without this, humidity is off by up to a
    few %RH on chips whose 0xE2 nibbles are not zero.
    """

    def __init__(self, busio_i2c, address=0x77, *, heater_c=320, heater_ms=150, module=None):
        self.i2c = busio_i2c
        self.address = address
        self.heater_c = check_range("heater_c", heater_c, 200, 400)
        self.heater_ms = check_range("heater_ms", heater_ms, 1, 4032)
        self._module = module
        self.dev = None

    def _open(self):
        mod = self._module or __import__("adafruit_bme680")
        dev = mod.Adafruit_BME680_I2C(self.i2c, self.address, refresh_rate=1)
        e1, e2, e3 = dev._read(0xE1, 3)
        dev._humidity_calibration[0] = float((e3 << 4) | (e2 & 0x0F))
        dev._humidity_calibration[1] = float((e1 << 4) | (e2 >> 4))
        sw_err = dev._read(_REG_RANGE_SW_ERR, 1)[0] >> 4
        dev._sw_err = float(sw_err - 16 if sw_err > 7 else sw_err)
        dev.set_gas_heater(self.heater_c, self.heater_ms)
        self.dev = dev

    def measure(self):
        try:
            if self.dev is None:
                self._open()
            d = self.dev
            d._last_reading = 0  # always a fresh forced-mode conversion
            out = {"temperature": round(d.temperature, 2), "relative_humidity": round(d.relative_humidity, 3),
                   "pressure": round(d.pressure, 2)}
            gas = d.gas
        except (OSError, RuntimeError, ValueError) as exc:
            self.dev = None
            raise SensorError("bme680", "adafruit_bme680: %s" % exc)
        if gas > 0:
            out["gas_resistance"] = gas
        return out
