"""A simple ADR algorithm modelled on ChirpStack v4's default ("Default ADR algorithm (LoRa only)").

From the best SNR of the device's recent uplinks (ChirpStack keeps the last 20) the margin above the
demodulation floor of the current data rate, minus an installation margin (10 dB by default), is
spent in 3 dB steps: first raising the data rate up to the highest allowed one, then lowering the TX
power (raising the TXPower index); a negative margin raises the power again (never the data rate
down: that is the device's ADR backoff's job, LoRaWAN 1.0.4 §4.3.1.1). NbTrans follows the packet
loss rate over the same history with ChirpStack's table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AdrState", "REQUIRED_SNR_DB", "adr_decision", "loss_rate"]

# SX1276 datasheet Table 13 (and SX1261/2 §6.1.1.1): demodulator SNR limit per spreading factor, dB.
REQUIRED_SNR_DB = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}

_STEP_DB = 3.0
# ChirpStack's NbTrans table: rows = loss-rate bucket (<5 %, <10 %, <30 %, >=30 %), columns = current
# NbTrans 1..3 -> new NbTrans.
_NB_TRANS = ((1, 1, 2), (1, 2, 3), (2, 3, 3), (3, 3, 3))


@dataclass(frozen=True)
class AdrState:
    dr: int
    tx_power: int  # TXPower index (RP002 EU868: 0 = max EIRP, each step -2 dB)
    nb_trans: int


def loss_rate(fcnts: Sequence[int]) -> float:
    """Fraction of frames lost, from the FCnts of the received uplinks (gaps in the sequence)."""
    if len(fcnts) < 2:
        return 0.0
    span = fcnts[-1] - fcnts[0] + 1
    return max(0.0, (span - len(set(fcnts))) / span)


def adr_decision(
    current: AdrState,
    max_snr_db: float,
    sf: int,
    *,
    max_dr: int = 5,
    max_tx_power: int = 7,
    installation_margin_db: float = 10.0,
    loss: float = 0.0,
) -> AdrState:
    """The data rate, TXPower index and NbTrans the network should ask for (see the module doc).

    ``sf`` is the spreading factor of the current data rate; ``max_snr_db`` the best recent SNR.
    """
    margin = max_snr_db - REQUIRED_SNR_DB[sf] - installation_margin_db
    steps = int(margin / _STEP_DB)  # truncates toward zero, like ChirpStack
    dr, power = current.dr, current.tx_power
    while steps > 0 and dr < max_dr:
        dr += 1
        steps -= 1
    while steps > 0 and power < max_tx_power:
        power += 1
        steps -= 1
    while steps < 0 and power > 0:
        power -= 1
        steps += 1
    bucket = 0 if loss < 0.05 else 1 if loss < 0.10 else 2 if loss < 0.30 else 3
    nb = _NB_TRANS[bucket][min(max(current.nb_trans, 1), 3) - 1]
    return AdrState(dr, power, nb)
