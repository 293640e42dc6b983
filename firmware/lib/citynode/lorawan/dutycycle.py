# Transmit duty-cycle enforcement for EU868:
#  - per sub-band (ETSI EN 300 220-2 V3.2.1 §4.3.3, RP002-1.0.3 §2.4.2): after a transmission of T ms in a
#    band with duty cycle dc the band stays closed for T * (1/dc - 1) ms;
#  - the network's aggregated limit from a DutyCycleReq (LoRaWAN 1.0.4 §5.4): 1 / 2^MaxDCycle over all
#    channels, MaxDCycle 0 meaning "no limit beyond the regional one";
#  - the join-request back-off (LoRaWAN 1.0.4 §7 "retransmissions back-off", RP002 §2.4.2 too):
#    aggregated join airtime below 36 s in the first hour after the first attempt (1 %), 36 s in the next
#    10 hours (0.1 %) and 8.7 s per 24 h after that (0.01 %).
# Time comes from an injected ``now_ms`` callable that never wraps (see MonotonicMs), so all of this is
# testable with a fake clock.
from citynode.compat import const
from citynode.lorawan import region

_JOIN_PHASE1_END_MS = const(3600000)  # 1 h
_JOIN_PHASE2_END_MS = const(39600000)  # 11 h


class MonotonicMs:
    """A millisecond clock that does not wrap, built on ``time.ticks_ms`` (which wraps after 2^30 ms on
    MicroPython) or ``time.monotonic`` on CPython. Call it like a function."""

    def __init__(self):
        import time

        self._time = time
        self._ticks = getattr(time, "ticks_ms", None)
        self._total = 0
        self._last = self._ticks() if self._ticks else 0

    def __call__(self):
        if self._ticks is None:
            return int(self._time.monotonic() * 1000)
        t = self._ticks()
        self._total += self._time.ticks_diff(t, self._last)
        self._last = t
        return self._total


def time_off_ms(airtime_ms, inverse_dc):
    """Time a band stays closed after ``airtime_ms`` on air at duty cycle 1/``inverse_dc``."""
    return airtime_ms * (inverse_dc - 1)


def join_backoff_inverse_dc(elapsed_ms):
    """1/duty-cycle for join requests ``elapsed_ms`` after the first join attempt (LoRaWAN 1.0.4 §7)."""
    if elapsed_ms < _JOIN_PHASE1_END_MS:
        return 100  # 36 s per hour
    if elapsed_ms < _JOIN_PHASE2_END_MS:
        return 1000  # 36 s per 10 hours
    return 10000  # 8.7 s per 24 hours (0.01 %)


class DutyCycle:
    """Tracks when each EU868 sub-band, the aggregated limit and the join back-off allow a transmission.

    ``now_ms`` is a non-wrapping millisecond clock. ``bands`` defaults to region.SUB_BANDS.
    """

    def __init__(self, now_ms, bands=None):
        self._now = now_ms
        self._bands = bands if bands is not None else region.SUB_BANDS
        self._band_until = [0] * len(self._bands)
        self._agg_until = 0
        self._join_until = 0
        self._join_t0 = None
        self.max_dcycle = 0  # DutyCycleReq MaxDCycle, 0..15

    def set_max_dcycle(self, max_dcycle):
        """Apply DutyCycleReq (LoRaWAN 1.0.4 §5.4): aggregated duty cycle 1 / 2^max_dcycle."""
        if not 0 <= max_dcycle <= 15:
            raise ValueError("max_dcycle")
        self.max_dcycle = max_dcycle

    def _band(self, freq_hz):
        # Same rule as region.sub_band: a band's upper edge belongs to the next band.
        last = len(self._bands) - 1
        for i in range(last + 1):
            lo, hi, _, _ = self._bands[i]
            if lo <= freq_hz < hi or (i == last and freq_hz == hi):
                return i
        raise ValueError("freq_hz")

    def wait_ms(self, freq_hz, join=False):
        """Milliseconds until a transmission on ``freq_hz`` is allowed (0 = now)."""
        now = self._now()
        until = self._band_until[self._band(freq_hz)]
        until = max(until, self._agg_until)
        if join and self._join_until > until:
            until = self._join_until
        return until - now if until > now else 0

    def record_tx(self, freq_hz, airtime_ms, join=False):
        """Account a transmission of ``airtime_ms`` that ended now on ``freq_hz``."""
        now = self._now()
        i = self._band(freq_hz)
        self._band_until[i] = now + time_off_ms(airtime_ms, self._bands[i][2])
        if self.max_dcycle:
            self._agg_until = now + time_off_ms(airtime_ms, 1 << self.max_dcycle)
        if join:
            if self._join_t0 is None:
                self._join_t0 = now - airtime_ms
            inv = join_backoff_inverse_dc(now - self._join_t0)
            self._join_until = now + time_off_ms(airtime_ms, inv)

    def join_succeeded(self):
        """A join accept ends the back-off sequence; the next join attempt starts a new one."""
        self._join_t0 = None
        self._join_until = 0

    def state(self):
        """Remaining time-offs (ms, relative to now) and settings, for RTC memory across deep sleep.

        Relative values make the state independent of the clock, which restarts after deep sleep;
        the time spent asleep is (conservatively) not deducted.
        """
        now = self._now()
        rel = [u - now if u > now else 0 for u in self._band_until]
        join_elapsed = None if self._join_t0 is None else now - self._join_t0
        return [rel, max(self._agg_until - now, 0), max(self._join_until - now, 0), join_elapsed,
                self.max_dcycle]

    def restore(self, st, elapsed_ms=0):
        """Inverse of ``state()``; ``elapsed_ms`` is the time known to have passed since (deep sleep),
        deducted from every time-off. A malformed state raises ValueError("dutycycle")."""
        try:
            rel, agg, join, join_elapsed, maxdc = st
            if len(rel) != len(self._band_until):
                raise ValueError
            now = self._now()
            e = int(elapsed_ms) if elapsed_ms > 0 else 0
            self._band_until = [now + int(r) - e for r in rel]
            self._agg_until = now + int(agg) - e
            self._join_until = now + int(join) - e
            self._join_t0 = None if join_elapsed is None else now - int(join_elapsed) - e
            self.set_max_dcycle(int(maxdc))
        except (TypeError, ValueError):
            raise ValueError("dutycycle")
