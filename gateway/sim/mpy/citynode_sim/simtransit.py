# The bus or tram around a passenger counter on the sim board: people crossing the door beams at
# stops, the door contact, and a GPS receiver streaming NMEA along a route. Test infrastructure: a
# real node never loads it (citynode_sim.sim imports it when a role asks for a door pin or the GPS).
#
# values["passengers"] (all optional):
#   stops_per_hour       20      one stop every 3 minutes of virtual time
#   boardings_per_stop   3       mean; each stop draws 0..2*mean (seeded, repeatable)
#   alightings_per_stop  = boardings_per_stop (mean), never more than are on board
#   stops_per_trip       12      the last stop of a trip is the terminus: everyone gets off
#   stops                a script instead of random draws: [{"board": n, "alight": m}, ...], cycled
#                        (alightings are still capped at the people on board)
# values["gps"] (all optional):
#   route                [[lat, lon], ...] driven there and back once per trip (default: a line
#                        through Gelsenkirchen, Hbf to Buer)
#   position             [lat, lon]: a parked vehicle instead of a route
#   fix                  false: the receiver sends sentences without a fix (RMC status V, GGA quality 0)
#   period_s             1       one RMC + GGA burst per period, as a receiver at 1 Hz
#
# Beam edges follow the wiring citynode.drivers.beams expects: beam A outside, beam B inside,
# receivers pulled LOW while broken (blocked_level 0), door contact HIGH while open. A boarding
# breaks A, then B, clears A, then B (150 ms apart, well beyond the 20 ms debounce); an alighting
# the same from B. They are delivered through SimClock.events at their exact instants while the
# role idles in clock.sleep_ms(), so the IRQ handlers time-stamp them as on a board.
from citynode_sim.simio import SimPin
from citynode_sim.simrandom import SimRandom
from citynode_sim.simuart import SimUART

_STEP_US = 150000  # between the four edges of one crossing
_GAP_US = 1200000  # between two people at a door
_DOOR_LEAD_US = 800000  # door open -> first crossing; last crossing -> door closed
_EPOCH_DAYS = 20454  # 2026-01-01 in days since 1970-01-01: the virtual board's epoch (citynode.run)

# Gelsenkirchen: Hauptbahnhof north through Heinrich-Koenig-Platz and Buer-Sued to Buer Rathaus.
_ROUTE = ((51.5049, 7.1026), (51.5093, 7.0986), (51.5207, 7.0942), (51.5335, 7.0885),
          (51.5461, 7.0822), (51.5588, 7.0760), (51.5716, 7.0672))


class Transit:
    """People at the doors and the vehicle's position, driven by the hal's virtual clock."""

    def __init__(self, hal):
        self.clock = hal.clock
        p = hal.values.get("passengers") or {}
        self.rng = SimRandom(hal.device_seed(7))
        self.period_us = int(3600000000 // max(1, p.get("stops_per_hour", 20)))
        self.boardings_mean = p.get("boardings_per_stop", 3)
        self.alightings_mean = p.get("alightings_per_stop", self.boardings_mean)
        self.stops_per_trip = max(2, p.get("stops_per_trip", 12))
        self.script = p.get("stops") or ()
        self.gps_values = hal.values.get("gps") or {}
        self.doors = {}  # door number -> [beam A, beam B, door contact or None]
        self.on_board = 0  # what the scenario put on board: the truth the counter estimates
        self.boarded = 0
        self.alighted = 0
        self.stops = 0
        self.due_us = None  # SimClock.events interface
        self._timeline = None
        self._event = None

    # ---- doors ----------------------------------------------------------------------------------

    def door_pin(self, name):
        """The SimPin for "door<N>_a", "door<N>_b" or "door<N>_open" (other names: a plain pin)."""
        cut = name.find("_")
        number, kind = name[4:cut], name[cut + 1 :]
        slot = {"a": 0, "b": 1, "open": 2}.get(kind)
        if cut < 0 or slot is None or not number.isdigit():
            return SimPin(0, name=name)
        pin = SimPin(0 if slot == 2 else 1, name=name)  # beams clear (HIGH), door closed (LOW)
        self.doors.setdefault(int(number), [None, None, None])[slot] = pin
        if self._timeline is None:
            self._timeline = self._stops()
            self.clock.events = self
            self._next()
        return pin

    def _next(self):
        self._event = next(self._timeline)
        self.due_us = self._event[0]

    def fire(self):
        if self._event[1] is not None:
            self._event[1].edge(self._event[2])
        self._next()

    def _counts(self, stop):
        # (alightings, boardings) at this stop; nobody leaves who is not on board
        if self.script:
            item = self.script[stop % len(self.script)]
            board, alight = item.get("board", 0), item.get("alight", 0)
        else:
            board = self.rng.randint(0, int(2 * self.boardings_mean))
            alight = self.rng.randint(0, int(2 * self.alightings_mean))
        if stop % self.stops_per_trip == self.stops_per_trip - 1:
            alight, board = self.on_board + board, 0  # terminus: everyone off, nobody on
        alight = min(alight, self.on_board)
        return alight, board

    def _stops(self):
        # A generator of (t_us, pin, level) in time order, for ever: one stop per period.
        start = self.clock.now_us + self.period_us // 2
        stop = 0
        waited = False
        while True:
            t = start
            numbers = sorted(n for n in self.doors if self.doors[n][0] is not None and self.doors[n][1] is not None)
            if not numbers:  # doors still being wired (role set-up): look again at this stop's time
                if waited:  # ... and at the next stop's, if there is still none
                    start += self.period_us
                waited = True
                yield start, None, 0
                continue
            waited = False
            alight, board = self._counts(stop)
            self.on_board += board - alight  # decided now: the counter must arrive at the same figure
            self.boarded += board
            self.alighted += alight
            self.stops += 1
            for n in numbers:
                if self.doors[n][2] is not None:
                    yield t, self.doors[n][2], 1
            t += _DOOR_LEAD_US
            for k in range(alight + board):
                beams = self.doors[numbers[k % len(numbers)]]
                near, far = (beams[1], beams[0]) if k < alight else (beams[0], beams[1])
                yield t, near, 0
                yield t + _STEP_US, far, 0
                yield t + 2 * _STEP_US, near, 1
                yield t + 3 * _STEP_US, far, 1
                t += _GAP_US
            t += _DOOR_LEAD_US
            for n in numbers:
                if self.doors[n][2] is not None:
                    yield t, self.doors[n][2], 0
            stop += 1
            start = max(start + self.period_us, t + _GAP_US)

    # ---- GPS ------------------------------------------------------------------------------------

    def gps(self):
        return SimGPS(self)

    def position_udeg(self):
        """(lat, lon) in micro-degrees now: along the route and back once per trip, or parked."""
        fixed = self.gps_values.get("position")
        if fixed:
            return int(fixed[0] * 1000000), int(fixed[1] * 1000000)
        route = self.gps_values.get("route") or _ROUTE
        if len(route) == 1:
            return int(route[0][0] * 1000000), int(route[0][1] * 1000000)
        trip_us = self.period_us * self.stops_per_trip
        phase = self.clock.now_us % (2 * trip_us)
        if phase >= trip_us:
            phase = 2 * trip_us - phase  # the way back
        pos = phase * (len(route) - 1) * 1000 // trip_us  # route index * 1000
        i, frac = pos // 1000, pos % 1000
        if i >= len(route) - 1:
            i, frac = len(route) - 2, 1000
        a, b = route[i], route[i + 1]
        lat = int((a[0] + (b[0] - a[0]) * frac / 1000) * 1000000)
        lon = int((a[1] + (b[1] - a[1]) * frac / 1000) * 1000000)
        return lat, lon


def _coord(udeg, deg_digits, hemis):
    # micro-degrees -> NMEA (d)ddmm.mmmm and hemisphere (NMEA 0183 RMC/GGA latitude/longitude fields)
    hemi = hemis[1] if udeg < 0 else hemis[0]
    udeg = -udeg if udeg < 0 else udeg
    m4 = (udeg % 1000000) * 6 // 10  # minutes * 1e4
    fmt = "%02d%02d.%04d" if deg_digits == 2 else "%03d%02d.%04d"
    return fmt % (udeg // 1000000, m4 // 10000, m4 % 10000), hemi


def _date(days):
    # days since 1970-01-01 -> (dd, mm, yy), civil calendar (H. Hinnant's days_from_civil inverse)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return d, m, y % 100


def sentence(body):
    """"$" + body + "*" + checksum (XOR of the body's characters, NMEA 0183 5.3) + CR LF."""
    c = 0
    for ch in body:
        c ^= ord(ch)
    return "$%s*%02X\r\n" % (body, c)


class SimGPS(SimUART):
    """A GNSS receiver on the "gps" UART: an RMC and a GGA sentence every period_s of virtual time."""

    def __init__(self, transit):
        SimUART.__init__(self)
        self.transit = transit
        self.clock = transit.clock
        self.period_ms = int(transit.gps_values.get("period_s", 1) * 1000)
        self.fix = transit.gps_values.get("fix", True)
        self._next_ms = 0
        self.bursts = 0

    def _emit(self):
        now_s = self.clock.ticks_ms() // 1000
        tod = now_s % 86400
        hms = "%02d%02d%02d.00" % (tod // 3600, tod // 60 % 60, tod % 60)
        d, m, y = _date(_EPOCH_DAYS + now_s // 86400)
        if self.fix:
            lat_udeg, lon_udeg = self.transit.position_udeg()
            lat, ns = _coord(lat_udeg, 2, "NS")
            lon, ew = _coord(lon_udeg, 3, "EW")
            rmc = "GPRMC,%s,A,%s,%s,%s,%s,8.5,17.0,%02d%02d%02d,,,A" % (hms, lat, ns, lon, ew, d, m, y)
            gga = "GPGGA,%s,%s,%s,%s,%s,1,08,0.9,62.0,M,47.3,M,," % (hms, lat, ns, lon, ew)
        else:
            rmc = "GPRMC,%s,V,,,,,,,%02d%02d%02d,,,N" % (hms, d, m, y)
            gga = "GPGGA,%s,,,,,0,00,99.9,,M,,M,," % (hms,)
        self.feed(sentence(rmc).encode())
        self.feed(sentence(gga).encode())
        self.bursts += 1

    def _due(self):
        now = self.clock.ticks_ms()
        if now >= self._next_ms:
            self._next_ms = now + self.period_ms  # no catch-up burst after a long sleep
            self._emit()

    def any(self):
        if not self.rx:
            self._due()
        return len(self.rx)

    def read(self, n=-1):
        if not self.rx:
            self._due()
        return SimUART.read(self, n)

    def quiet_until_ms(self):
        """With nothing waiting: the virtual ms of the next burst (citynode_sim.simlink polls less)."""
        return self._next_ms
