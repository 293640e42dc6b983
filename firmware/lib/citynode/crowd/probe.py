# 802.11 probe requests from a frame source -> transmitter addresses for the anonymiser.
#
# IEEE 802.11-2020 9.2.4.1: Frame Control octet 0 = protocol version (bits 0-1, must be 0), type
# (bits 2-3), subtype (bits 4-7). Management (type 0) subtype 4 = Probe Request (table 9-1).
# Management frame header (9.3.3.2): FC 2, Duration 2, Address 1 (receiver/DA) 6, Address 2 (SA,
# transmitter) 6, Address 3 (BSSID) 6, Sequence Control 2 = 24 bytes. We need Address 2 at offset 10.
#
# Records come in the format documented in citynode/crowd/__init__.py. Other frame types are ignored;
# records that are truncated, have a bad protocol version or a group transmitter address are malformed.
# After each drain the buffer is wiped: addresses do not outlive the poll that read them.
from citynode.compat import const
from citynode.crowd import RECORD_HEADER, RECORD_MAX_FRAME

_FC_VERSION_MASK = const(0x03)
_FC_PROBE_REQ = const(0x40)  # version 0, type 0 (management), subtype 4
_MGMT_HDR_LEN = const(24)
_ADDR2 = const(10)


def classify(buf, start, n):
    """Classify the frame buf[start:start+n]: returns the offset of Address 2 for a probe request,
    -1 for another (well-formed) frame type, -2 for a malformed frame."""
    if n < 2:
        return -2
    fc0 = buf[start]
    if fc0 & _FC_VERSION_MASK:
        return -2
    if fc0 != _FC_PROBE_REQ:
        return -1
    if n < _MGMT_HDR_LEN:
        return -2  # truncated probe request
    if buf[start + _ADDR2] & 0x01:
        return -2  # a group address cannot transmit
    return start + _ADDR2


class ProbeCounter:
    """Drains a frame source and feeds probe-request transmitters into an Anonymiser.

    source      object with read(buf) -> n (whole records), e.g. wifisniff, ReplaySource, SyntheticWifi
    anonymiser  citynode.crowd.anonymiser.Anonymiser
    buf_size    bytes drained per read; RAM is this plus a same-size zero block for wiping
    """

    def __init__(self, source, anonymiser, buf_size=1024):
        self._source = source
        self._anon = anonymiser
        self._buf = bytearray(buf_size)
        self._mv = memoryview(self._buf)
        self._zero = memoryview(bytes(buf_size))
        self.frames = 0  # records seen
        self.probes = 0  # probe requests passed to the anonymiser
        self.ignored = 0  # other frame types
        self.malformed = 0

    def poll(self, max_reads=16):
        """Read up to `max_reads` buffers from the source; returns the number of probe requests handled."""
        buf = self._buf
        mv = self._mv
        handled = 0
        for _ in range(max_reads):
            n = self._source.read(buf)
            if not n:
                break
            handled += self._parse(buf, n)
            mv[:n] = self._zero[:n]  # privacy: no address stays in RAM after this poll
        return handled

    def _parse(self, buf, n):
        off = 0
        handled = 0
        while off + RECORD_HEADER <= n:
            flen = buf[off] | (buf[off + 1] << 8)
            if flen > RECORD_MAX_FRAME or off + RECORD_HEADER + flen > n:
                self.malformed += 1  # a source bug or a corrupt capture: drop the rest of this buffer
                return handled
            rssi = buf[off + 2]
            if rssi > 127:
                rssi -= 256
            self.frames += 1
            a2 = classify(buf, off + RECORD_HEADER, flen)
            if a2 >= 0:
                self.probes += 1
                self._anon.add_wifi(buf, a2, rssi)
                handled += 1
            elif a2 == -1:
                self.ignored += 1
            else:
                self.malformed += 1
            off += RECORD_HEADER + flen
        if off != n:
            self.malformed += 1
        return handled
