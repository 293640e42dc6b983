"""Recent history of a device from the store: per-field series and link quality, for sparklines.

The store's read API (:meth:`gateway.service.store.Store.readings`) pages the reading log oldest first, which
is what sinks and exports need; a sparkline needs the *newest* N values of each field. The queries
here walk the store's events index ``(dev_eui, shape, id)`` (an uplink's *shape* is its message type
with its field names, :mod:`gateway.service.store.shapes`) and the reading log's event index, so
their cost depends on N and the number of shapes, not on how long the device has been reporting:

* the device's shapes and their message types: one index seek each (:meth:`Store.device_shapes`, a
  loose index scan), instead of ``SELECT DISTINCT`` over all its uplinks;
* each message type: the newest N uplinks of each of its shapes as stored (``ORDER BY id DESC LIMIT
  N``, read backwards along the index), merged to the type's newest N, which carry the link quality
  (RSSI, SNR, SF), and then their readings;
* each field: the newest N of those readings (a field that a message carries in every uplink has
  exactly N; one that is sometimes absent, e.g. a sensor fault, has fewer).

The SQL is plain and ``?``-style, so it runs on both backends (SQLite and :mod:`gateway.service.store.postgres`)
through the store's one query method.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.contract.schema import load_schema
from gateway.service.store import Store, format_time, parse_time

__all__ = ["DeviceHistory", "FieldSeries", "LinkPoint", "device_history", "uplinks_since"]

MAX_POINTS = 500  # per field; a sparkline cannot show more
_MAX_TYPES = 16  # message types per device: a node sends its role's and device_status


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
    return store.query(sql, params)


def _uplinks_by_type(store: Store, dev_eui: str, points: int) -> dict[str, list[Any]]:
    """Message type -> the newest ``points`` uplinks of that type (id, received_at, rssi, snr, spreading
    factor, gateway count), newest first: per message shape along ``events_device_shape``, merged;
    a device with more shapes than the loose scan takes is read per type along its uplinks."""
    shapes = store.device_shapes(dev_eui)
    if shapes is None:
        types = [str(r[0]) for r in _query(
            store, "SELECT DISTINCT message_type FROM events WHERE dev_eui = ? AND message_type IS NOT NULL", (dev_eui,)
        )][:_MAX_TYPES]  # fmt: skip
        return {t: _query(store, _UPLINKS + "message_type = ? ORDER BY id DESC LIMIT ?", (dev_eui, t, points))
                for t in types}  # fmt: skip
    out: dict[str, list[Any]] = {}
    for shape, message_type in shapes.items():
        if message_type not in out and len(out) == _MAX_TYPES:
            continue
        rows = _query(store, _UPLINKS + "shape = ? ORDER BY id DESC LIMIT ?", (dev_eui, shape, points))
        out[message_type] = heapq.nlargest(points, [*out.get(message_type, []), *rows], key=lambda r: int(r[0]))
    return out


_UPLINKS = "SELECT id, received_at, rssi, snr, spreading_factor, gateway_count FROM events WHERE dev_eui = ? AND "


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
    Raises :class:`gateway.service.store.StoreError` when the store cannot be read.
    """
    dev_eui = dev_eui.lower()
    points = max(1, min(int(points), MAX_POINTS))
    uplinks: list[tuple[str, LinkPoint]] = []  # (message type, link of one uplink)
    by_field: dict[str, list[tuple[datetime, int, str, Any, str | None]]] = {}  # time, id, type, value, unit
    role_fields: dict[str, set[str]] = {}
    for message_type, events in sorted(_uplinks_by_type(store, dev_eui, points).items()):
        for row in events:
            uplinks.append((message_type, LinkPoint(parse_time(row[1]), row[2], row[3], row[4], int(row[5] or 0))))
        ids = [int(row[0]) for row in events]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for row in _query(
                store,
                "SELECT v.id, COALESCE(v.time, e.received_at), v.field, v.value, v.unit FROM reading_log AS v "
                f"JOIN events AS e ON e.id = v.event_id WHERE v.event_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ):
                name = str(row[2])
                by_field.setdefault(name, []).append(
                    (parse_time(row[1]), int(row[0]), message_type, json.loads(row[3]), row[4])
                )
                role_fields.setdefault(message_type, set()).add(name)
    series: list[FieldSeries] = []
    for name, rows in by_field.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        newest = rows[-points:]
        series.append(FieldSeries(name, newest[-1][2], newest[-1][4], tuple((t, v) for t, _, _, v, _ in newest)))
    role_counts = {t: len(f) for t, f in role_fields.items()}
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
    link = [p for _, p in sorted(uplinks, key=lambda u: u[1].time)][-points:]
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
