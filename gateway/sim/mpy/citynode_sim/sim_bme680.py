# Simulated BME680 register map (BME680 datasheet 5.2 memory map) for SimI2C.
#
# Holds factory calibration bytes laid out exactly as table 11 / 3.11.1 describes, answers the chip id,
# honours soft reset, and on a forced-mode trigger (ctrl_meas mode = 01) fills the data registers
# 0x1F..0x2B with ADC values. The ADC values come either from scripted raw tuples or from scripted /
# seeded-random physical values, which are turned into ADC codes by inverting the datasheet
# compensation (bisection: every formula is monotonic in its ADC input).
from citynode.drivers import bme680_calc as _drv
from citynode_sim.simbus import RegisterDevice
from citynode_sim.simrandom import SimRandom

# A realistic calibration set, of the size and sign real chips carry (par_* per datasheet 3.11.1).
TYPICAL_CALIBRATION = {
    "par_t1": 26292, "par_t2": 26322, "par_t3": 3,
    "par_p1": 35831, "par_p2": -10478, "par_p3": 88, "par_p4": 6628, "par_p5": -147,
    "par_p6": 30, "par_p7": 45, "par_p8": -2475, "par_p9": -3335, "par_p10": 30,
    "par_h1": 757, "par_h2": 1007, "par_h3": 0, "par_h4": 45, "par_h5": 20, "par_h6": 120, "par_h7": -100,
    "par_g1": -21, "par_g2": -12093, "par_g3": 18,
    "res_heat_val": 41, "res_heat_range": 1, "range_sw_err": 2,
}

# register -> (parameter, byte selector): "lo"/"hi" = 16-bit halves, "u8"/"s8" = whole byte
_LAYOUT = (
    (0x8A, "par_t2", "lo"), (0x8B, "par_t2", "hi"), (0x8C, "par_t3", "s8"),
    (0x8E, "par_p1", "lo"), (0x8F, "par_p1", "hi"), (0x90, "par_p2", "lo"), (0x91, "par_p2", "hi"),
    (0x92, "par_p3", "s8"), (0x94, "par_p4", "lo"), (0x95, "par_p4", "hi"),
    (0x96, "par_p5", "lo"), (0x97, "par_p5", "hi"), (0x98, "par_p7", "s8"), (0x99, "par_p6", "s8"),
    (0x9C, "par_p8", "lo"), (0x9D, "par_p8", "hi"), (0x9E, "par_p9", "lo"), (0x9F, "par_p9", "hi"),
    (0xA0, "par_p10", "u8"),
    (0xE4, "par_h3", "s8"), (0xE5, "par_h4", "s8"), (0xE6, "par_h5", "s8"), (0xE7, "par_h6", "u8"),
    (0xE8, "par_h7", "s8"), (0xE9, "par_t1", "lo"), (0xEA, "par_t1", "hi"),
    (0xEB, "par_g2", "lo"), (0xEC, "par_g2", "hi"), (0xED, "par_g1", "s8"), (0xEE, "par_g3", "s8"),
    (0x00, "res_heat_val", "s8"),
)


def calibration_bytes(pars):
    """{register: byte} for a calibration dict (inverse of the driver's Calibration parsing)."""
    out = {}
    for reg, name, sel in _LAYOUT:
        v = pars[name] & 0xFFFF
        out[reg] = v & 0xFF if sel != "hi" else v >> 8
    h1, h2 = pars["par_h1"], pars["par_h2"]
    out[0xE1] = (h2 >> 4) & 0xFF  # par_h2<11:4>
    out[0xE2] = ((h2 & 0x0F) << 4) | (h1 & 0x0F)  # par_h2<3:0> | par_h1<3:0>
    out[0xE3] = (h1 >> 4) & 0xFF  # par_h1<11:4>
    out[0x02] = (pars["res_heat_range"] & 0x03) << 4 | 0x0A  # other bits hold unrelated trim data
    out[0x04] = (pars["range_sw_err"] & 0x0F) << 4 | 0x05
    return out


def _bisect(f, lo, hi, target, increasing):
    """Smallest x in [lo, hi] with f(x) >= target (increasing) or f(x) <= target (decreasing)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        v = f(mid)
        if (v >= target) if increasing else (v <= target):
            hi = mid
        else:
            lo = mid + 1
    return lo


class SimBME680(RegisterDevice):
    """BME680 on a SimI2C bus.

    values: list of dicts with "temperature" (degC), "pressure" (hPa), "relative_humidity" (%),
    "gas_resistance" (ohm), one per conversion, the last repeating; None draws seeded random values
    around a temperate-city climate. raw: list of (adc_t, adc_p, adc_h, adc_gas, gas_range) tuples
    used instead of values. busy_polls: status reads answering "measuring" after each trigger.
    min_heat_ms: shorter heater times leave heat_stab_r clear. stuck: never finish a conversion.
    chip_id: what register 0xD0 answers (0x61; a BME280 says 0x60).
    """

    def __init__(self, calibration=None, values=None, raw=None, seed=1, busy_polls=1, min_heat_ms=20,
                 stuck=False, chip_id=0x61):
        self.chip_id = chip_id
        RegisterDevice.__init__(self, 256)
        self.pars = dict(TYPICAL_CALIBRATION)
        if calibration:
            self.pars.update(calibration)
        self.values = list(values) if values else []
        self.raw = list(raw) if raw else []
        self.rng = SimRandom(seed)
        self.busy_polls = busy_polls
        self.min_heat_ms = min_heat_ms
        self.stuck = stuck
        self.conversions = 0
        self._busy = 0
        self._cal = None
        self._power_on()

    def _power_on(self):
        r = self.regs
        for i in range(256):
            r[i] = 0
        for i in (0x8D, 0x93, 0x9A, 0x9B, 0xA1):
            r[i] = 0x2A  # reserved bytes inside the calibration block hold unrelated trim values
        for reg, val in calibration_bytes(self.pars).items():
            r[reg] = val
        r[0xD0] = self.chip_id
        r[0xF0] = 0x00  # variant_id: BME680
        r[0x1F], r[0x20], r[0x21] = 0x80, 0, 0  # reset values of press/temp/hum (5.2 memory map)
        r[0x22], r[0x23], r[0x24] = 0x80, 0, 0
        r[0x25], r[0x26] = 0x80, 0

    def calibration(self):
        if self._cal is None:
            r = self.regs
            self._cal = _drv.Calibration(r[0x89:0xA2], r[0xE1:0xF1], r[0x00], r[0x02], r[0x04])
        return self._cal

    # Bosch I2C writes are (register, data) pairs (datasheet 6.2.1)
    def write_raw(self, buf):
        for i in range(0, len(buf) - 1, 2):
            self.write_reg(buf[i], buf[i + 1])
        if len(buf) % 2:
            self.pointer = buf[-1]

    def read_reg(self, reg):
        if reg == 0x1D and self._busy:
            self._busy -= 1
            return 0x20  # measuring
        return self.regs[reg]

    def write_reg(self, reg, value):
        if reg == 0xE0:
            if value == 0xB6:
                self._power_on()
            return
        if reg in (0xD0, 0xF0) or 0x89 <= reg <= 0xA1 or 0xE1 <= reg <= 0xEE:
            return  # read-only
        self.regs[reg] = value
        if reg == 0x74 and value & 0x03 == 0x01:
            self._convert()

    def _next(self, script):
        return script.pop(0) if len(script) > 1 else script[0]

    def _random_values(self):
        rng = self.rng
        return {"temperature": rng.uniform(-5, 32), "pressure": rng.uniform(985, 1035),
                "relative_humidity": rng.uniform(25, 95), "gas_resistance": rng.uniform(5e3, 4e5)}

    def to_raw(self, v):
        """ADC codes (adc_t, adc_p, adc_h, adc_gas, gas_range) that compensate to the values in `v`."""
        cal = self.calibration()
        t_target = int(round(v["temperature"] * 100))
        adc_t = _bisect(lambda a: _drv.calc_temperature(cal, a)[0], 0, 0xFFFFF, t_target, True)
        t_fine = _drv.calc_temperature(cal, adc_t)[1]
        p_target = int(round(v["pressure"] * 100))
        adc_p = _bisect(lambda a: _drv.calc_pressure(cal, a, t_fine), 0, 0xFFFFF, p_target, False)
        h_target = int(round(v["relative_humidity"] * 1000))
        adc_h = _bisect(lambda a: _drv.calc_humidity(cal, a, t_fine), 0, 0xFFFF, h_target, True)
        g = v.get("gas_resistance", 50000)
        best = None
        for rng in range(16):  # the chip picks the range that keeps the ADC near mid-scale
            adc = _bisect(lambda a: _drv.calc_gas_resistance(cal, a, rng), 0, 1023, g, False)
            score = abs(adc - 512)
            if best is None or score < best[0]:
                best = (score, adc, rng)
        return adc_t, adc_p, adc_h, best[1], best[2]

    def _convert(self):
        r = self.regs
        self.regs[0x74] &= 0xFC  # back to sleep mode after the forced conversion (5.3.1.3)
        if self.stuck:
            r[0x1D] = 0x20
            return
        self.conversions += 1
        if self.raw:
            adc_t, adc_p, adc_h, adc_g, g_range = self._next(self.raw)
        else:
            v = self._next(self.values) if self.values else self._random_values()
            adc_t, adc_p, adc_h, adc_g, g_range = self.to_raw(v)
        ctrl = r[0x74]
        if not ctrl >> 5:
            adc_t = 0x80000  # osrs_t = 0: skipped
        if not (ctrl >> 2) & 0x07:
            adc_p = 0x80000
        if not r[0x72] & 0x07:
            adc_h = 0x8000
        r[0x1F], r[0x20], r[0x21] = adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4
        r[0x22], r[0x23], r[0x24] = adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4
        r[0x25], r[0x26] = adc_h >> 8, adc_h & 0xFF
        run_gas = r[0x71] & 0x10 and not r[0x70] & 0x08
        flags = 0
        if run_gas:
            flags = 0x20  # gas_valid_r
            if r[0x5A] and _drv.gas_wait_ms(r[0x64]) >= self.min_heat_ms:
                flags |= 0x10  # heat_stab_r
        r[0x2A] = adc_g >> 2
        r[0x2B] = ((adc_g & 0x03) << 6) | flags | g_range
        r[0x1D] = 0x80  # new_data_0, gas_meas_index 0
        self._busy = self.busy_polls
