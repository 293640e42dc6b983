# NMEA 0183 parser (RMC, GGA) and a non-blocking GPS driver over a UART, for the passenger_count role.
#
# Sentence format (NMEA 0183 v4.10, 5.2/5.3): "$" + talker (2) + type (3) + "," fields + "*" + two hex
# digits = XOR of every character between "$" and "*", then CR LF; at most 82 characters including "$"
# and CR LF. Talkers accepted: GP (GPS), GN (multi-GNSS), GL (GLONASS), GA (Galileo), GB/BD (BeiDou).
#
#   RMC: 1 UTC time hhmmss.ss, 2 status A=valid V=warning, 3 lat ddmm.mmmm, 4 N/S, 5 lon dddmm.mmmm,
#        6 E/W, 7 speed over ground (knots), 8 course (deg true), 9 date ddmmyy, 10 magnetic variation,
#        11 E/W, [12 mode A/D/E/M/S/N (v2.3+; N = not valid)], [13 nav status (v4.1+)]
#   GGA: 1 UTC time, 2 lat, 3 N/S, 4 lon, 5 E/W, 6 fix quality (0 = invalid, 1 GPS, 2 DGPS, 4 RTK, 5 float
#        RTK, 6 dead reckoning, ...), 7 satellites in use, 8 HDOP, 9 altitude (m MSL), 10 "M",
#        11 geoid separation, 12 "M", 13 DGPS age, 14 DGPS station
#
# Positions are converted with integer arithmetic to micro-degrees (lat_udeg, lon_udeg; 1e-6 deg = 0.11 m)
# because the ESP32 port's single-precision floats cannot hold ddmm.mmmm exactly; `latitude`/`longitude`
# are the same values as floats for convenience. South and West are negative.
from citynode.compat import const

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    import time as _time

    def ticks_ms():
        return (_time.monotonic_ns() // 1000000) & ((1 << 30) - 1)

    def ticks_diff(a, b):
        return ((a - b + (1 << 29)) & ((1 << 30) - 1)) - (1 << 29)


_MAX_SENTENCE = const(82)  # NMEA 0183 5.3: max characters incl. "$" and CR LF
_TALKERS = ("GP", "GN", "GL", "GA", "GB", "BD")


class NMEAError(ValueError):
    """A sentence was rejected; `reason` is one of "checksum", "format", "field:<name>"."""

    def __init__(self, reason, detail=""):
        super().__init__("nmea %s%s" % (reason, (": " + detail) if detail else ""))
        self.reason = reason


def checksum(body):
    """XOR of the characters of `body` (the text between "$" and "*")."""
    c = 0
    for ch in body:
        c ^= ord(ch)
    return c


def _split(line):
    if isinstance(line, (bytes, bytearray, memoryview)):
        for c in line:
            if c > 0x7E:
                raise NMEAError("format", "non-ASCII bytes")
        line = str(bytes(line), "ascii")
    line = line.strip()
    if len(line) > _MAX_SENTENCE or not line.startswith("$"):
        raise NMEAError("format", "not a sentence")
    star = line.find("*")
    if star < 0 or len(line) != star + 3:
        raise NMEAError("checksum", "missing")
    try:
        want = int(line[star + 1 :], 16)
    except ValueError:
        raise NMEAError("checksum", "not hex") from None
    body = line[1:star]
    if checksum(body) != want:
        raise NMEAError("checksum", "mismatch")
    fields = body.split(",")
    if len(fields[0]) != 5:
        raise NMEAError("format", "address field")
    return fields


def _time(s):
    # hhmmss(.sss) -> (h, m, s); None when empty
    if not s:
        return None
    if len(s) < 6 or not s[:6].isdigit():
        raise NMEAError("field:time", s)
    h, m, sec = int(s[0:2]), int(s[2:4]), int(s[4:6])
    if h > 23 or m > 59 or sec > 60:  # 60: leap second
        raise NMEAError("field:time", s)
    return (h, m, sec)


def _date(s):
    # ddmmyy -> (yyyy, mm, dd); years 80..99 are 1980..1999 (GPS epoch), else 2000+
    if not s:
        return None
    if len(s) != 6 or not s.isdigit():
        raise NMEAError("field:date", s)
    d, mo, y = int(s[0:2]), int(s[2:4]), int(s[4:6])
    if not (1 <= d <= 31 and 1 <= mo <= 12):
        raise NMEAError("field:date", s)
    return (1900 + y if y >= 80 else 2000 + y, mo, d)


def _coord_udeg(value, hemi, deg_digits, name):
    # (d)ddmm.mmmm + hemisphere -> signed micro-degrees, integer arithmetic only.
    if not value and not hemi:
        return None
    dot = value.find(".")
    ip = value if dot < 0 else value[:dot]
    fp = "" if dot < 0 else value[dot + 1 :]
    if len(ip) != deg_digits + 2 or not ip.isdigit() or (fp and not fp.isdigit()):
        raise NMEAError("field:" + name, value)
    deg = int(ip[:deg_digits])
    mins = int(ip[deg_digits:])
    frac4 = int((fp + "0000")[:4])  # 1e-4 minute = 0.19 m; finer digits are below the payload's resolution
    m4 = mins * 10000 + frac4  # minutes * 1e4
    limit = 90 if deg_digits == 2 else 180
    if mins > 59 or deg > limit or (deg == limit and m4):
        raise NMEAError("field:" + name, value)
    udeg = deg * 1000000 + (m4 * 10 + 3) // 6  # m4 * 1e6 / (60 * 1e4), rounded
    if hemi in ("S", "W"):
        return -udeg
    if hemi in ("N", "E"):
        return udeg
    raise NMEAError("field:" + name + "_hemisphere", hemi)


def _num(s, name, kind=float):
    if not s:
        return None
    try:
        return kind(s)
    except ValueError:
        raise NMEAError("field:" + name, s) from None


def parse(line):
    """Parse one sentence (str or bytes, with or without CR LF).

    Returns a dict for RMC and GGA, None for other valid sentence types. Raises NMEAError for a bad
    checksum, a malformed sentence or an out-of-range field (the reason names it).
    """
    f = _split(line)
    talker, kind = f[0][:2], f[0][2:]
    if talker not in _TALKERS or kind not in ("RMC", "GGA"):
        return None
    if kind == "RMC":
        if len(f) < 10:
            raise NMEAError("format", "RMC has %d fields" % (len(f) - 1))
        mode = f[12] if len(f) > 12 else ""
        out = {
            "type": "RMC",
            "talker": talker,
            "time": _time(f[1]),
            "valid": f[2] == "A" and mode != "N",
            "lat_udeg": _coord_udeg(f[3], f[4], 2, "latitude"),
            "lon_udeg": _coord_udeg(f[5], f[6], 3, "longitude"),
            "speed_knots": _num(f[7], "speed"),
            "course_deg": _num(f[8], "course"),
            "date": _date(f[9]),
        }
    else:
        if len(f) < 10:
            raise NMEAError("format", "GGA has %d fields" % (len(f) - 1))
        quality = _num(f[6], "fix_quality", int) or 0
        out = {
            "type": "GGA",
            "talker": talker,
            "time": _time(f[1]),
            "lat_udeg": _coord_udeg(f[2], f[3], 2, "latitude"),
            "lon_udeg": _coord_udeg(f[4], f[5], 3, "longitude"),
            "fix_quality": quality,
            "valid": quality > 0,
            "satellites": _num(f[7], "satellites", int),
            "hdop": _num(f[8], "hdop"),
            "altitude_m": _num(f[9], "altitude"),
        }
    if out["valid"] and (out["lat_udeg"] is None or out["lon_udeg"] is None):
        out["valid"] = False  # a "valid" fix without a position is no fix
    out["latitude"] = None if out["lat_udeg"] is None else out["lat_udeg"] / 1000000
    out["longitude"] = None if out["lon_udeg"] is None else out["lon_udeg"] / 1000000
    return out


class GPS:
    """NMEA GPS receiver on a UART (MicroPython machine.UART API: readinto(buf) -> n or None).

    poll() never blocks (configure the UART with timeout=0): it reads what is waiting, at most
    `max_bytes_per_poll`, assembles lines in a fixed buffer (longer lines are dropped), and resyncs on
    every "$", so garbage, partial sentences and line noise cost nothing but a counter.
    """

    def __init__(
        self,
        uart,
        max_line=_MAX_SENTENCE + 14,
        max_bytes_per_poll=512,
        ticks_ms=ticks_ms,
        ticks_diff=ticks_diff,
    ):
        self._uart = uart
        self._line = bytearray(max_line)
        self._n = 0
        self._in_line = False
        self._chunk = bytearray(64)
        self._max_poll = max_bytes_per_poll
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self.has_fix = False  # the latest RMC/GGA reported a valid fix
        self.lat_udeg = None  # last valid position
        self.lon_udeg = None
        self.time = None  # (h, m, s) UTC of the last valid fix
        self.date = None  # (yyyy, mm, dd) from the last valid RMC
        self.satellites = None
        self.hdop = None
        self.altitude_m = None
        self.speed_knots = None
        self._fix_ticks = None
        # Counters for diagnostics (device_status / logs).
        self.sentences = 0
        self.bad_checksum = 0
        self.malformed = 0
        self.overflows = 0

    def poll(self):
        """Read and parse whatever the UART holds. Returns the number of RMC/GGA sentences accepted."""
        accepted = 0
        budget = self._max_poll
        while budget > 0:
            n = self._uart.readinto(self._chunk)
            if not n:
                break
            budget -= n
            for i in range(n):
                accepted += self._feed(self._chunk[i])
        return accepted

    def _feed(self, c):
        if c == 0x24:  # "$": start of a sentence, whatever came before
            if self._in_line:
                self.malformed += 1  # the previous sentence never ended
            self._line[0] = c
            self._n = 1
            self._in_line = True
            return 0
        if not self._in_line:
            return 0
        if c == 0x0A:  # LF ends the sentence
            self._in_line = False
            return self._sentence(memoryview(self._line)[: self._n])
        if c == 0x0D:
            return 0
        if c < 0x20 or c > 0x7E:
            self._in_line = False  # binary noise inside a sentence
            self.malformed += 1
            return 0
        if self._n >= len(self._line):
            self._in_line = False
            self.overflows += 1
            return 0
        self._line[self._n] = c
        self._n += 1
        return 0

    def _sentence(self, raw):
        try:
            s = parse(raw)
        except NMEAError as e:
            if e.reason == "checksum":
                self.bad_checksum += 1
            else:
                self.malformed += 1
            return 0
        if s is None:
            return 0
        self.sentences += 1
        self.has_fix = s["valid"]
        if s["valid"]:
            self.lat_udeg = s["lat_udeg"]
            self.lon_udeg = s["lon_udeg"]
            self.time = s["time"]
            self._fix_ticks = self._ticks_ms()
            if s["type"] == "RMC":
                self.date = s["date"]
                self.speed_knots = s["speed_knots"]
        if s["type"] == "GGA":
            self.satellites = s["satellites"]
            self.hdop = s["hdop"]
            if s["valid"]:
                self.altitude_m = s["altitude_m"]
        return 1

    def fix_age_ms(self):
        """Milliseconds since the last valid fix, or None if there never was one."""
        if self._fix_ticks is None:
            return None
        return self._ticks_diff(self._ticks_ms(), self._fix_ticks)

    def position(self, max_age_ms=None):
        """(latitude, longitude) in decimal degrees of the last valid fix, or None if none (or too old)."""
        age = self.fix_age_ms()
        if age is None or (max_age_ms is not None and age > max_age_ms):
            return None
        return (self.lat_udeg / 1000000, self.lon_udeg / 1000000)
