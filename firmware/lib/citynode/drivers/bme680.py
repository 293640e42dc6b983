# Bosch BME680 gas / humidity / pressure / temperature sensor, written from the datasheet
# (BST-BME680-DS001, rev 1.x; section numbers below refer to it).
#
# Compensation uses the datasheet's INTEGER variant (3.3.1 temperature, 3.3.2 pressure, 3.3.3
# humidity, 3.4.1 gas resistance, 3.3.5 heater resistance). Integers are exact on every runtime:
# the ESP32 MicroPython port has single-precision floats, so the float variant would give different
# results on the device than on the unix port our tests run on. Results are therefore quantised:
# 0.01 degC, 1 Pa (2 Pa steps at high pressure, where 3.3.2 divides before doubling), 0.001 %RH,
# 1 ohm.
# compensation="float" evaluates the same formulas with true division instead (bme680_float, loaded
# only then): with IEEE doubles (unix port, CPython) it gives exactly the values
# adafruit-circuitpython-bme680 gives, which is how the tests cross-check the two drivers. The heater
# set-point (3.3.5) stays integer in both modes.
#
# The base class holds all chip logic and talks to the chip only through _read(reg, n) and
# _write(reg, data); BME680_I2C implements them for an I2C bus handed in by the HAL.
from citynode.compat import const
from citynode.drivers import ConfigError, SensorError, bme680_calc, check_range
from citynode.drivers.bme680_calc import (  # noqa: F401  (re-exported: the driver's public maths)
    GAS_RANGE_LUT1,
    GAS_RANGE_LUT2,
    Calibration,
    calc_gas_resistance,
    calc_humidity,
    calc_pressure,
    calc_res_heat,
    calc_temperature,
    gas_wait,
    gas_wait_ms,
)

_CHIP_ID = const(0x61)
_REG_CHIP_ID = const(0xD0)
_REG_RESET = const(0xE0)
_RESET_CMD = const(0xB6)  # 5.3.1.2: writing 0xB6 to reset triggers a power-on reset
_REG_VARIANT = const(0xF0)

_REG_STATUS = const(0x1D)  # meas_status_0: new_data_0<7>, gas_measuring<6>, measuring<5>
_REG_CTRL_GAS_0 = const(0x70)  # heat_off<3>
_REG_CTRL_GAS_1 = const(0x71)  # run_gas<4>, nb_conv<3:0>
_REG_CTRL_HUM = const(0x72)  # osrs_h<2:0>
_REG_CTRL_MEAS = const(0x74)  # osrs_t<7:5>, osrs_p<4:2>, mode<1:0>
_REG_CONFIG = const(0x75)  # filter<4:2>
_REG_RES_HEAT_0 = const(0x5A)
_REG_GAS_WAIT_0 = const(0x64)

_REG_COEFF1 = const(0x89)  # 25 bytes 0x89..0xA1
_REG_COEFF2 = const(0xE1)  # 16 bytes 0xE1..0xF0
_REG_RES_HEAT_VAL = const(0x00)
_REG_RES_HEAT_RANGE = const(0x02)  # <5:4>
_REG_RANGE_SW_ERR = const(0x04)  # <7:4>, signed

_MODE_FORCED = const(0x01)
_RUN_GAS = const(0x10)
_NEW_DATA = const(0x80)
_GAS_VALID = const(0x20)
_HEAT_STAB = const(0x10)
_ADC_SKIPPED_TP = const(0x80000)  # temp/press ADC value when the measurement was skipped
_ADC_SKIPPED_H = const(0x8000)

_DEBUG = const(False)

# oversampling register value -> measurement cycles (x1, x2, x4, x8, x16); 3.3.4 timing
_OS_CYCLES = (0, 1, 2, 4, 8, 16)
OVERSAMPLING = {0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5}
FILTER = {0: 0, 1: 1, 3: 2, 7: 3, 15: 4, 31: 5, 63: 6, 127: 7}


class BME680:
    """Chip logic; subclasses supply _read(reg, n) -> bytes-like and _write(reg, data).

    measure() triggers one forced-mode conversion and returns a dict with "temperature" (degC),
    "relative_humidity" (%), "pressure" (hPa) and "gas_resistance" (ohm; absent when the heater did
    not reach its target or gas is disabled). Raises SensorError when the chip is absent, answers
    with a wrong chip id, or does not finish in time. The chip is (re)initialised lazily, so a sensor
    that was absent at boot is picked up on a later cycle.

    compensation: "integer" (default; the datasheet's fixed-point formulas, exact on every port) or
    "float" (the same formulas with true division in floats, as adafruit_bme680 computes them).
    """

    def __init__(self, clock=None, *, temperature_os=8, pressure_os=4, humidity_os=2, filter_size=3,
                 heater_c=320, heater_ms=150, gas=True, timeout_ms=1000, compensation="integer"):
        if clock is None:
            from citynode.hal import clock as _clock

            clock = _clock()
        self.clock = clock
        for field, value in (("temperature_os", temperature_os), ("pressure_os", pressure_os),
                             ("humidity_os", humidity_os)):
            if value not in OVERSAMPLING:
                raise ConfigError(field, "oversampling must be one of 0, 1, 2, 4, 8, 16")
        if filter_size not in FILTER:
            raise ConfigError("filter_size", "IIR filter must be one of 0, 1, 3, 7, 15, 31, 63, 127")
        self._os_t = OVERSAMPLING[temperature_os]
        self._os_p = OVERSAMPLING[pressure_os]
        self._os_h = OVERSAMPLING[humidity_os]
        self._filter = FILTER[filter_size]
        self.gas = gas
        # 3.3.5: heater target range 200..400 degC; 5.3.3.3: gas_wait up to 4032 ms
        self.heater_c = check_range("heater_c", heater_c, 200, 400)
        self.heater_ms = check_range("heater_ms", heater_ms, 1, 4032)
        self.timeout_ms = timeout_ms
        if compensation == "integer":
            self._comp = bme680_calc
        elif compensation == "float":
            from citynode.drivers import bme680_float  # only now: a node never pays for the float code

            self._comp = bme680_float
        else:
            raise ConfigError("compensation", 'must be "integer" or "float", got %r' % (compensation,))
        self.cal = None
        self.ambient_c = 25  # heater calculation ambient; updated from each temperature reading
        self.raw = None  # (adc_t, adc_p, adc_h, adc_gas, gas_range, status bits) of the last reading

    # bus access, implemented by subclasses
    def _read(self, reg, n):
        raise NotImplementedError

    def _write(self, reg, data):
        raise NotImplementedError

    def _read_byte(self, reg):
        return self._read(reg, 1)[0]

    def begin(self):
        """Soft reset, check the chip id and read the calibration (5.3.1, 3.11.1)."""
        self._write(_REG_RESET, (_RESET_CMD,))
        self.clock.sleep_ms(10)  # 1.1: start-up time after reset < 2 ms; margin
        chip = self._read_byte(_REG_CHIP_ID)
        if chip != _CHIP_ID:
            raise SensorError("bme680", "chip id 0x%02x, expected 0x61" % chip)
        c1 = bytes(self._read(_REG_COEFF1, 25))
        c2 = bytes(self._read(_REG_COEFF2, 16))
        heat_val = self._read_byte(_REG_RES_HEAT_VAL)
        heat_range = self._read_byte(_REG_RES_HEAT_RANGE)
        sw_err = self._read_byte(_REG_RANGE_SW_ERR)
        self.cal = Calibration(c1, c2, heat_val, heat_range, sw_err)

    def measurement_ms(self):
        """3.3.4 / Bosch reference timing: TPH conversion time plus heater time, rounded up, in ms."""
        cycles = _OS_CYCLES[self._os_t] + _OS_CYCLES[self._os_p] + _OS_CYCLES[self._os_h]
        us = cycles * 1963 + 477 * 4 + 477 * 5 + 500  # switching + gas measurement + rounding
        ms = us // 1000 + 1  # + wake-up
        return ms + (self.heater_ms if self.gas else 0)

    def _configure_and_trigger(self):
        cal = self.cal
        self._write(_REG_CTRL_MEAS, (0x00,))  # sleep mode before changing the configuration (5.3.1.3)
        self._write(_REG_CTRL_HUM, (self._os_h,))
        self._write(_REG_CONFIG, (self._filter << 2,))
        if self.gas:
            self._write(_REG_RES_HEAT_0, (calc_res_heat(cal, self.heater_c, int(self.ambient_c)),))
            self._write(_REG_GAS_WAIT_0, (gas_wait(self.heater_ms),))
            self._write(_REG_CTRL_GAS_0, (0x00,))
            self._write(_REG_CTRL_GAS_1, (_RUN_GAS,))  # run_gas, heater set-point 0
        else:
            self._write(_REG_CTRL_GAS_0, (0x08,))  # heat_off
            self._write(_REG_CTRL_GAS_1, (0x00,))
        # ctrl_hum takes effect on the following write to ctrl_meas (5.3.2.1)
        self._write(_REG_CTRL_MEAS, ((self._os_t << 5) | (self._os_p << 2) | _MODE_FORCED,))

    def measure_raw(self):
        """One forced-mode conversion. Returns (temperature 0.01 degC, pressure Pa, humidity
        0.001 %RH, gas ohm or None): integers, or floats (gas still whole ohms) in "float" mode."""
        try:
            if self.cal is None:
                self.begin()
            self._configure_and_trigger()
            clock = self.clock
            clock.sleep_ms(self.measurement_ms())
            start = clock.ticks_ms()
            while True:
                d = self._read(_REG_STATUS, 15)  # 0x1D..0x2B: status, pressure, temp, hum, gas
                if d[0] & _NEW_DATA:
                    break
                if clock.ticks_diff(clock.ticks_ms(), start) > self.timeout_ms:
                    raise SensorError("bme680", "no new data within %d ms" % self.timeout_ms)
                clock.sleep_ms(5)
            adc_p = (d[2] << 12) | (d[3] << 4) | (d[4] >> 4)
            adc_t = (d[5] << 12) | (d[6] << 4) | (d[7] >> 4)
            adc_h = (d[8] << 8) | d[9]
            adc_g = (d[13] << 2) | (d[14] >> 6)
            g_range = d[14] & 0x0F
            flags = d[14] & (_GAS_VALID | _HEAT_STAB)
        except OSError as exc:  # the bus layer: no ACK, timeouts
            self.cal = None  # re-read calibration after the sensor comes back
            raise SensorError("bme680", "I2C error %s" % exc)
        self.raw = (adc_t, adc_p, adc_h, adc_g, g_range, flags)
        if adc_t == _ADC_SKIPPED_TP or adc_p == _ADC_SKIPPED_TP or adc_h == _ADC_SKIPPED_H:
            raise SensorError("bme680", "conversion skipped (ADC holds its reset value)")
        cal = self.cal
        comp = self._comp
        t, t_fine = comp.calc_temperature(cal, adc_t)
        if not -4000 <= t <= 8500:  # 1.1: operating range -40..85 degC
            raise SensorError("bme680", "temperature %.2f degC out of range" % (t / 100))
        p = comp.calc_pressure(cal, adc_p, t_fine)
        h = comp.calc_humidity(cal, adc_h, t_fine)
        gas = None
        if self.gas and flags == (_GAS_VALID | _HEAT_STAB):
            gas = comp.calc_gas_resistance(cal, adc_g, g_range)
        self.ambient_c = int(t // 100)
        if _DEBUG:
            print("bme680 raw", self.raw, "->", t, p, h, gas)
        return t, p, h, gas

    def measure(self):
        t, p, h, gas = self.measure_raw()
        out = {"temperature": t / 100, "relative_humidity": h / 1000, "pressure": p / 100}
        if gas is not None:
            out["gas_resistance"] = gas
        return out


class BME680_I2C(BME680):
    """BME680 on I2C (address 0x76 with SDO low, 0x77 with SDO high; 6.2.1)."""

    def __init__(self, i2c, address=0x77, **kwargs):
        if address not in (0x76, 0x77):
            raise ConfigError("address", "BME680 I2C address is 0x76 or 0x77")
        self.i2c = i2c
        self.address = address
        self._buf = bytearray(25)
        self._wbuf = bytearray(2)
        BME680.__init__(self, **kwargs)

    def _read(self, reg, n):
        mv = memoryview(self._buf)[:n]
        self.i2c.readfrom_mem_into(self.address, reg, mv)
        return mv

    def _write(self, reg, data):
        # 6.2.1: an I2C write is a sequence of (register address, data) pairs, no auto-increment
        for i in range(len(data)):
            self._wbuf[0] = reg + i
            self._wbuf[1] = data[i]
            self.i2c.writeto(self.address, self._wbuf)


def bme680_for(i2c, address=0x77, clock=None, **kwargs):
    """The BME680 driver for this runtime: Adafruit's on CircuitPython when it is installed (over the
    HAL's busio bus), else ours. Both offer measure() -> dict and raise SensorError."""
    import sys

    if sys.implementation.name == "circuitpython" and hasattr(i2c, "bus"):
        try:
            import adafruit_bme680  # noqa: F401

            from citynode.hal.cpy_bme680 import AdafruitBME680

            return AdafruitBME680(i2c.bus, address, heater_c=kwargs.get("heater_c", 320),
                                  heater_ms=kwargs.get("heater_ms", 150))
        except ImportError:
            pass
    return BME680_I2C(i2c, address, clock=clock, **kwargs)
