"""Recent history of a device from the store: per-field series and link quality, for sparklines.

The store's read API (:meth:`gateway.store.Store.readings`) pages the reading log oldest first, which
is what sinks and exports need; a sparkline needs the *newest* N values of each field. Every query
here walks the store's ``readings (dev_eui, field, time)`` index, so its cost depends on N and the
number of fields, not on how long the device has been reporting:

* the device's field names: one index seek per field (``MIN(field) ... WHERE field > ?``, a loose
  index scan), instead of ``SELECT DISTINCT`` over all its readings;
* each field: its newest N rows (``ORDER BY time DESC LIMIT N``), read backwards along the index;
* link quality (RSSI, SNR) has no table of its own: every reading carries the radio metadata of its
  uplink, so the uplinks are the distinct de-duplication ids among those rows.

The SQL is plain and ``?``-style, so it runs on both backends (SQLite and :mod:`gateway.store_postgres`)
through the store's one query method.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.schema import load_schema
from gateway.store import Store, format_time, parse_time

__all__ = ["DeviceHistory", "FieldSeries", "LinkPoint", "device_history", "uplinks_since"]

MAX_POINTS = 500  # per field; a sparkline cannot show more
_MAX_FIELDS = 64  # a passenger counter with 4 doors has 17; anything beyond is not a citynode node


@dataclass(frozen=True)
class FieldSeries:
    """The newest values of one field of one device, oldest first, with its unit."""

    field: str  # e.g. "temperature", "doors.0.boardings"
    message_type: str  # of the newest reading, e.g. "air_quality"
    unit: str | None  # e.g. "°C"; None for counts and enums
    points: tuple[tuple[datetime, Any], ...]  # (reading time UTC, value: number, bool or string)

    @property
    def last(self) -> Any:
        return self.points[-1][1] if self.points else None

    @property
    def numeric(self) -> bool:
        """True when every value is a number or a bool (plotted as 0/1): the series can be drawn."""
        return bool(self.points) and all(isinstance(v, int | float) for _, v in self.points)

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "message_type": self.message_type,
            "unit": self.unit,
            "points": [[format_time(t), v] for t, v in self.points],
        }


@dataclass(frozen=True)
class LinkPoint:
    """Radio metadata of one uplink (best gateway)."""

    time: datetime  # time of the uplink's newest reading = network receive time
    rssi: int | None  # dBm
    snr: float | None  # dB
    spreading_factor: int | None
    gateway_count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "time": format_time(self.time),
            "rssi": self.rssi,
            "snr": self.snr,
            "spreading_factor": self.spreading_factor,
            "gateway_count": self.gateway_count,
        }


@dataclass(frozen=True)
class DeviceHistory:
    """The recent readings of every field of a device and the link quality of its recent uplinks."""

    dev_eui: str
    role: str | None  # the message type most of its fields come in (not device_status when it has another)
    fields: tuple[FieldSeries, ...]  # its role's fields first, in payload-contract (schema) order
    link: tuple[LinkPoint, ...]  # oldest first, at most ``points`` uplinks

    def field(self, name: str) -> FieldSeries | None:
        return next((f for f in self.fields if f.field == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "dev_eui": self.dev_eui,
            "role": self.role,
            "fields": [f.to_json() for f in self.fields],
            "link": [p.to_json() for p in self.link],
        }


def _query(store: Store, sql: str, params: Sequence[Any]) -> list[Any]:
    # The store has no public "newest N" read; its query method is shared by both backends.
    return store._query(sql, params)  # noqa: SLF001


def _field_names(store: Store, dev_eui: str) -> list[str]:
    names: list[str] = []
    last = ""
    while len(names) < _MAX_FIELDS:
        row = _query(
            store, "SELECT MIN(field) FROM reading_log WHERE dev_eui = ? AND field > ?", (dev_eui, last)
        )
        if not row or row[0][0] is None:
            break
        last = str(row[0][0])
        names.append(last)
    return names


def _schema_position(message_type: str, field: str) -> tuple[int, int, int]:
    """Where ``field`` comes in its message's payload contract: ``doors.1.boardings`` sorts by the
    ``doors`` field, then list position 1, then ``boardings`` among the item's fields."""
    spec = load_schema().messages.get(message_type)
    if spec is None:
        return (1000, 0, 0)
    parts = field.split(".")
    index = next((i for i, f in enumerate(spec.fields) if f.name == parts[0]), 1000)
    if len(parts) == 3 and parts[1].isdigit() and index < 1000:
        items = [item.name for item in spec.fields[index].items]
        return (index, int(parts[1]), items.index(parts[2]) if parts[2] in items else 1000)
    return (index, 0, 0)


def device_history(store: Store, dev_eui: str, points: int = 60) -> DeviceHistory:
    """The newest ``points`` readings of each field of ``dev_eui`` and its newest ``points`` uplinks' link.

    ``points`` is clamped to 1..:data:`MAX_POINTS`. An unknown device has no fields and no link points.
    Raises :class:`gateway.store.StoreError` when the store cannot be read.
    """
    dev_eui = dev_eui.lower()
    points = max(1, min(int(points), MAX_POINTS))
    series: list[FieldSeries] = []
    uplinks: dict[str, LinkPoint] = {}
    role_counts: dict[str, int] = {}
    for name in _field_names(store, dev_eui):
        rows = _query(
            store,
            "SELECT time, value, unit, message_type, deduplication_id, rssi, snr, spreading_factor, "
            "gateway_count FROM readings WHERE dev_eui = ? AND field = ? ORDER BY time DESC, id DESC LIMIT ?",
            (dev_eui, name, points),
        )
        if not rows:
            continue
        pts = []
        for row in reversed(rows):
            time = parse_time(row[0])
            pts.append((time, json.loads(row[1])))
            dedup = row[4]
            seen = uplinks.get(dedup)
            if seen is None or time > seen.time:
                uplinks[dedup] = LinkPoint(time, row[5], row[6], row[7], int(row[8] or 0))
        message_type = rows[0][3]
        role_counts[message_type] = role_counts.get(message_type, 0) + 1
        series.append(FieldSeries(name, message_type, rows[0][2], tuple(pts)))
    # The device's own role (the message type with most fields) first, device_status after it.
    main = max(role_counts, key=lambda t: (t != "device_status", role_counts[t]), default=None)
    series.sort(
        key=lambda f: (
            f.message_type != main,
            f.message_type,
            _schema_position(f.message_type, f.field),
            f.field,
        )
    )
    link = sorted(uplinks.values(), key=lambda p: p.time)[-points:]
    return DeviceHistory(dev_eui, main, tuple(series), tuple(link))


# The events table has no index on received_at; its ids follow arrival order, so only the newest
# ids are scanned (a primary-key range): enough for a minute at 10 000 events/s, the bench's order.
RECENT_EVENTS = 600_000


def uplinks_since(store: Store, since: datetime) -> int:
    """Uplink events received at or after ``since`` (decoded or not), among the newest
    :data:`RECENT_EVENTS` events: the basis of "uplinks per minute"."""
    rows = _query(
        store,
        "SELECT COUNT(*) FROM events WHERE id > (SELECT COALESCE(MAX(id), 0) FROM events) - ? "
        "AND kind || '' = 'up' AND received_at >= ?",  # || '': SQLite must not pick the kind index
        (RECENT_EVENTS, format_time(since)),
    )
    return int(rows[0][0])
