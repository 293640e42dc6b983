"""Duty-cycle enforcement (citynode.lorawan.dutycycle): ETSI EN 300 220-2 sub-bands, DutyCycleReq
(LoRaWAN 1.0.4 §5.4) and the join back-off (LoRaWAN 1.0.4 §7). A fake clock drives every case."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "firmware" / "lib"))
from citynode.lorawan import dutycycle


class Clock:
    def __init__(self, t: int = 1_000_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dc(clock: Clock) -> dutycycle.DutyCycle:
    return dutycycle.DutyCycle(clock)


# (frequency Hz, airtime ms, expected time-off ms) = airtime * (1/dc - 1)
TIME_OFF_CASES = [
    (868100000, 100, 9_900),      # g1 1 %
    (868500000, 2466, 244_134),   # g1 1 %, SF12 51 bytes
    (867100000, 100, 9_900),      # g 1 %
    (868800000, 100, 99_900),     # g2 0.1 %
    (869525000, 100, 900),        # g3 10 %
    (863500000, 10, 9_990),       # h1.3 0.1 %
]


@pytest.mark.parametrize(("freq", "airtime", "off"), TIME_OFF_CASES)
def test_band_closes_for_airtime_times_inverse_dc_minus_one(dc, clock, freq: int, airtime: int, off: int) -> None:
    assert dc.wait_ms(freq) == 0
    dc.record_tx(freq, airtime)
    assert dc.wait_ms(freq) == off
    clock.t += off - 1
    assert dc.wait_ms(freq) == 1
    clock.t += 1
    assert dc.wait_ms(freq) == 0


def test_other_bands_stay_open(dc, clock) -> None:
    dc.record_tx(868100000, 1000)  # g1
    assert dc.wait_ms(868300000) == 99_000  # same band g1
    assert dc.wait_ms(867100000) == 0  # band g
    assert dc.wait_ms(869525000) == 0  # band g3


def test_aggregated_duty_cycle_from_dutycyclereq(dc, clock) -> None:
    dc.set_max_dcycle(10)  # 1/1024 over all channels
    dc.record_tx(868100000, 100)
    assert dc.wait_ms(867100000) == 100 * 1023
    dc.set_max_dcycle(0)  # no aggregated limit any more; the next TX sets no aggregate time-off
    clock.t += 200_000
    dc.record_tx(868100000, 100)
    assert dc.wait_ms(867100000) == 0
    with pytest.raises(ValueError, match="max_dcycle"):
        dc.set_max_dcycle(16)


@pytest.mark.parametrize(("elapsed_ms", "inverse"), [
    (0, 100), (3_599_999, 100), (3_600_000, 1000), (39_599_999, 1000), (39_600_000, 10000), (10**9, 10000),
])
def test_join_backoff_phases(elapsed_ms: int, inverse: int) -> None:
    assert dutycycle.join_backoff_inverse_dc(elapsed_ms) == inverse


def test_join_requests_respect_the_backoff_and_keep_36s_in_the_first_hour(dc, clock) -> None:
    # Retry joins as fast as allowed, spreading over the three default channels, for 12 hours.
    freqs = [868100000, 868300000, 868500000]
    t0 = clock.t
    airtime = 1156  # SF12 join request
    sent: list[int] = []
    i = 0
    while clock.t - t0 < 12 * 3600_000:
        f = freqs[i % 3]
        w = dc.wait_ms(f, join=True)
        clock.t += w
        clock.t += airtime
        dc.record_tx(f, airtime, join=True)
        sent.append(clock.t - t0)
        i += 1
    first_hour = sum(airtime for t in sent if t <= 3600_000)
    hours_1_to_11 = sum(airtime for t in sent if 3600_000 < t <= 11 * 3600_000)
    assert first_hour <= 36_000 + airtime  # 1 %
    assert hours_1_to_11 <= 36_000 + 2 * airtime  # 0.1 % over 10 h
    assert first_hour > 30_000  # and the device did not stop trying


def test_join_backoff_does_not_block_data_and_resets_on_success(dc, clock) -> None:
    dc.record_tx(869525000, 1000, join=True)  # g3, so the band itself only closes for 9 s
    assert dc.wait_ms(869525000) == 9_000
    assert dc.wait_ms(869525000, join=True) == 99_000
    dc.join_succeeded()
    assert dc.wait_ms(869525000, join=True) == 9_000


def test_state_survives_deep_sleep_as_relative_times(clock) -> None:
    a = dutycycle.DutyCycle(clock)
    a.set_max_dcycle(3)
    a.record_tx(868100000, 100, join=True)
    st = a.state()
    after = Clock(5)  # the clock restarts after deep sleep
    b = dutycycle.DutyCycle(after)
    b.restore(st)
    assert b.wait_ms(868100000) == 9_900
    assert b.wait_ms(868100000, join=True) == 9_900
    assert b.max_dcycle == 3
    with pytest.raises(ValueError, match="dutycycle"):
        b.restore([[0], 0, 0, None, 0])


def test_unknown_frequency_names_the_field(dc) -> None:
    with pytest.raises(ValueError, match="freq_hz"):
        dc.wait_ms(915000000)


def test_same_behaviour_on_micropython(micropython) -> None:
    got = micropython.eval_json("""
import json
from citynode.lorawan import dutycycle
t = [0]
dc = dutycycle.DutyCycle(lambda: t[0])
dc.record_tx(868100000, 100)
a = dc.wait_ms(868100000)
dc.record_tx(868800000, 100, join=True)
b = dc.wait_ms(868800000, join=True)
c = dutycycle.MonotonicMs()
c1 = c(); c2 = c()
print(json.dumps([a, b, c2 >= c1]))
""")
    assert got == [9900, 99900, True]


def test_restore_credits_time_known_to_have_passed(clock) -> None:
    a = dutycycle.DutyCycle(clock)
    a.record_tx(868100000, 1000, join=True)  # band closed 99 s, join back-off 99 s
    st = a.state()
    b = dutycycle.DutyCycle(Clock(0))
    b.restore(st, elapsed_ms=60_000)
    assert b.wait_ms(868100000) == 39_000
    assert b.wait_ms(868100000, join=True) == 39_000
    c = dutycycle.DutyCycle(Clock(0))
    c.restore(st, elapsed_ms=-5)  # a wall clock that went backwards (power loss) credits nothing
    assert c.wait_ms(868100000) == 99_000
