"""The sinks' outbox: the reading log read by position, and one delivery cursor per sink."""

from __future__ import annotations

from gateway.service.store.backend import Backend
from gateway.service.store.queries import READING_COLUMNS, stored_reading
from gateway.service.store.values import StoredReading, format_time, now

__all__ = ["cursors", "get_cursor", "last_reading_id", "pending", "set_cursor", "stored_readings_after"]

_SET_CURSOR = (
    "INSERT INTO sink_cursors (sink, reading_id, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (sink) DO UPDATE SET reading_id = CASE WHEN excluded.reading_id > sink_cursors.reading_id "
    "THEN excluded.reading_id ELSE sink_cursors.reading_id END, "
    "updated_at = excluded.updated_at"
)


def stored_readings_after(db: Backend, reading_id: int, limit: int = 500) -> list[StoredReading]:
    """The next ``limit`` readings with ``id > reading_id``, oldest first: a sink's outbox page."""
    sql = db.dialect.sql(f"SELECT {READING_COLUMNS} FROM readings WHERE id > ? ORDER BY id LIMIT ?")
    return [stored_reading(row) for row in db.query(sql, (reading_id, limit))]


def get_cursor(db: Backend, sink: str) -> int:
    """Id of the last reading delivered to ``sink`` (0 when it never delivered anything)."""
    rows = db.query(db.dialect.sql("SELECT reading_id FROM sink_cursors WHERE sink = ?"), (sink,))
    return int(rows[0][0]) if rows else 0


def set_cursor(db: Backend, sink: str, reading_id: int) -> None:
    """Record that ``sink`` has delivered every reading up to ``reading_id``; never moves backwards
    (a late, stale acknowledgement is ignored). Raises the driver's error."""
    with db.tx() as cur:
        cur.execute(db.dialect.sql(_SET_CURSOR), (sink, reading_id, format_time(now())))


def pending(db: Backend, sink: str) -> int:
    """Readings not yet delivered to ``sink``."""
    sql = db.dialect.sql("SELECT COUNT(*) FROM reading_log WHERE id > ?")
    return int(db.query(sql, (get_cursor(db, sink),))[0][0])


def cursors(db: Backend) -> dict[str, int]:
    """Every sink's cursor."""
    return {row[0]: int(row[1]) for row in db.query("SELECT sink, reading_id FROM sink_cursors ORDER BY sink")}


def last_reading_id(db: Backend) -> int:
    return int(db.query("SELECT COALESCE(MAX(id), 0) FROM reading_log")[0][0])
