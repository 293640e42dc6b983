"""EU868 regional parameters (citynode.lorawan.region) against the tables of RP002-1.0.3 §2.4 and
ETSI EN 300 220-2 / ERC Rec 70-03 (sub-band duty cycles)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "firmware" / "lib"))
from citynode.lorawan import region

# RP002 §2.4.3, EU863-870 data rate table.
DR_TABLE = [(0, 12, 125000), (1, 11, 125000), (2, 10, 125000), (3, 9, 125000), (4, 8, 125000),
            (5, 7, 125000), (6, 7, 250000)]


@pytest.mark.parametrize(("dr", "sf", "bw"), DR_TABLE)
def test_data_rates(dr: int, sf: int, bw: int) -> None:
    assert region.dr_params(dr) == (sf, bw)
    assert region.dr_supported(dr)


@pytest.mark.parametrize("dr", [7, 8, 15, -1])
def test_fsk_and_lr_fhss_rates_are_unsupported(dr: int) -> None:
    assert not region.dr_supported(dr)
    with pytest.raises(ValueError, match="dr"):
        region.dr_params(dr)


def test_default_channels_and_rx2() -> None:
    # RP002 §2.4.2 and §2.4.7.
    chans = region.default_channels()
    assert len(chans) == 16
    assert chans[:3] == [[868100000, 0, 5], [868300000, 0, 5], [868500000, 0, 5]]
    assert chans[3:] == [None] * 13
    assert (region.RX2_FREQ_HZ, region.RX2_DR) == (869525000, 0)


def test_timing_defaults() -> None:
    assert (region.RECEIVE_DELAY1_MS, region.RECEIVE_DELAY2_MS) == (1000, 2000)
    assert (region.JOIN_ACCEPT_DELAY1_MS, region.JOIN_ACCEPT_DELAY2_MS) == (5000, 6000)
    assert (region.ADR_ACK_LIMIT, region.ADR_ACK_DELAY) == (64, 32)
    assert region.MAX_FCNT_GAP == 16384


# RP002 §2.4.6: (DR, M, N) not repeater compatible, and N repeater compatible.
PAYLOAD_TABLE = [(0, 59, 51, 51), (1, 59, 51, 51), (2, 59, 51, 51), (3, 123, 115, 115),
                 (4, 250, 242, 222), (5, 250, 242, 222), (6, 250, 242, 222), (7, 250, 242, 222)]


@pytest.mark.parametrize(("dr", "m", "n", "n_repeater"), PAYLOAD_TABLE)
def test_maximum_payload_sizes(dr: int, m: int, n: int, n_repeater: int) -> None:
    assert region.max_mac_payload(dr) == m
    assert region.max_app_payload(dr) == n
    assert region.max_app_payload(dr, repeater=True) == n_repeater


# RP002 §2.4.7 RX1 DR table: row = upstream DR, columns = RX1DROffset 0..5.
RX1_TABLE = {
    0: [0, 0, 0, 0, 0, 0],
    1: [1, 0, 0, 0, 0, 0],
    2: [2, 1, 0, 0, 0, 0],
    3: [3, 2, 1, 0, 0, 0],
    4: [4, 3, 2, 1, 0, 0],
    5: [5, 4, 3, 2, 1, 0],
    6: [6, 5, 4, 3, 2, 1],
    7: [7, 6, 5, 4, 3, 2],
}


@pytest.mark.parametrize("dr", sorted(RX1_TABLE))
def test_rx1_data_rate_offsets(dr: int) -> None:
    assert [region.rx1_dr(dr, off) for off in range(6)] == RX1_TABLE[dr]


@pytest.mark.parametrize("offset", [-1, 6, 7])
def test_rfu_rx1_offsets_are_rejected(offset: int) -> None:
    with pytest.raises(ValueError, match="rx1_dr_offset"):
        region.rx1_dr(5, offset)


def test_tx_power_table() -> None:
    # RP002 §2.4.3: MaxEIRP 16 dBm, 2 dB steps, indexes 0..7.
    assert [region.tx_power_dbm(i) for i in range(8)] == [16, 14, 12, 10, 8, 6, 4, 2]
    with pytest.raises(ValueError, match="tx_power"):
        region.tx_power_dbm(8)


# ETSI EN 300 220-2 / ERC 70-03: frequency -> (1/duty cycle).
SUB_BAND_CASES = [
    (863100000, 1000), (864900000, 1000),
    (865000000, 100), (867100000, 100), (867900000, 100),
    (868100000, 100), (868300000, 100), (868500000, 100),
    (868800000, 1000), (869100000, 1000),
    (869525000, 10),
    (869850000, 100),
]


@pytest.mark.parametrize(("freq", "inverse_dc"), SUB_BAND_CASES)
def test_sub_band_duty_cycles(freq: int, inverse_dc: int) -> None:
    band = region.sub_band(freq)
    assert band is not None
    assert region.SUB_BANDS[band][2] == inverse_dc


@pytest.mark.parametrize("freq", [862900000, 868650000, 869300000, 870100000])
def test_frequencies_outside_any_sub_band(freq: int) -> None:
    assert region.sub_band(freq) is None
    assert not region.valid_freq(freq)


def cflist(freqs_hz: list[int], cf_type: int = 0) -> bytes:
    out = b"".join((f // 100).to_bytes(3, "little") for f in freqs_hz)
    return out + bytes([cf_type])


def test_cflist_adds_channels_3_to_7() -> None:
    # The ChirpStack / TTN EU868 plan: 867.1 .. 867.9 MHz.
    extra = [867100000, 867300000, 867500000, 867700000, 867900000]
    chans = region.apply_cflist(region.default_channels(), cflist(extra))
    assert [c[0] for c in chans[:8]] == [868100000, 868300000, 868500000] + extra
    assert all(c[1:] == [0, 5] for c in chans[:8])


def test_cflist_zero_frequency_disables_the_channel_and_other_types_are_ignored() -> None:
    chans = region.apply_cflist(region.default_channels(), cflist([867100000, 0, 0, 0, 867900000]))
    assert chans[4] is None and chans[7][0] == 867900000
    assert region.parse_cflist(cflist([867100000] * 5, cf_type=1)) == []
    assert region.parse_cflist(b"") == []


@pytest.mark.parametrize("bad", [bytes(15), cflist([902300000, 0, 0, 0, 0])])
def test_bad_cflist_is_rejected(bad: bytes) -> None:
    with pytest.raises(ValueError, match="cflist"):
        region.parse_cflist(bad)


def test_channel_mask_control() -> None:
    chans = region.apply_cflist(region.default_channels(), cflist([867100000, 867300000, 0, 0, 0]))
    assert region.channel_mask_apply(chans, 0b00011, 0) == 0b00011
    assert region.channel_mask_apply(chans, 0, 6) == 0b11111  # all defined channels on
    assert region.channel_mask_apply(chans, 0b100000, 0) is None  # channel 5 undefined
    assert region.channel_mask_apply(chans, 0, 0) is None  # nothing left
    assert region.channel_mask_apply(chans, 0b1, 1) is None  # RFU ChMaskCntl


def test_region_imports_on_micropython(micropython) -> None:
    got = micropython.eval_json(
        "import json\nfrom citynode.lorawan import region\n"
        "print(json.dumps([region.dr_params(5), region.rx1_dr(5, 2), region.max_app_payload(3),"
        " region.sub_band(869525000), region.tx_power_dbm(7)]))"
    )
    assert got == [[7, 125000], 3, 115, 4, 2]
