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

__all__ = ["READING_COLUMNS", "counts", "dedup_ids", "event_count", "readings", "stored_reading"]

READING_COLUMNS = (
    "id, dev_eui, device_name, message_type, time, field, value, unit, unit_code, deduplication_id, "
    "f_cnt, tags, rssi, snr, gateway_id, spreading_factor, frequency, gateway_count"
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
    """Readings, oldest first, filtered by device EUI, field name and ``time >= since``."""
    where = ["id > ?"]
    params: list[Any] = [after_id]
    if device:
        where.append("dev_eui = ?")
        params.append(device.lower())
    if field:
        where.append("field = ?")
        params.append(field)
    if since is not None:
        # received_at: a reading is never newer than its uplink, so this only skips whole old
        # uplinks early (a device's query walks its events, then their readings).
        where.append("time >= ? AND received_at >= ?")
        params.extend((format_time(since), format_time(since)))
    params.append(limit)
    sql = f"SELECT {READING_COLUMNS} FROM readings WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
    return [stored_reading(row) for row in db.query(db.dialect.sql(sql), params)]


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
