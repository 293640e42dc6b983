# BME680 compensation, datasheet INTEGER variant (BST-BME680-DS001: 3.3.1 temperature, 3.3.2
# pressure, 3.3.3 humidity, 3.4.1 gas resistance, 3.3.5 heater resistance, 3.11.1 calibration layout,
# 5.3.3.3 gas_wait encoding). Pure functions of the calibration and the raw ADC codes, shared by the
# driver (citynode.drivers.bme680) and the simulator, which inverts them.
# A module of its own because the unix port compiles from source and the compile-time heap peak
# grows with module size.
from citynode.drivers import SensorError

# 3.4.1, BME680 gas range constants (integer variant), indexed by gas_range_r<3:0>
GAS_RANGE_LUT1 = (
    2147483647, 2147483647, 2147483647, 2147483647, 2147483647, 2126008810, 2147483647, 2130303777,
    2147483647, 2147483647, 2143188679, 2136746228, 2147483647, 2126008810, 2147483647, 2147483647,
)
GAS_RANGE_LUT2 = (
    4096000000, 2048000000, 1024000000, 512000000, 255744255, 127110228, 64000000, 32258064,
    16016016, 8000000, 4000000, 2000000, 1000000, 500000, 250000, 125000,
)
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
