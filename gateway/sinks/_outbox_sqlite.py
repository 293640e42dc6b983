"""A minimal SQLite outbox with the outbox part of ``gateway.store.Store``'s API.

Stand-in used by the sink and delivery tests while ``gateway.store`` is being built on another branch;
it implements exactly the methods the delivery worker calls, with the same semantics (append-only
readings, one cursor per sink, dead letters), so the tests exercise a real on-disk outbox.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

from gateway.records import Reading

__all__ = ["SqliteOutbox"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dev_eui TEXT NOT NULL, device_name TEXT NOT NULL, message_type TEXT NOT NULL,
    time TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    unit TEXT, unit_code TEXT, deduplication_id TEXT NOT NULL, f_cnt INTEGER NOT NULL, tags TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sink_cursors (sink TEXT PRIMARY KEY, reading_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, reason TEXT NOT NULL,
    raw TEXT, dev_eui TEXT);
"""


class SqliteOutbox:
    """Append readings, read them after a cursor, keep cursors and dead letters; WAL like the real store."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, path: str | Path) -> SqliteOutbox:
        return cls(path)

    def close(self) -> None:
        self._db.close()

    def add_readings(self, readings: list[Reading]) -> list[int]:
        ids = []
        with self._db:
            for r in readings:
                cur = self._db.execute(
                    "INSERT INTO readings (dev_eui, device_name, message_type, time, field, value, unit,"
                    " unit_code, deduplication_id, f_cnt, tags) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (r.dev_eui, r.device_name, r.message_type, r.time.isoformat(), r.field,
                     json.dumps(r.value), r.unit, r.unit_code, r.deduplication_id, r.f_cnt,
                     json.dumps(r.tags)),
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def readings_after(self, reading_id: int, limit: int) -> list[tuple[int, Reading]]:
        rows = self._db.execute(
            "SELECT id, dev_eui, device_name, message_type, time, field, value, unit, unit_code,"
            " deduplication_id, f_cnt, tags FROM readings WHERE id > ? ORDER BY id LIMIT ?",
            (reading_id, limit),
        ).fetchall()
        return [
            (row[0], Reading(row[1], row[2], row[3], datetime.fromisoformat(row[4]), row[5],
                             json.loads(row[6]), row[7], row[8], row[9], row[10], json.loads(row[11])))
            for row in rows
        ]

    def get_cursor(self, sink: str) -> int:
        row = self._db.execute("SELECT reading_id FROM sink_cursors WHERE sink = ?", (sink,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, sink: str, reading_id: int) -> None:
        self._db.execute(
            "INSERT INTO sink_cursors (sink, reading_id) VALUES (?, ?)"
            " ON CONFLICT(sink) DO UPDATE SET reading_id = excluded.reading_id",
            (sink, reading_id),
        )

    def pending(self, sink: str) -> int:
        return int(self._db.execute(
            "SELECT COUNT(*) FROM readings WHERE id > ?", (self.get_cursor(sink),)
        ).fetchone()[0])

    def dead_letter(self, source: str, reason: str, raw: str | bytes | None, dev_eui: str | None = None) -> None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        self._db.execute(
            "INSERT INTO dead_letters (source, reason, raw, dev_eui) VALUES (?,?,?,?)",
            (source, reason, raw, dev_eui),
        )

    def dead_letters(self) -> list[tuple[str, str, str | None, str | None]]:
        return [tuple(r) for r in self._db.execute(
            "SELECT source, reason, raw, dev_eui FROM dead_letters ORDER BY id")]  # type: ignore[misc]
