# Plantower PMS5003 laser particle counter, UART 9600 8N1 (PMS5003 data manual V2.3, "Appendix I:
# transport protocol" and "Appendix II: host protocol").
#
# Data frame, 32 bytes: 42 4D | frame length (2*13+2 = 28, big-endian) | 13 big-endian 16-bit data
# words | check code = 16-bit sum of every preceding byte. Words 1-3 are PM1.0/2.5/10 at "CF=1,
# standard particle" (factory calibration), words 4-6 the same "under atmospheric environment" (what
# we report), 7-12 particle counts per 0.1 L, 13 reserved.
# Host command, 7 bytes: 42 4D CMD DATAH DATAL LRCH LRCL, LRC = sum of the five bytes before it.
#   E2 00 00 read (passive mode) | E1 00 00/01 passive/active mode | E4 00 00/01 sleep/wake
# Command acknowledgements come back as frames with length 4; they are skipped.
from citynode.compat import const
from citynode.drivers.particulate import ParticulateSensor

_S1 = const(0x42)
_S2 = const(0x4D)
_CMD_READ = const(0xE2)
_CMD_MODE = const(0xE1)
_CMD_SLEEP = const(0xE4)
_DATA_LEN = const(28)
_ACK_LEN = const(4)


def command(cmd, data=0):
    f = bytearray((_S1, _S2, cmd, data >> 8, data & 0xFF, 0, 0))
    lrc = sum(f[0:5])
    f[5] = lrc >> 8
    f[6] = lrc & 0xFF
    return f


def data_frame(pm1_0, pm2_5, pm10, counts=(0, 0, 0, 0, 0, 0), cf1=None):
    """A 32-byte data frame (atmospheric values; CF=1 words default to the same), for simulation."""
    cf1 = cf1 or (pm1_0, pm2_5, pm10)
    words = tuple(cf1) + (pm1_0, pm2_5, pm10) + tuple(counts) + (0x9700,)
    f = bytearray(32)
    f[0], f[1], f[2], f[3] = _S1, _S2, 0, _DATA_LEN
    for i, w in enumerate(words):
        w = int(round(w))
        f[4 + 2 * i] = (w >> 8) & 0xFF
        f[5 + 2 * i] = w & 0xFF
    s = sum(f[0:30])
    f[30], f[31] = (s >> 8) & 0xFF, s & 0xFF
    return bytes(f)


def ack_frame(cmd, data):
    f = bytearray((_S1, _S2, 0, _ACK_LEN, cmd, data, 0, 0))
    s = sum(f[0:6])
    f[6], f[7] = s >> 8, s & 0xFF
    return bytes(f)


class PMS5003(ParticulateSensor):
    NAME = "pms5003"
    FRAME_LEN = 32

    def __init__(self, uart, clock=None, **kwargs):
        ParticulateSensor.__init__(self, uart, clock, **kwargs)
        self.counts = None  # particles per 0.1 L (>0.3, >0.5, >1.0, >2.5, >5, >10 um) of the last frame

    def _parse(self, mv, n):
        i = 0
        while i < n - 1 and not (mv[i] == _S1 and mv[i + 1] == _S2):
            i += 1
        if i:
            self.skipped_bytes += i
            return i, None
        if n < 4:
            return 0, None
        length = (mv[2] << 8) | mv[3]
        if length != _DATA_LEN and length != _ACK_LEN:
            self.skipped_bytes += 1
            return 1, None
        total = 4 + length
        if n < total:
            return 0, None
        if sum(mv[0:total - 2]) & 0xFFFF != (mv[total - 2] << 8) | mv[total - 1]:
            self.bad_checksums += 1
            self.skipped_bytes += 1
            return 1, None
        if length == _ACK_LEN:
            return total, None

        def word(k):  # data word k, 1-based as in the manual
            return (mv[2 + 2 * k] << 8) | mv[3 + 2 * k]

        self.counts = (word(7), word(8), word(9), word(10), word(11), word(12))
        return total, {"pm1_0": word(4), "pm2_5": word(5), "pm10": word(6)}

    def _wake(self):
        self.uart.write(command(_CMD_SLEEP, 1))
        self._passive = False  # the sensor restarts in active mode after a wake-up

    def _sleep(self):
        self.uart.write(command(_CMD_SLEEP, 0))

    def _request(self):
        if not getattr(self, "_passive", False):
            # after the warm-up the sensor has booted and accepts the mode change; until then any
            # active-mode frames were flushed. Passive mode: one frame per read command.
            self.uart.write(command(_CMD_MODE, 0))
            self._passive = True
        self.uart.write(command(_CMD_READ))
