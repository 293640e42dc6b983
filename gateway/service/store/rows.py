"""Building rows and multi-row statements: shared by every write path of the store."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from gateway.contract.records import Reading, Uplink
from gateway.service.store.values import format_time

__all__ = ["chunks", "multi_row", "pow2_chunks", "reading_rows", "uplink_event_values", "value_json"]

MAX_ROWS = 512  # rows per multi-row INSERT: 512 x 19 values stays under SQLite's 32766 variables


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pow2_chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """Slices of ``MAX_ROWS`` rows, then of the powers of two that make up the rest: a handful of
    distinct statement sizes, so the connection's statement cache keeps them prepared."""
    start, n = 0, len(items)
    while n - start >= MAX_ROWS:
        yield items[start : start + MAX_ROWS]
        start += MAX_ROWS
    size = MAX_ROWS // 2
    while start < n:
        if n - start >= size:
            yield items[start : start + size]
            start += size
        size //= 2


@cache
def multi_row(head: str, row: str, n: int) -> str:
    return head + ", ".join([row] * n)


def value_json(value: Any) -> str:
    """JSON text of a reading value; the common scalar types without the json module's overhead."""
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return repr(value)  # what json.dumps writes for a finite float
    return json.dumps(value)


def reading_rows(
    event_id: int, readings: Sequence[Reading], received: str, times: dict[datetime, str] | None = None
) -> list[tuple[Any, ...]]:
    """The ``reading_log`` rows of one uplink's readings: (event_id, time, field, value, unit, unit_code).

    ``time`` is None where it is the uplink's receive time ``received`` (nearly always: the view and
    every read take that time then), the reading's own otherwise. ``value_num`` is the view's.

    What the readings share with their uplink (device name, message type, deduplication id, FCnt,
    tags, radio metadata) is stored once, in the uplink's event row (:func:`uplink_event_values`).
    ``times`` caches formatted times (readings share a few: their uplink's, a batch's offsets).
    """
    if times is None:
        times = {}
    rows = []
    for x in readings:
        t = times.get(x.time)
        if t is None:
            t = times[x.time] = format_time(x.time)
        value = x.value
        kind = type(value)
        if kind is float and math.isfinite(value):  # the common case, inlined
            text = repr(value)
        elif kind is int:
            text = str(value)
        else:
            text = value_json(value)
        rows.append((event_id, None if t == received else t, x.field, text, x.unit, x.unit_code))
    return rows


def uplink_event_values(
    uplink: Uplink,
    received: str,
    encoding: str,
    raw: bytes | None,
    message_type: str | None,
    tags_json: str,
    shape: int | None = None,
) -> tuple[Any, ...]:
    """An uplink's ``events`` row after ``kind`` (``shape``: its id in ``shapes``, :mod:`.shapes`)."""
    r = uplink.radio
    return (
        uplink.dev_eui,
        received,
        uplink.deduplication_id,
        encoding,
        raw,
        uplink.device_name,
        message_type,
        uplink.f_cnt,
        tags_json,
        r.rssi,
        r.snr,
        r.gateway_id,
        r.spreading_factor,
        r.frequency,
        r.gateway_count,
        shape,
    )
