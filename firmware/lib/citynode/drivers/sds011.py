# Nova Fitness SDS011 laser PM2.5/PM10 sensor, UART 9600 8N1 ("Laser Dust Sensor Control Protocol"
# V1.3; section names below refer to it).
#
# Sensor -> host: 10 bytes  AA C0 PM25_L PM25_H PM10_L PM10_H ID1 ID2 CS AB   (data, 0.1 ug/m3)
#                           AA C5 CMD D1 D2 D3 ID1 ID2 CS AB                   (command reply)
#                 CS = low byte of the sum of bytes 2..7
# Host -> sensor: 19 bytes  AA B4 CMD D2..D13 FF FF CS AB, CS = low byte of the sum of bytes 2..16
#                 (FF FF addresses every sensor on the line)
# The driver keeps the sensor in query reporting mode (it answers only when asked) and sleeps it
# between readings. A sleeping SDS011 ignores everything except the work command, and often misses
# the first one, so waking retries.
from citynode.compat import const
from citynode.drivers import SensorError
from citynode.drivers.particulate import ParticulateSensor

_HEAD = const(0xAA)
_TAIL = const(0xAB)
_DATA = const(0xC0)
_REPLY = const(0xC5)
_CMD = const(0xB4)
_CMD_MODE = const(2)  # data reporting mode: D2 1=set, D3 0=active 1=query
_CMD_QUERY = const(4)  # query data
_CMD_SLEEP = const(6)  # sleep and work: D2 1=set, D3 0=sleep 1=work
_CMD_PERIOD = const(8)  # working period: D2 1=set, D3 0=continuous, 1..30 min
_WAKE_TRIES = const(3)


def command(cmd, d2=0, d3=0, device_id=0xFFFF):
    """The 19-byte command frame (protocol V1.3 "command format")."""
    f = bytearray(19)
    f[0] = _HEAD
    f[1] = _CMD
    f[2] = cmd
    f[3] = d2
    f[4] = d3
    f[15] = device_id >> 8
    f[16] = device_id & 0xFF
    f[17] = sum(f[2:17]) & 0xFF
    f[18] = _TAIL
    return f


def data_frame(pm2_5_ugm3, pm10_ugm3, device_id=0xA160):
    """A sensor data frame, for simulation and tests."""
    a = int(round(pm2_5_ugm3 * 10))
    b = int(round(pm10_ugm3 * 10))
    f = bytearray((_HEAD, _DATA, a & 0xFF, a >> 8, b & 0xFF, b >> 8, device_id >> 8, device_id & 0xFF, 0, _TAIL))
    f[8] = sum(f[2:8]) & 0xFF
    return bytes(f)


def reply_frame(cmd, d1=0, d2=0, d3=0, device_id=0xA160):
    f = bytearray((_HEAD, _REPLY, cmd, d1, d2, d3, device_id >> 8, device_id & 0xFF, 0, _TAIL))
    f[8] = sum(f[2:8]) & 0xFF
    return bytes(f)


class SDS011(ParticulateSensor):
    NAME = "sds011"
    FRAME_LEN = 10

    def __init__(self, uart, clock=None, **kwargs):
        ParticulateSensor.__init__(self, uart, clock, **kwargs)
        self._query_mode = False
        self.last_reply = None  # (cmd, d1, d2) of the last C5 reply
        self.device_id = None

    def _parse(self, mv, n):
        i = 0
        while i < n and mv[i] != _HEAD:
            i += 1
        if i:
            self.skipped_bytes += i
            return i, None
        if n < 10:
            return 0, None
        kind = mv[1]
        ok = (kind == _DATA or kind == _REPLY) and mv[9] == _TAIL
        if ok and (sum(mv[2:8]) & 0xFF) != mv[8]:
            self.bad_checksums += 1
            ok = False
        if not ok:  # not a frame start after all: resynchronise one byte further
            self.skipped_bytes += 1
            return 1, None
        self.device_id = (mv[6] << 8) | mv[7]
        if kind == _REPLY:
            self.last_reply = (mv[2], mv[3], mv[4])
            return 10, None
        return 10, {"pm2_5": ((mv[3] << 8) | mv[2]) / 10, "pm10": ((mv[5] << 8) | mv[4]) / 10}

    def _send(self, cmd, d2=0, d3=0):
        self.uart.write(command(cmd, d2, d3))

    def _await_reply(self, cmd, timeout_ms):
        """Wait for the C5 reply to `cmd`; data frames arriving meanwhile are dropped. Returns bool."""
        clock = self.clock
        start = clock.ticks_ms()
        self.last_reply = None
        while clock.ticks_diff(clock.ticks_ms(), start) < timeout_ms:
            self._take()
            if self.last_reply is not None and self.last_reply[0] == cmd:
                return True
            if not self._pump():
                clock.sleep_ms(20)
        return False

    def _wake(self):
        for _ in range(_WAKE_TRIES):
            self._send(_CMD_SLEEP, 1, 1)
            if self._await_reply(_CMD_SLEEP, 1000):
                break
        else:
            raise SensorError(self.NAME, "no reply to the work command")
        if not self._query_mode:
            self._send(_CMD_MODE, 1, 1)  # query reporting mode: no unsolicited frames
            if not self._await_reply(_CMD_MODE, 1000):
                raise SensorError(self.NAME, "no reply to the query-mode command")
            self._query_mode = True

    def _sleep(self):
        self._send(_CMD_SLEEP, 1, 0)
        if not self._await_reply(_CMD_SLEEP, 1000):
            raise SensorError(self.NAME, "no reply to the sleep command")

    def _request(self):
        self._send(_CMD_QUERY)
