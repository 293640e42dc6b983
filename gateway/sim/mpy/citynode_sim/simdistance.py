# Simulated DFRobot A02YYUW ultrasonic distance sensor on a UART (see citynode_sim.simdev).
from citynode_sim.simuart import ScriptedUART as _ScriptedUART


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
