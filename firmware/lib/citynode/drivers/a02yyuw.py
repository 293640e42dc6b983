# DFRobot A02YYUW (SEN0311) waterproof ultrasonic sensor, UART 9600 8N1, output-only.
#
# The module streams 4-byte frames about every 100 ms: 0xFF, DATA_H, DATA_L, SUM with
# distance = DATA_H * 256 + DATA_L in mm and SUM = (0xFF + DATA_H + DATA_L) & 0xFF.
# Range 30..4500 mm. The module converts time to distance itself; if its firmware assumes a fixed
# speed of sound, pass reference_c_ms (m/s) and the reading is rescaled to the air temperature.
from citynode.compat import const
from citynode.drivers.distance import DistanceSensor, speed_of_sound

_HEAD = const(0xFF)
_FRAME_TIMEOUT_MS = const(500)  # > 4 frame periods


def frame(distance_mm):
    """One output frame, for simulation and tests."""
    h, l = (distance_mm >> 8) & 0xFF, distance_mm & 0xFF
    return bytes((_HEAD, h, l, (_HEAD + h + l) & 0xFF))


class A02YYUW(DistanceSensor):
    NAME = "a02yyuw"
    MIN_MM = 30
    MAX_MM = 4500

    def __init__(self, uart, clock=None, *, reference_c_ms=None, **kwargs):
        kwargs.setdefault("interval_ms", 0)  # the module paces its own frames
        DistanceSensor.__init__(self, clock, **kwargs)
        self.uart = uart
        self.reference_c_ms = reference_c_ms
        self._buf = bytearray(4)
        self._n = 0
        self.bad_checksums = 0
        self._fresh = False

    def measure(self, temperature_c=None, flush=True):
        if flush:  # drop the backlog so the median is built from current frames
            for _ in range(8):
                waiting = self.uart.any()
                if not waiting:
                    break
                self.uart.read(min(waiting, 64))
            self._n = 0
        return DistanceSensor.measure(self, temperature_c)

    def _next_frame(self):
        """Next valid frame's distance in mm, or None after the frame timeout."""
        clock = self.clock
        start = clock.ticks_ms()
        buf = self._buf
        while clock.ticks_diff(clock.ticks_ms(), start) < _FRAME_TIMEOUT_MS:
            if not self.uart.any():
                clock.sleep_ms(10)
                continue
            b = self.uart.read(1)
            if not b:
                continue
            b = b[0]
            if self._n == 0 and b != _HEAD:
                continue  # resync: wait for a header byte
            buf[self._n] = b
            self._n += 1
            if self._n < 4:
                continue
            self._n = 0
            if (buf[0] + buf[1] + buf[2]) & 0xFF == buf[3]:
                return (buf[1] << 8) | buf[2]
            self.bad_checksums += 1
            # the bad frame may have swallowed the next header: rescan its last three bytes
            for i in (1, 2, 3):
                if buf[i] == _HEAD:
                    for j in range(i, 4):
                        buf[self._n] = buf[j]
                        self._n += 1
                    break
        return None

    def _ping(self, temperature_c):
        mm = self._next_frame()
        if mm is None or mm == 0:
            return None  # no frame, or the module's "no echo" value
        if self.reference_c_ms:
            mm = mm * speed_of_sound(temperature_c) / self.reference_c_ms
        return mm
