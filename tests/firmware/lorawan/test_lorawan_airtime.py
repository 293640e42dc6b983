"""LoRa time on air (citynode.lorawan.airtime) against Semtech's formula, SX1276 datasheet §4.1.1.7.

Two independent references: a float transcription of the datasheet formula written here, and spot values
from Semtech's LoRa calculator / the SX1276 worked examples (BW 125 kHz, CR 4/5, 8-symbol preamble,
explicit header, CRC on, LDRO on for SF11/SF12 at 125 kHz).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "firmware" / "lib"))
from citynode.lorawan import airtime

# (SF, PHYPayload bytes, time on air ms) from Semtech's calculator, BW125 CR4/5 preamble 8.
# 13 bytes = an empty LoRaWAN uplink (MHDR 1 + FHDR 7 + MIC 4 + FPort 1).
SEMTECH_SPOT_VALUES = [
    (7, 13, 46.336),
    (8, 13, 82.432),
    (9, 13, 164.864),
    (10, 13, 288.768),
    (11, 13, 577.536),
    (12, 13, 1155.072),
    (7, 51, 102.656),
    (12, 51, 2465.792),
]


def reference_ms(pl: int, sf: int, bw: int, cr: int = 1, preamble: int = 8, ih: bool = False,
                 crc: bool = True, de: bool | None = None) -> float:
    """SX1276 §4.1.1.7, transcribed with floats."""
    tsym = (2 ** sf) / bw * 1000.0
    if de is None:
        de = tsym >= 16.0
    t_preamble = (preamble + 4.25) * tsym
    n = 8 + max(math.ceil((8 * pl - 4 * sf + 28 + 16 * crc - 20 * ih) / (4 * (sf - 2 * de))) * (cr + 4), 0)
    return t_preamble + n * tsym


@pytest.mark.parametrize(("sf", "pl", "expected_ms"), SEMTECH_SPOT_VALUES)
def test_matches_semtech_calculator(sf: int, pl: int, expected_ms: float) -> None:
    assert airtime.time_on_air_us(pl, sf, 125000) == round(expected_ms * 1000)


@pytest.mark.parametrize("sf", range(7, 13))
@pytest.mark.parametrize("bw", [125000, 250000, 500000])
@pytest.mark.parametrize("pl", [0, 1, 12, 13, 23, 51, 115, 222, 242, 255])
def test_matches_the_datasheet_formula(sf: int, pl: int, bw: int) -> None:
    assert airtime.time_on_air_us(pl, sf, bw) == pytest.approx(reference_ms(pl, sf, bw) * 1000, abs=1)


@pytest.mark.parametrize(
    ("sf", "bw", "ldro"),
    [(12, 125000, True), (11, 125000, True), (10, 125000, False), (12, 250000, True),
     (11, 250000, False), (12, 500000, False), (7, 125000, False)],
)
def test_low_data_rate_optimisation_from_16ms_symbols(sf: int, bw: int, ldro: bool) -> None:
    # SX1276 §4.1.1.6: LDRO is mandated when the symbol duration exceeds 16 ms.
    assert airtime.ldro_required(sf, bw) is ldro


def test_ldro_can_be_forced_and_options_change_the_result() -> None:
    assert airtime.time_on_air_us(51, 12, 125000, low_dr_optimize=False) == round(reference_ms(51, 12, 125000, de=False) * 1000)
    assert airtime.time_on_air_us(20, 9, 125000, cr=4) == round(reference_ms(20, 9, 125000, cr=4) * 1000)
    assert airtime.time_on_air_us(20, 9, 125000, explicit_header=False, crc=False) == round(
        reference_ms(20, 9, 125000, ih=True, crc=False) * 1000)
    assert airtime.time_on_air_us(20, 9, 125000, preamble=12) == round(reference_ms(20, 9, 125000, preamble=12) * 1000)


def test_milliseconds_round_up_for_duty_cycle_accounting() -> None:
    assert airtime.time_on_air_ms(13, 7, 125000) == 47
    assert airtime.time_on_air_ms(51, 12, 125000) == 2466


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"sf": 5}, "sf"), ({"sf": 13}, "sf"), ({"cr": 0}, "cr"), ({"cr": 5}, "cr"),
    ({"payload_len": -1}, "payload_len"), ({"payload_len": 256}, "payload_len"), ({"bw_hz": 0}, "bw_hz"),
])
def test_bad_parameters_name_the_field(kwargs: dict, field: str) -> None:
    args = {"payload_len": 10, "sf": 7, "bw_hz": 125000} | kwargs
    with pytest.raises(ValueError, match=field):
        airtime.time_on_air_us(**args)


def test_same_results_on_micropython(micropython) -> None:
    cases = [(pl, sf, bw) for sf in range(7, 13) for bw in (125000, 250000) for pl in (0, 13, 51, 242)]
    got = micropython.eval_json(
        "import json\nfrom citynode.lorawan import airtime\n"
        f"print(json.dumps([airtime.time_on_air_us(pl, sf, bw) for pl, sf, bw in {cases!r}]))"
    )
    assert got == [airtime.time_on_air_us(pl, sf, bw) for pl, sf, bw in cases]
    assert got[cases.index((51, 12, 125000))] == 2465792
