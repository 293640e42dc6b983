"""NMEA 0183 parser and GPS driver (citynode.drivers.nmea) on the real MicroPython unix port.

Sentences follow NMEA 0183 (RMC, GGA field layouts as in the module header). Checksums of constructed
sentences are computed here independently (XOR of the characters between "$" and "*").
"""

from __future__ import annotations

import json
from functools import reduce

import pytest


def nmea(body: str) -> str:
    """A sentence with its checksum: nmea("GPRMC,...") -> "$GPRMC,...*hh"."""
    return "$%s*%02X" % (body, reduce(lambda c, ch: c ^ ord(ch), body, 0))


# The classic reference sentences (valid checksums as published with NMEA examples).
RMC_REF = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
GGA_REF = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"

# name: (sentence, expected subset of the parsed dict, or an error reason)
CASES = {
    "RMC reference": (
        RMC_REF,
        {
            "type": "RMC",
            "talker": "GP",
            "valid": True,
            "time": [12, 35, 19],
            "date": [1994, 3, 23],
            "lat_udeg": 48117300,
            "lon_udeg": 11516667,
            "speed_knots": 22.4,
        },
    ),
    "GGA reference": (
        GGA_REF,
        {
            "type": "GGA",
            "valid": True,
            "fix_quality": 1,
            "satellites": 8,
            "hdop": 0.9,
            "altitude_m": 545.4,
            "lat_udeg": 48117300,
            "lon_udeg": 11516667,
        },
    ),
    "GN talker RMC, Gelsenkirchen, mode A": (
        nmea("GNRMC,083015.00,A,5130.7241,N,00705.8123,E,0.012,,221126,,,A"),
        {
            "talker": "GN",
            "valid": True,
            "date": [2026, 11, 22],
            "time": [8, 30, 15],
            "lat_udeg": 51512068,
            "lon_udeg": 7096872,
        },
    ),
    "GL talker GGA": (
        nmea("GLGGA,083015.00,5130.7241,N,00705.8123,E,2,11,0.78,60.1,M,46.8,M,,"),
        {"talker": "GL", "valid": True, "fix_quality": 2, "satellites": 11, "hdop": 0.78},
    ),
    "southern and western hemispheres": (
        nmea("GPRMC,235959,A,3345.1234,S,07040.5678,W,0.0,0.0,010100,,"),
        {"lat_udeg": -33752057, "lon_udeg": -70676130, "date": [2000, 1, 1], "time": [23, 59, 59]},
    ),
    "RMC status V is no fix": (
        nmea("GPRMC,123519,V,4807.038,N,01131.000,E,,,230394,,"),
        {"valid": False},
    ),
    "RMC mode N is no fix": (
        nmea("GNRMC,123519,A,4807.038,N,01131.000,E,,,230394,,,N"),
        {"valid": False},
    ),
    "RMC with empty fields before first fix": (
        nmea("GPRMC,,V,,,,,,,,,,N"),
        {"valid": False, "lat_udeg": None, "lon_udeg": None, "time": None, "date": None},
    ),
    "GGA fix quality 0 is no fix": (
        nmea("GPGGA,123519,,,,,0,00,99.99,,,,,,"),
        {"valid": False, "fix_quality": 0, "satellites": 0, "hdop": 99.99},
    ),
    "lowercase checksum hex accepted": (
        RMC_REF[:-2] + "6a",
        {"valid": True},
    ),
    "bad checksum": (RMC_REF[:-2] + "6B", "checksum"),
    "missing checksum": (RMC_REF[: RMC_REF.index("*")], "checksum"),
    "corrupted character": (RMC_REF.replace("4807", "4806"), "checksum"),
    "minutes out of range": (nmea("GPRMC,123519,A,4867.038,N,01131.000,E,,,230394,,"), "field:latitude"),
    "bad hemisphere": (nmea("GPRMC,123519,A,4807.038,X,01131.000,E,,,230394,,"), "field:latitude_hemisphere"),
    "bad time": (nmea("GPRMC,127519,A,4807.038,N,01131.000,E,,,230394,,"), "field:time"),
    "truncated RMC": (nmea("GPRMC,123519,A,4807.038"), "format"),
    "too long": ("$GPRMC," + "1" * 90 + "*00", "format"),
    "not a sentence": ("hello world", "format"),
}

OTHER_TYPES = [
    nmea("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00"),
    nmea("GPVTG,,T,,M,,N,,K,N"),
    nmea("XXRMC,123519,A,4807.038,N,01131.000,E,,,230394,,"),
]


@pytest.fixture(scope="module")
def parsed(micropython):
    code = r"""
import json
from citynode.drivers.nmea import parse, NMEAError
cases = json.loads(%r)
out = {}
for name in cases:
    try:
        r = parse(cases[name])
        out[name] = r
    except NMEAError as e:
        out[name] = "error:" + e.reason
print(json.dumps(out))
""" % json.dumps({k: v[0] for k, v in CASES.items()})
    return micropython.eval_json(code)


@pytest.mark.parametrize("name", list(CASES))
def test_sentence_table(parsed, name):
    sentence, expected = CASES[name]
    got = parsed[name]
    if isinstance(expected, str):
        assert got == "error:" + expected, f"{sentence!r} -> {got!r}"
        return
    assert isinstance(got, dict), f"{sentence!r} -> {got!r}"
    for key, value in expected.items():
        assert got[key] == value, f"{name}: {key} = {got[key]!r}, expected {value!r}"
    if got["lat_udeg"] is not None:
        assert got["latitude"] == pytest.approx(got["lat_udeg"] / 1e6)
        assert got["longitude"] == pytest.approx(got["lon_udeg"] / 1e6)


def test_other_sentence_types_are_ignored(micropython):
    out = micropython.eval_json(
        "import json\nfrom citynode.drivers.nmea import parse\nprint(json.dumps([parse(s) for s in %r]))"
        % OTHER_TYPES
    )
    assert out == [None, None, None]


UART = r"""
class FakeUART:
    # machine.UART with timeout=0: readinto returns what is buffered (None when empty)
    def __init__(self, data=b""):
        self.data = bytearray(data)
    def feed(self, data):
        self.data += data
    def readinto(self, buf):
        n = min(len(buf), len(self.data))
        if n == 0:
            return None
        buf[:n] = self.data[:n]
        self.data = self.data[n:]
        return n

class Clock:
    now = 0
    def ticks_ms(self):
        return self.now
    def ticks_diff(self, a, b):
        return a - b
"""


def test_gps_driver_garbage_tolerant_stream(micropython):
    stream = (
        b"\x00\xff\xfe garbage before sync\r\n"
        + b"$GPRMC,12351"  # cut off by a restart: resync on the next "$"
        + (GGA_REF + "\r\n").encode()
        + b"$GPGSV,1,1,00*79\r\n"
        + (RMC_REF[:-2] + "00\r\n").encode()  # bad checksum
        + b"$GPRMC,"
        + b"9" * 200
        + b"\r\n"  # overlong line: dropped, bounded buffer
        + b"$GPRMC,1\x01\x02,A\r\n"  # binary noise inside a sentence
        + (RMC_REF + "\r\n").encode()
    )
    out = micropython.eval_json(
        UART
        + r"""
import json
from citynode.drivers.nmea import GPS
clock = Clock()
uart = FakeUART()
gps = GPS(uart, ticks_ms=clock.ticks_ms, ticks_diff=clock.ticks_diff)
r = {"before": [gps.position(), gps.fix_age_ms(), gps.poll()]}
data = %r
# deliver in awkward 7-byte pieces, as a UART FIFO would
for i in range(0, len(data), 7):
    uart.feed(data[i:i+7])
    clock.now += 1
    gps.poll()
clock.now += 1500
r["position"] = gps.position()
r["age"] = gps.fix_age_ms()
r["stale"] = gps.position(max_age_ms=1000)
r["fresh"] = gps.position(max_age_ms=2000)
r["fix"] = [gps.has_fix, gps.satellites, gps.hdop, gps.altitude_m, gps.date, gps.time]
r["stats"] = [gps.sentences, gps.bad_checksum, gps.malformed, gps.overflows]
print(json.dumps(r))
"""
        % stream
    )
    assert out["before"] == [None, None, 0]
    assert out["position"] == [pytest.approx(48.1173), pytest.approx(11.516667)]
    assert 1500 <= out["age"] <= 1520
    assert out["stale"] is None
    assert out["fresh"] is not None
    assert out["fix"] == [True, 8, 0.9, 545.4, [1994, 3, 23], [12, 35, 19]]
    sentences, bad_checksum, malformed, overflows = out["stats"]
    assert (sentences, bad_checksum, overflows) == (2, 1, 1)
    assert malformed == 2, "the cut-off RMC and the one with binary noise"


def test_gps_loses_fix_but_keeps_last_position(micropython):
    lost = nmea("GPRMC,123600,V,,,,,,,230394,,,N")
    out = micropython.eval_json(
        UART
        + r"""
import json
from citynode.drivers.nmea import GPS
clock = Clock()
uart = FakeUART(%r)
gps = GPS(uart, ticks_ms=clock.ticks_ms, ticks_diff=clock.ticks_diff)
gps.poll()
clock.now = 10000
uart.feed(%r)
gps.poll()
print(json.dumps([gps.has_fix, gps.position(), gps.fix_age_ms()]))
"""
        % ((RMC_REF + "\r\n").encode(), (lost + "\r\n").encode())
    )
    assert out[0] is False
    assert out[1] == [pytest.approx(48.1173), pytest.approx(11.516667)]
    assert out[2] == 10000


def test_poll_is_bounded(micropython):
    out = micropython.eval_json(
        UART
        + r"""
import json
from citynode.drivers.nmea import GPS
uart = FakeUART(b"x" * 5000)
gps = GPS(uart, max_bytes_per_poll=512)
gps.poll()
print(json.dumps(len(uart.data)))
"""
    )
    assert 5000 - 512 - 64 <= out < 5000, "one poll reads a bounded amount and returns"


def test_imports_under_cpython_and_agrees():
    import importlib
    import sys

    from gateway.paths import firmware_dir

    sys.path.insert(0, str(firmware_dir() / "lib"))
    try:
        mod = importlib.import_module("citynode.drivers.nmea")
        assert mod.parse(RMC_REF)["lat_udeg"] == 48117300
    finally:
        sys.path.remove(str(firmware_dir() / "lib"))
