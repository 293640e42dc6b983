"""Reads: the reading log as :class:`StoredReading` values (the API, exports, the sinks' outbox
pages) and the store's totals."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.contract.records import RadioMeta, Reading
from gateway.service.store.backend import Backend
from gateway.service.store.values import StoredReading, format_time, parse_time

__all__ = ["READING_COLUMNS", "counts", "dedup_ids", "event_count", "firmware_versions", "readings", "readings_statement", "stored_reading"]

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
    with one, the device's events are walked in id order (``events_device_id``) from the event of
    the first reading after ``after_id``, and each event's readings in id order
    (``reading_log_event``). That is the log order because reading ids grow with event ids. A page
    costs what it returns (and the readings a ``field`` filter skips), whatever the device's history.
    """
    statement = readings_statement(db, device, field, since, limit, after_id)
    if statement is None:
        return []
    return [stored_reading(row) for row in db.query(*statement)]


def readings_statement(
    db: Backend, device: str | None, field: str | None, since: datetime | None, limit: int, after_id: int
) -> tuple[str, list[Any]] | None:
    """The SQL and parameters :func:`readings` runs (None: nothing can follow ``after_id``)."""
    d = db.dialect
    params: list[Any] = []
    where: list[str] = []
    if device:
        # The first reading after the cursor (a primary-key seek) names the event to start from.
        start = db.query(
            d.sql("SELECT event_id FROM reading_log WHERE id > ? ORDER BY id LIMIT 1"), (after_id,)
        )
        if not start:
            return None
        where += ["e.dev_eui = ?", "e.id >= ?", "v.id > ?"]
        params += [device.lower(), int(start[0][0]), after_id]
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
    params.append(limit)
    order = "e.id, v.id" if device else "v.id"
    sql = (
        f"SELECT {_JOINED_COLUMNS} FROM reading_log AS v JOIN events AS e ON e.id = v.event_id "
        f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
    )
    return d.sql(sql), params


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
# device_status v1; a FUOTA update changes it). One index walk per device (events_device_id).
_FIRMWARE_OF = (
    "(SELECT v.value FROM events AS e JOIN reading_log AS v ON v.event_id = e.id "
    "WHERE e.dev_eui = {dev} AND e.message_type = 'device_status' AND v.field = 'firmware' "
    "ORDER BY e.id DESC LIMIT 1)"
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
