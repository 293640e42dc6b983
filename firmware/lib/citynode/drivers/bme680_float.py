# BME680 compensation, "float" arithmetic: the datasheet's INTEGER formulas (BST-BME680-DS001 3.3.1
# temperature, 3.3.2 pressure, 3.3.3 humidity, 3.4.1 gas resistance) with every shift and integer
# division replaced by a true division, evaluated in double precision. This is the arithmetic
# adafruit-circuitpython-bme680 uses, so on a runtime with IEEE doubles (the unix port, CPython) these
# functions give bit-for-bit the values that driver gives for the same registers and calibration.
# It is NOT the datasheet's separate single-precision float variant (different formula layout).
#
# Only loaded by BME680(compensation="float"); a node uses the integer module (bme680_calc), which
# is exact on every port (the ESP32 port's floats are single precision, where this module neither
# matches Adafruit-on-CPython nor beats the integer variant).
#
# Bit-exactness rules followed below (each one changes the last bit if broken):
# - Every intermediate is a double; the raw ADC codes are converted first. Products of calibration
#   integers stay below 2**53 and so are exact either way.
# - Scaling by a power of two is exact, so x * 2 / var1 and x / var1 * 2 agree; sums, products by
#   other constants and divisions by 100 are kept in the datasheet's order.
# - t_fine stays an integer (int32 in the datasheet): the exact sum is truncated toward zero.
# - The pressure formula's cube is one power, (p / 256) ** 3, i.e. a single libm pow() call as in
#   the CircuitPython driver; a product of three factors rounds twice. Both runtimes here call the
#   same C library pow.
# - Humidity is clamped to 0..100000 (0.001 %RH) before the caller divides by 1000; division is
#   monotonic, so this equals clamping the %RH value to 0..100.
from citynode.drivers import SensorError
from citynode.drivers.bme680_calc import GAS_RANGE_LUT1, GAS_RANGE_LUT2


def calc_temperature(cal, adc_t):
    """3.3.1 with exact division: (temperature in 0.01 degC as a float, t_fine as an int)."""
    var1 = float(adc_t) / 8 - cal.par_t1 * 2  # adc_T >> 3 keeps its three low bits as a fraction
    var2 = var1 * cal.par_t2 / 2048
    var3 = (var1 / 2) * (var1 / 2) / 4096
    var3 = var3 * (cal.par_t3 * 16) / 16384
    t_fine = int(var2 + var3)
    return (t_fine * 5 + 128) / 256, t_fine


def calc_pressure(cal, adc_p, t_fine):
    """3.3.2 with exact division: pressure in Pa (float)."""
    var1 = float(t_fine) / 2 - 64000
    var2 = (var1 / 4) * (var1 / 4) / 2048 * cal.par_p6 / 4
    var2 = var2 + var1 * cal.par_p5 * 2
    var2 = var2 / 4 + cal.par_p4 * 65536
    var1 = (var1 / 4) * (var1 / 4) / 8192 * (cal.par_p3 * 32) / 8 + cal.par_p2 * var1 / 2
    var1 = var1 / 262144
    var1 = (32768 + var1) * cal.par_p1 / 32768
    if var1 == 0:
        raise SensorError("bme680", "pressure compensation divides by zero (bad calibration)")
    p = 1048576 - float(adc_p)
    p = (p - var2 / 4096) * 3125
    p = p / var1 * 2  # the integer variant's two orderings coincide here
    var1 = cal.par_p9 * ((p / 8) * (p / 8) / 8192) / 4096
    var2 = (p / 4) * cal.par_p8 / 8192
    var3 = (p / 256) ** 3 * cal.par_p10 / 131072
    return p + (var1 + var2 + var3 + cal.par_p7 * 128) / 16


def calc_humidity(cal, adc_h, t_fine):
    """3.3.3 with exact division: relative humidity in 0.001 %RH (float), clamped to 0..100000."""
    temp_scaled = (float(t_fine) * 5 + 128) / 256
    var1 = (float(adc_h) - cal.par_h1 * 16) - temp_scaled * cal.par_h3 / 100 / 2
    var2 = cal.par_h2 * (
        temp_scaled * cal.par_h4 / 100
        + temp_scaled * (temp_scaled * cal.par_h5 / 100) / 64 / 100
        + 16384
    ) / 1024
    var3 = var1 * var2
    var4 = (cal.par_h6 * 128 + temp_scaled * cal.par_h7 / 100) / 16
    var5 = (var3 / 16384) * (var3 / 16384) / 1024
    var6 = var4 * var5 / 2
    h = (var3 + var6) / 1024 * 1000 / 4096
    return 0.0 if h < 0 else (100000.0 if h > 100000 else h)


def calc_gas_resistance(cal, adc_gas, gas_range):
    """3.4.1 with exact division: gas resistance in whole ohms (int, truncated like the integer variant)."""
    var1 = (1340 + 5 * cal.range_sw_err) * GAS_RANGE_LUT1[gas_range] / 65536
    var2 = (float(adc_gas) * 32768 - 16777216) + var1
    var3 = GAS_RANGE_LUT2[gas_range] * var1 / 512
    return int((var3 + var2 / 2) / var2)
