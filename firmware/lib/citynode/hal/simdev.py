# Simulated UART sensors (SDS011, PMS5003, A02YYUW) and the sim board's device set-up.
#
# Each sensor is a SimUART that answers the real command frames of its protocol (see the drivers for
# the formats) with frames built by the drivers' own frame builders, so a protocol mistake shows up
# as a failing test rather than as two matching mistakes. Values are scripted (a list, consumed one
# per frame, the last repeating) or drawn from a seeded SimRandom. Faults can be injected: garbage
# before frames, frames with a broken checksum, a sensor that ignores its first wake command, a dead
# sensor, and chunked delivery (partial frames per read).
from citynode.hal.sim import SimPulse, SimRandom, SimUART, echo_us
from citynode.hal.simbus import log


class _ScriptedUART(SimUART):
    """Shared plumbing: scripted values, injected bytes, optional streaming paced by a clock."""

    def __init__(self, values=None, seed=1, inject=(), corrupt=(), dead=False, chunk=0, clock=None,
                 period_ms=1000):
        SimUART.__init__(self, b"", self._on_write, chunk)
        self.values = list(values) if values else []
        self.rng = SimRandom(seed)
        self.inject = list(inject)  # byte strings fed before the next frames, one per frame
        self.corrupt = set(corrupt)  # indexes (0-based) of data frames sent with a bad checksum
        self.dead = dead
        self.clock = clock
        self.period_ms = period_ms
        self.sent = 0
        self.streaming = False
        self._next_ms = 0

    def _value(self):
        if self.values:
            return self.values.pop(0) if len(self.values) > 1 else self.values[0]
        return self._random_value()

    def _emit_data(self):
        if self.inject:
            self.feed(self.inject.pop(0))
        frame = bytearray(self._data_frame(self._value()))
        if self.sent in self.corrupt:
            frame[-2 if frame[0] == 0xAA else -1] ^= 0x5A  # break the checksum byte
        self.sent += 1
        self.feed(frame)

    def any(self):
        if self.streaming and not self.dead and not self.rx:
            if self.clock is None:
                self._emit_data()
            elif self.clock.ticks_ms() >= self._next_ms:
                self._next_ms = self.clock.ticks_ms() + self.period_ms
                self._emit_data()
        return len(self.rx)


class SimSDS011(_ScriptedUART):
    """SDS011: values are (pm2_5, pm10) in ug/m3. Starts awake in active reporting mode."""

    def __init__(self, values=None, drop_first_wake=False, **kwargs):
        _ScriptedUART.__init__(self, values, **kwargs)
        self.sleeping = False
        self.query_mode = False
        self.streaming = self.clock is not None
        self.drop_first_wake = drop_first_wake
        self.commands = []

    def _random_value(self):
        pm25 = round(self.rng.uniform(3, 35), 1)
        return pm25, round(pm25 * self.rng.uniform(1.1, 1.8), 1)

    def _data_frame(self, v):
        from citynode.drivers.sds011 import data_frame

        return data_frame(v[0], v[1])

    def _on_write(self, data):
        from citynode.drivers.sds011 import reply_frame

        if self.dead or len(data) != 19 or data[0] != 0xAA or data[1] != 0xB4 or data[18] != 0xAB:
            return
        if sum(data[2:17]) & 0xFF != data[17]:
            return  # the sensor ignores commands with a bad checksum
        cmd, d2, d3 = data[2], data[3], data[4]
        log(self.commands, cmd)
        if self.sleeping and not (cmd == 6 and d2 == 1 and d3 == 1):
            return
        if cmd == 6:
            if d2 == 1 and d3 == 1 and self.drop_first_wake:
                self.drop_first_wake = False
                return
            if d2 == 1:
                self.sleeping = d3 == 0
            self.streaming = not self.sleeping and not self.query_mode and self.clock is not None
            self.feed(reply_frame(6, d2, 0 if self.sleeping else 1))
        elif cmd == 2:
            if d2 == 1:
                self.query_mode = d3 == 1
                self.streaming = not self.query_mode and self.clock is not None
            self.feed(reply_frame(2, d2, 1 if self.query_mode else 0))
        elif cmd == 4:
            self._emit_data()
        elif cmd == 8:
            self.feed(reply_frame(8, d2, d3))


class SimPMS5003(_ScriptedUART):
    """PMS5003: values are (pm1_0, pm2_5, pm10) in ug/m3. Starts awake in active mode."""

    def __init__(self, values=None, **kwargs):
        _ScriptedUART.__init__(self, values, **kwargs)
        self.sleeping = False
        self.passive = False
        self.streaming = self.clock is not None
        self.commands = []

    def _random_value(self):
        pm25 = self.rng.randint(3, 35)
        return max(0, pm25 - self.rng.randint(0, 3)), pm25, pm25 + self.rng.randint(0, 12)

    def _data_frame(self, v):
        from citynode.drivers.pms5003 import data_frame

        return data_frame(v[0], v[1], v[2], counts=(900, 270, 60, 8, 2, 1))

    def _on_write(self, data):
        from citynode.drivers.pms5003 import ack_frame

        if self.dead or len(data) != 7 or data[0] != 0x42 or data[1] != 0x4D:
            return
        if sum(data[0:5]) != (data[5] << 8) | data[6]:
            return
        cmd, value = data[2], data[4]
        log(self.commands, (cmd, value))
        if cmd == 0xE4:
            if value == 1:
                self.sleeping = False
                self.passive = False  # wake-up restarts the sensor in active mode
            elif not self.sleeping:
                self.sleeping = True
                self.feed(ack_frame(0xE4, 0))
        elif self.sleeping:
            return
        elif cmd == 0xE1:
            self.passive = value == 0
            self.feed(ack_frame(0xE1, value))
        elif cmd == 0xE2 and self.passive:
            self._emit_data()
        self.streaming = not self.sleeping and not self.passive and self.clock is not None


class SimA02YYUW(_ScriptedUART):
    """DFRobot A02YYUW: streams FF H L SUM frames with the distance in mm (~100 ms apart).
    A scripted value of None sends no frame for that slot (no echo)."""

    def __init__(self, values=None, **kwargs):
        kwargs.setdefault("period_ms", 100)
        _ScriptedUART.__init__(self, values, **kwargs)
        self.streaming = True

    def _random_value(self):
        # a bin slowly filling: a level drifting by up to 2 mm per frame plus a few mm of echo noise
        level = getattr(self, "_level", None)
        if level is None:
            level = self.rng.randint(400, 1100)
        self._level = level = max(300, level - self.rng.uniform(0, 2))
        return int(level + self.rng.noise(3))

    def _data_frame(self, mm):
        from citynode.drivers.a02yyuw import frame

        return b"" if mm is None else frame(mm)

    def _on_write(self, data):
        pass


# --- the sim board's devices, created on first use by SimHal -------------------------------------------
# `values` (SimHal(values=...)) scripts them:
#   air: list of BME680 climates (dicts)   pm_sensor: "sds011" | "pms5003"   pm: list of PM tuples
#   distance_mm: list of ultrasonic targets (None = no echo), for trigger/echo and the A02YYUW UART
#   air_temperature_c: air temperature the echoes travel through   battery_v: volts at the cell
#   tilt: 0/1   fault: names of sensors to make absent or dead ("bme680", "pm", "distance")


def attach_i2c_devices(hal, bus):
    if "bme680" in hal.values.get("fault", ()):
        return
    from citynode.hal.sim_bme680 import SimBME680

    addr = hal.board.get("bme680_address", 0x77)
    hal.devices["bme680"] = bus.attach(addr, SimBME680(values=hal.values.get("air"), seed=hal.device_seed(0)))


def make_uart_device(hal, name):
    v = hal.values
    dead = name in v.get("fault", ())
    if name == "pm":
        cls = SimPMS5003 if v.get("pm_sensor") == "pms5003" else SimSDS011
        dev = cls(v.get("pm"), seed=hal.device_seed(1), clock=hal.clock, dead=dead)
    elif name == "distance":
        dev = SimA02YYUW(v.get("distance_mm"), seed=hal.device_seed(2), clock=hal.clock, dead=dead)
    else:
        dev = SimUART()
    hal.devices[name] = dev
    return dev


def make_pulse(hal):
    v = hal.values
    if "distance" in v.get("fault", ()):
        return SimPulse([-2])
    temp_c = v.get("air_temperature_c", 20.0)
    script = v.get("distance_mm") or [SimRandom(hal.device_seed(3)).randint(300, 1200)]
    return SimPulse([-1 if d is None else echo_us(d, temp_c) for d in script])
