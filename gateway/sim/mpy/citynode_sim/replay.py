# Replay of captured 802.11 frames: the WiFi frame source on the unix port (and for bench captures).
#
# File format ("CNWIFI1"): an 8-byte magic b"CNWIFI1\n", then records back to back in the record format
# of citynode/crowd/__init__.py (uint16 LE length N, int8 RSSI dBm, uint8 channel, N frame bytes).
# A file ending inside a record is tolerated (the partial record is dropped and counted in `truncated`);
# a record longer than RECORD_MAX_FRAME means the file is not a capture and raises ReplayError naming
# the byte offset.
from citynode.compat import const
from citynode.crowd import RECORD_HEADER, RECORD_MAX_FRAME

MAGIC = b"CNWIFI1\n"
_MAGIC_LEN = const(8)


class ReplayError(ValueError):
    """The replay file is not a CNWIFI1 capture or is corrupt; the message names the file and offset."""


def pack_record(frame, rssi, channel=0):
    """One record: header + frame bytes."""
    n = len(frame)
    if n > RECORD_MAX_FRAME:
        raise ReplayError("frame of %d bytes exceeds %d" % (n, RECORD_MAX_FRAME))
    if not -128 <= rssi <= 127:
        raise ReplayError("rssi %r out of int8 range" % (rssi,))
    return bytes((n & 0xFF, n >> 8, rssi & 0xFF, channel & 0xFF)) + bytes(frame)


class ReplaySource:
    """Frame source reading a CNWIFI1 file: read(buf) -> bytes of whole records copied into buf.

    loop=True restarts at the first record at end of file (demos); otherwise read() returns 0 at the end.
    """

    def __init__(self, path, loop=False):
        self._path = path
        self._loop = loop
        self._f = open(path, "rb")
        self._hdr = bytearray(RECORD_HEADER)
        self._pending = False  # a header is read but its record did not fit the last buffer
        self._offset = 0
        self.truncated = 0
        self._start()

    def _start(self):
        self._f.seek(0)
        magic = self._f.read(_MAGIC_LEN)
        if magic != MAGIC:
            raise ReplayError("%s: not a CNWIFI1 capture (bad magic)" % self._path)
        self._offset = _MAGIC_LEN
        self._pending = False

    def read(self, buf):
        mv = memoryview(buf)
        pos = 0
        looped = False
        while True:
            if not self._pending:
                got = self._f.readinto(self._hdr)
                if not got:
                    if self._loop and not looped and pos == 0:
                        looped = True
                        self._start()
                        continue
                    return pos
                if got < RECORD_HEADER:
                    self.truncated += 1
                    return pos
                self._pending = True
            n = self._hdr[0] | (self._hdr[1] << 8)
            if n > RECORD_MAX_FRAME:
                raise ReplayError(
                    "%s: record at byte %d claims %d frame bytes (max %d)"
                    % (self._path, self._offset, n, RECORD_MAX_FRAME)
                )
            if RECORD_HEADER + n > len(buf) - pos:
                if pos == 0:
                    raise ReplayError("buffer of %d bytes cannot hold a %d-byte record" % (len(buf), n + 4))
                return pos  # keep the header pending for the next call
            mv[pos : pos + RECORD_HEADER] = self._hdr
            got = self._f.readinto(mv[pos + RECORD_HEADER : pos + RECORD_HEADER + n]) if n else 0
            if (got or 0) < n:
                self.truncated += 1
                self._pending = False
                for i in range(pos, pos + RECORD_HEADER + n):
                    buf[i] = 0
                return pos
            self._pending = False
            self._offset += RECORD_HEADER + n
            pos += RECORD_HEADER + n

    def close(self):
        self._f.close()


class ReplayWriter:
    """Writes a CNWIFI1 file (captures for tests, bench and demos)."""

    def __init__(self, path):
        self._f = open(path, "wb")
        self._f.write(MAGIC)

    def write(self, frame, rssi, channel=0):
        self._f.write(pack_record(frame, rssi, channel))

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
