# The sim board's RTC with its battery-backed memory (the LoRaWAN session store keeps the session in it
# across deep sleep). Its own module: a LoRaWAN node loads it, and nothing else of the sim board's extras.


class SimRTC:
    """RTC with battery-backed memory (machine.RTC().memory() survives deep sleep on ESP32)."""

    def __init__(self):
        self._mem = b""
        self._dt = (2026, 1, 1, 3, 0, 0, 0, 0)

    def memory(self, data=None):
        if data is None:
            return self._mem
        if len(data) > 2048:
            raise ValueError("rtc memory: max 2048 bytes")
        self._mem = bytes(data)

    def datetime(self, dt=None):
        if dt is None:
            return self._dt
        self._dt = tuple(dt)
