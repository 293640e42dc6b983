# Simulated particulate sensors (SDS011, PMS5003) on a UART: they answer the real command frames of
# their protocols with frames built by the drivers' own frame builders (see citynode_sim.simdev).
from citynode_sim.simuart import ScriptedUART as _ScriptedUART
from citynode_sim.simuart import log


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
