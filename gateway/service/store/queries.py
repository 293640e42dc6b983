"""Reads: the reading log as :class:`StoredReading` values (the API, exports, the sinks' outbox
pages) and the store's totals."""

from __future__ import annotations

import heapq
import json
from collections.abc import Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from gateway.contract.records import RadioMeta, Reading
from gateway.service.store.backend import Backend
from gateway.service.store.shapes import device_shapes, shapes_with_field
from gateway.service.store.values import StoredReading, format_time, parse_time

__all__ = ["READING_COLUMNS", "counts", "dedup_ids", "event_count", "firmware_versions", "readings", "readings_statements", "stored_reading"]

READING_COLUMNS = (
    "id, dev_eui, device_name, message_type, time, field, value, unit, unit_code, deduplication_id, "
    "f_cnt, tags, rssi, snr, gateway_id, spreading_factor, frequency, gateway_count"
)

# READING_COLUMNS of the readings view, from its two tables (the API's query names them directly).
_JOINED_COLUMNS = (
    "v.id, e.dev_eui, e.device_name, e.message_type, COALESCE(v.time, e.received_at), v.field, v.value, v.unit, v.unit_code, "
    "e.dedup_id, e.f_cnt, e.tags, e.rssi, e.snr, e.gateway_id, e.spreading_factor, e.frequency, e.gateway_count"
)


def stored_reading(row: Sequence[Any]) -> StoredReading:
    """A row of :data:`READING_COLUMNS` as a value."""
    reading = Reading(
        dev_eui=row[1],
        device_name=row[2],
        message_type=row[3],
        time=parse_time(row[4]),
        field=row[5],
        value=json.loads(row[6]),
        unit=row[7],
        unit_code=row[8],
        deduplication_id=row[9],
        f_cnt=row[10],
        tags=json.loads(row[11]),
    )
    radio = RadioMeta(
        rssi=row[12],
        snr=row[13],
        gateway_id=row[14],
        spreading_factor=row[15],
        frequency=row[16],
        gateway_count=row[17],
    )
    return StoredReading(id=row[0], reading=reading, radio=radio)


def readings(
    db: Backend,
    device: str | None = None,
    field: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
    after_id: int = 0,
) -> list[StoredReading]:
    """Readings with ``id > after_id``, oldest first (log order), filtered by device EUI, field name
    and ``time >= since``; at most ``limit``. The next page starts after the last id returned.

    Keyset paging on indexes, never a sort: without a device the log is read along its primary key;
    with one, the device's events are walked in id order from the event of the first reading after
    ``after_id`` (``events_device_id``; with ``field``, ``events_device_shape`` for each of the
    device's message shapes that carries the field, merged by id), and each event's readings in id
    order (``reading_log_event``). That is the log order because reading ids grow with event ids. A
    page costs what it returns whatever the device's history, also for a field the device seldom or
    never sends (the readings a ``field`` filter skips are only those of other fields in the same
    uplinks).
    """
    statements = readings_statements(db, device, field, since, limit, after_id)
    if len(statements) == 1:
        rows = db.query(*statements[0])
    else:  # one page per shape, each in id order: merged, cut at the limit
        rows = list(islice(heapq.merge(*(db.query(*s) for s in statements), key=_first), limit))
    return [stored_reading(row) for row in rows]


def _first(row: Sequence[Any]) -> Any:
    return row[0]


def readings_statements(
    db: Backend, device: str | None, field: str | None, since: datetime | None, limit: int, after_id: int
) -> list[tuple[str, list[Any]]]:
    """The SQL and parameters :func:`readings` runs: one statement, or with a device and a field one
    per shape of the device's uplinks that carries the field (each in log order; none when no
    shape does or nothing can follow ``after_id``)."""
    d = db.dialect
    where: list[str] = []
    params: list[Any] = []
    order = "v.id"
    shapes: list[int] | None = None
    if device:
        device = device.lower()
        if field:
            # A device with very many shapes (a codec whose keys vary) is walked as without shapes.
            known = device_shapes(db, device)
            shapes = None if known is None else shapes_with_field(db, field, known)
            if shapes == []:
                return []
        # The first reading after the cursor (a primary-key seek) names the event to start from.
        start = db.query(d.sql("SELECT event_id FROM reading_log WHERE id > ? ORDER BY id LIMIT 1"), (after_id,))
        if not start:
            return []
        where += ["e.dev_eui = ?", "e.id >= ?", "v.id > ?"]
        params += [device, int(start[0][0]), after_id]
        order = "e.id, v.id"
    else:
        where.append("v.id > ?")
        params.append(after_id)
    if field:
        where.append("v.field = ?")
        params.append(field)
    if since is not None:
        # received_at: a reading is never newer than its uplink, so this only skips whole old uplinks.
        where.append("COALESCE(v.time, e.received_at) >= ? AND e.received_at >= ?")
        params.extend((format_time(since), format_time(since)))
    head = f"SELECT {_JOINED_COLUMNS} FROM reading_log AS v JOIN events AS e ON e.id = v.event_id WHERE "
    tail = f" ORDER BY {order} LIMIT ?"
    if shapes is None:
        return [(d.sql(head + " AND ".join(where) + tail), [*params, limit])]
    where.insert(1, "e.shape = ?")
    sql = d.sql(head + " AND ".join(where) + tail)
    return [(sql, [params[0], shape, *params[1:], limit]) for shape in shapes]


def counts(db: Backend) -> dict[str, int]:
    """Row counts and frame-counter totals, for /metrics and /health."""
    row = db.query(
        "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM events WHERE kind = 'up'), "
        "(SELECT COUNT(*) FROM reading_log), (SELECT COUNT(*) FROM dead_letters), "
        "(SELECT COUNT(*) FROM devices), (SELECT COALESCE(SUM(fcnt_gaps), 0) FROM devices), "
        "(SELECT COALESCE(SUM(resets), 0) FROM devices)"
    )[0]
    keys = ("events", "uplinks", "readings", "dead_letters", "devices", "fcnt_gaps", "fcnt_resets")
    return {k: int(v) for k, v in zip(keys, row, strict=True)}


def event_count(db: Backend, kind: str | None = None) -> int:
    if kind is None:
        return int(db.query("SELECT COUNT(*) FROM events")[0][0])
    return int(db.query(db.dialect.sql("SELECT COUNT(*) FROM events WHERE kind = ?"), (kind,))[0][0])


def dedup_ids(db: Backend, kind: str = "up") -> list[str]:
    """Every stored de-duplication id of ``kind`` (for end-to-end counting in tests and tools)."""
    sql = db.dialect.sql("SELECT dedup_id FROM events WHERE kind = ? ORDER BY id")
    return [row[0] for row in db.query(sql, (kind,))]


# The app version a device reports: the "firmware" field of its newest device_status uplink (schema
# device_status v1; a FUOTA update changes it). The newest uplink of each device_status shape that
# carries the field is one seek of events_device_shape (MAX(id)); the newest of those, its reading.
_FIRMWARE_OF = (
    "(SELECT v.value FROM reading_log AS v WHERE v.field = 'firmware' AND v.event_id = "
    "(SELECT MAX((SELECT MAX(e.id) FROM events AS e WHERE e.dev_eui = {dev} AND e.shape = f.shape)) "
    "FROM shape_fields AS f JOIN shapes AS s ON s.id = f.shape "
    "WHERE f.field = 'firmware' AND s.message_type = 'device_status'))"
)


def firmware_versions(db: Backend, dev_euis: Sequence[str] | None = None) -> dict[str, str]:
    """DevEUI -> the version its newest device_status reported, for ``dev_euis`` (None: every device);
    devices that never sent one are left out."""
    if dev_euis is None:
        rows = db.query("SELECT d.dev_eui, " + _FIRMWARE_OF.format(dev="d.dev_eui") + " FROM devices AS d")
    else:
        rows = [(e, *r) for e in dev_euis
                for r in db.query(db.dialect.sql("SELECT " + _FIRMWARE_OF.format(dev="?")), (e,))]
    out = {}
    for dev_eui, value in rows:
        if value is None:
            continue
        version = json.loads(value) if isinstance(value, str) else value
        if isinstance(version, str):
            out[str(dev_eui)] = version
    return out
