"""Frame-counter health: what one uplink changes on its device, as one pure function.

Every write path (one uplink or a batch, SQLite or PostgreSQL) reads the device's :class:`Health`,
calls :func:`after_uplink` for each of its uplinks in order and writes the result with the same
upsert (:mod:`gateway.service.store.devices`). Nothing else decides what a gap, a repeat, a late
uplink or a reset is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.contract.records import Reading

__all__ = ["FCNT_MODULUS", "FcntStep", "Health", "HealthChange", "after_uplink", "battery_of", "fcnt_step"]

FCNT_MODULUS = 1 << 32  # LoRaWAN 1.0.4 / 1.1: FCntUp is a 32-bit counter (16 bits on air)
_WRAP_WINDOW = 1 << 16  # a drop from above 2**32 - window to below window is a wrap, not a reset
_LATE_WINDOW = 64  # a drop by at most this many frames (to above this) is a late uplink, not a reset


@dataclass(frozen=True)
class FcntStep:
    """How one uplink's FCnt relates to the previous one of the same device."""

    lost: int = 0  # FCnt values skipped (uplinks that never arrived); -1: a late one arrived after all
    reset: bool = False  # the counter went backwards without a join in between
    repeated: bool = False  # same FCnt again (retransmission of a confirmed uplink)
    late: bool = False  # an older FCnt stored after a newer one (parallel ingests): fills a gap


def fcnt_step(last: int | None, new: int) -> FcntStep:
    """Classify ``new`` against the device's ``last`` FCnt.

    * no previous FCnt (first sight, or just joined): frames ``0 .. new-1`` were lost when ``new > 0``
      after a join; on first sight ever we cannot know, so nothing is counted (``last is None``).
    * ``new == last + 1``: in order. ``new > last + 1``: ``new - last - 1`` uplinks lost.
    * ``new == last``: a repeat (LoRaWAN 1.0.4 4.3.1.1 retransmits confirmed uplinks with the same FCnt).
    * ``new < last``: a 32-bit wrap when ``last`` is near 2**32 and ``new`` near 0 (counted as
      gap across the wrap); else, when ``new`` is at most ``_LATE_WINDOW`` behind (and above it: a
      restarted node counts from 0, so small counters read as a restart), a late
      uplink: ChirpStack forwards a device's uplinks in FCnt order, but ingest processes or instances
      splitting a shared subscription store them in parallel, so an older one may be stored after a
      newer one; it fills a gap counted before (``lost=-1``; the caller never lets the count go below
      0) and leaves the last FCnt where it is. Otherwise a reset: the node rebooted without
      persisting its counter (ABP) or rejoined without us seeing the join; frames ``0 .. new-1`` of the
      new session were lost.
    """
    if last is None:
        return FcntStep()
    if new == last:
        return FcntStep(repeated=True)
    if new > last:
        return FcntStep(lost=new - last - 1)
    if last >= FCNT_MODULUS - _WRAP_WINDOW and new < _WRAP_WINDOW:
        return FcntStep(lost=new + FCNT_MODULUS - last - 1)
    if new > _LATE_WINDOW and last - new <= _LATE_WINDOW:
        return FcntStep(lost=-1, late=True)
    return FcntStep(lost=new, reset=True)


@dataclass(frozen=True, slots=True)
class Health:
    """What the store keeps of a device between uplinks to judge the next one."""

    last_fcnt: int | None = None  # None: never seen, or joined since
    fcnt_gaps: int = 0
    battery: float | None = None  # V, the last numeric "battery" reading
    role: str | None = None


@dataclass(frozen=True, slots=True)
class HealthChange:
    """One uplink's effect: the device's health after it, and what it adds to the counters."""

    health: Health
    lost: int  # added to fcnt_gaps (never taking it below 0)
    reset: bool


def battery_of(readings: Sequence[Reading]) -> Any:
    """The value of the first numeric ``battery`` reading, or None."""
    for x in readings:
        if x.field == "battery" and not isinstance(x.value, bool) and isinstance(x.value, int | float):
            return x.value
    return None


def after_uplink(before: Health | None, f_cnt: int, battery: Any, role: str | None) -> HealthChange:
    """The device's health after an uplink with ``f_cnt`` (``before=None``: a device never seen).

    A repeat or a late uplink leaves the last FCnt where it is; a late uplink fills a counted gap
    (the gap count never goes below 0); ``battery`` and ``role`` replace the stored ones when given.
    """
    if before is None:
        before = Health()
    step = fcnt_step(before.last_fcnt, f_cnt)
    lost = step.lost if before.fcnt_gaps + step.lost >= 0 else 0
    health = Health(
        last_fcnt=before.last_fcnt if step.repeated or step.late else f_cnt,
        fcnt_gaps=before.fcnt_gaps + lost,
        battery=battery if battery is not None else before.battery,
        role=role or before.role,
    )
    return HealthChange(health, lost, step.reset)
