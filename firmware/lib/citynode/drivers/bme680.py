# Bosch BME680 gas / humidity / pressure / temperature sensor, written from the datasheet
# (BST-BME680-DS001, rev 1.x; section numbers below refer to it).
#
# Compensation uses the datasheet's INTEGER variant (3.3.1 temperature, 3.3.2 pressure, 3.3.3
# humidity, 3.4.1 gas resistance, 3.3.5 heater resistance). Integers are exact on every runtime:
# the ESP32 MicroPython port has single-precision floats, so the float variant would give different
# results on the device than on the unix port our tests run on. Results are therefore quantised:
# 0.01 degC, 1 Pa, 0.001 %RH, 1 ohm.
#
# The base class holds all chip logic and talks to the chip only through _read(reg, n) and
# _write(reg, data); BME680_I2C implements them for an I2C bus handed in by the HAL.
from citynode.compat import const
from citynode.drivers import ConfigError, SensorError, check_range

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

# 3.4.1, BME680 gas range constants (integer variant), indexed by gas_range_r<3:0>
GAS_RANGE_LUT1 = (
    2147483647, 2147483647, 2147483647, 2147483647, 2147483647, 2126008810, 2147483647, 2130303777,
    2147483647, 2147483647, 2143188679, 2136746228, 2147483647, 2126008810, 2147483647, 2147483647,
)
GAS_RANGE_LUT2 = (
    4096000000, 2048000000, 1024000000, 512000000, 255744255, 127110228, 64000000, 32258064,
    16016016, 8000000, 4000000, 2000000, 1000000, 500000, 250000, 125000,
)
# oversampling register value -> measurement cycles (x1, x2, x4, x8, x16); 3.3.4 timing
_OS_CYCLES = (0, 1, 2, 4, 8, 16)
OVERSAMPLING = {0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5}
FILTER = {0: 0, 1: 1, 3: 2, 7: 3, 15: 4, 31: 5, 63: 6, 127: 7}


def _tdiv(a, b):
    """C integer division (truncates toward zero), as in the datasheet's integer formulas."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _s8(b):
    return b - 256 if b > 127 else b


def _u16(lsb, msb):
    return lsb | (msb << 8)


def _s16(lsb, msb):
    v = lsb | (msb << 8)
    return v - 65536 if v > 32767 else v


class Calibration:
    """The chip's factory calibration (par_* names as in the datasheet, table 11 / 3.11.1)."""

    def __init__(self, c1, c2, res_heat_val, res_heat_range_reg, range_sw_err_reg):
        # c1 = 25 bytes from 0x89, c2 = 16 bytes from 0xE1; index = register - base
        self.par_t1 = _u16(c2[0xE9 - 0xE1], c2[0xEA - 0xE1])
        self.par_t2 = _s16(c1[0x8A - 0x89], c1[0x8B - 0x89])
        self.par_t3 = _s8(c1[0x8C - 0x89])
        self.par_p1 = _u16(c1[0x8E - 0x89], c1[0x8F - 0x89])
        self.par_p2 = _s16(c1[0x90 - 0x89], c1[0x91 - 0x89])
        self.par_p3 = _s8(c1[0x92 - 0x89])
        self.par_p4 = _s16(c1[0x94 - 0x89], c1[0x95 - 0x89])
        self.par_p5 = _s16(c1[0x96 - 0x89], c1[0x97 - 0x89])
        self.par_p7 = _s8(c1[0x98 - 0x89])
        self.par_p6 = _s8(c1[0x99 - 0x89])
        self.par_p8 = _s16(c1[0x9C - 0x89], c1[0x9D - 0x89])
        self.par_p9 = _s16(c1[0x9E - 0x89], c1[0x9F - 0x89])
        self.par_p10 = c1[0xA0 - 0x89]
        # par_h1 = 0xE3<7:0> . 0xE2<3:0>, par_h2 = 0xE1<7:0> . 0xE2<7:4> (12-bit, shared nibble byte)
        e2 = c2[0xE2 - 0xE1]
        self.par_h1 = (c2[0xE3 - 0xE1] << 4) | (e2 & 0x0F)
        self.par_h2 = (c2[0xE1 - 0xE1] << 4) | (e2 >> 4)
        self.par_h3 = _s8(c2[0xE4 - 0xE1])
        self.par_h4 = _s8(c2[0xE5 - 0xE1])
        self.par_h5 = _s8(c2[0xE6 - 0xE1])
        self.par_h6 = c2[0xE7 - 0xE1]
        self.par_h7 = _s8(c2[0xE8 - 0xE1])
        self.par_g1 = _s8(c2[0xED - 0xE1])
        self.par_g2 = _s16(c2[0xEB - 0xE1], c2[0xEC - 0xE1])
        self.par_g3 = _s8(c2[0xEE - 0xE1])
        self.res_heat_val = _s8(res_heat_val)
        self.res_heat_range = (res_heat_range_reg >> 4) & 0x03
        self.range_sw_err = _s8(range_sw_err_reg & 0xF0) >> 4  # signed 4-bit in <7:4>


def calc_temperature(cal, adc_t):
    """3.3.1 integer variant: returns (temperature in 0.01 degC, t_fine)."""
    var1 = (adc_t >> 3) - (cal.par_t1 << 1)
    var2 = (var1 * cal.par_t2) >> 11
    var3 = ((var1 >> 1) * (var1 >> 1)) >> 12
    var3 = (var3 * (cal.par_t3 << 4)) >> 14
    t_fine = var2 + var3
    return (t_fine * 5 + 128) >> 8, t_fine


def calc_pressure(cal, adc_p, t_fine):
    """3.3.2 integer variant: pressure in Pa."""
    var1 = (t_fine >> 1) - 64000
    var2 = ((((var1 >> 2) * (var1 >> 2)) >> 11) * cal.par_p6) >> 2
    var2 = var2 + ((var1 * cal.par_p5) << 1)
    var2 = (var2 >> 2) + (cal.par_p4 << 16)
    var1 = (((((var1 >> 2) * (var1 >> 2)) >> 13) * (cal.par_p3 << 5)) >> 3) + ((cal.par_p2 * var1) >> 1)
    var1 = var1 >> 18
    var1 = ((32768 + var1) * cal.par_p1) >> 15
    if var1 == 0:
        raise SensorError("bme680", "pressure compensation divides by zero (bad calibration)")
    p = 1048576 - adc_p
    p = (p - (var2 >> 12)) * 3125
    if p >= 0x40000000:  # the datasheet divides first for large values to stay inside 32 bits
        p = _tdiv(p, var1) << 1
    else:
        p = _tdiv(p << 1, var1)
    var1 = (cal.par_p9 * (((p >> 3) * (p >> 3)) >> 13)) >> 12
    var2 = ((p >> 2) * cal.par_p8) >> 13
    var3 = ((p >> 8) * (p >> 8) * (p >> 8) * cal.par_p10) >> 17
    return p + ((var1 + var2 + var3 + (cal.par_p7 << 7)) >> 4)


def calc_humidity(cal, adc_h, t_fine):
    """3.3.3 integer variant: relative humidity in 0.001 %RH, clamped to 0..100000."""
    temp_scaled = (t_fine * 5 + 128) >> 8
    var1 = (adc_h - cal.par_h1 * 16) - (_tdiv(temp_scaled * cal.par_h3, 100) >> 1)
    var2 = (
        cal.par_h2
        * (
            _tdiv(temp_scaled * cal.par_h4, 100)
            + _tdiv((temp_scaled * _tdiv(temp_scaled * cal.par_h5, 100)) >> 6, 100)
            + (1 << 14)
        )
    ) >> 10
    var3 = var1 * var2
    var4 = ((cal.par_h6 << 7) + _tdiv(temp_scaled * cal.par_h7, 100)) >> 4
    var5 = ((var3 >> 14) * (var3 >> 14)) >> 10
    var6 = (var4 * var5) >> 1
    h = (((var3 + var6) >> 10) * 1000) >> 12
    return 0 if h < 0 else (100000 if h > 100000 else h)


def calc_gas_resistance(cal, adc_gas, gas_range):
    """3.4.1 integer variant: gas resistance in ohm from the 10-bit ADC value and its range."""
    var1 = ((1340 + 5 * cal.range_sw_err) * GAS_RANGE_LUT1[gas_range]) >> 16
    var2 = ((adc_gas << 15) - 16777216) + var1
    var3 = (GAS_RANGE_LUT2[gas_range] * var1) >> 9
    return _tdiv(var3 + (var2 >> 1), var2)


def calc_res_heat(cal, target_c, ambient_c):
    """3.3.5 integer variant: res_heat_x register value for a heater target in degC (max 400)."""
    if target_c > 400:
        target_c = 400
    var1 = _tdiv(ambient_c * cal.par_g3, 1000) * 256
    var2 = (cal.par_g1 + 784) * _tdiv(_tdiv((cal.par_g2 + 154009) * target_c * 5, 100) + 3276800, 10)
    var3 = var1 + _tdiv(var2, 2)
    var4 = _tdiv(var3, cal.res_heat_range + 4)
    var5 = 131 * cal.res_heat_val + 65536
    res_x100 = (_tdiv(var4, var5) - 250) * 34
    return _tdiv(res_x100 + 50, 100) & 0xFF


def gas_wait(duration_ms):
    """5.3.3.3 gas_wait_x: 6-bit value in ms times a factor 1/4/16/64 in bits <7:6>; max 4032 ms."""
    if duration_ms >= 0xFC0:
        return 0xFF
    factor = 0
    while duration_ms > 0x3F:
        duration_ms //= 4
        factor += 1
    return duration_ms | (factor << 6)


def gas_wait_ms(code):
    """Inverse of gas_wait(): the heating time a gas_wait_x register value means, in ms."""
    return (code & 0x3F) * (1 << (2 * (code >> 6)))


class BME680:
    """Chip logic; subclasses supply _read(reg, n) -> bytes-like and _write(reg, data).

    measure() triggers one forced-mode conversion and returns a dict with "temperature" (degC),
    "relative_humidity" (%), "pressure" (hPa) and "gas_resistance" (ohm; absent when the heater did
    not reach its target or gas is disabled). Raises SensorError when the chip is absent, answers
    with a wrong chip id, or does not finish in time. The chip is (re)initialised lazily, so a sensor
    that was absent at boot is picked up on a later cycle.
    """

    def __init__(self, clock=None, *, temperature_os=8, pressure_os=4, humidity_os=2, filter_size=3,
                 heater_c=320, heater_ms=150, gas=True, timeout_ms=1000):
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
        """One forced-mode conversion. Returns integer results:
        (temperature 0.01 degC, pressure Pa, humidity 0.001 %RH, gas ohm or None)."""
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
        t, t_fine = calc_temperature(cal, adc_t)
        if not -4000 <= t <= 8500:  # 1.1: operating range -40..85 degC
            raise SensorError("bme680", "temperature %d.%02d degC out of range" % (t // 100, t % 100))
        p = calc_pressure(cal, adc_p, t_fine)
        h = calc_humidity(cal, adc_h, t_fine)
        gas = None
        if self.gas and flags == (_GAS_VALID | _HEAT_STAB):
            gas = calc_gas_resistance(cal, adc_g, g_range)
        self.ambient_c = t // 100
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
