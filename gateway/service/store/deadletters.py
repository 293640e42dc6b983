"""Dead letters: what the gateway received but could not use, kept with the reason and the time the
gateway received it (not a time the body claims: a bad body's own time cannot be trusted)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.service.store.backend import Backend, Cursor
from gateway.service.store.dialect import Dialect
from gateway.service.store.values import DeadLetter, parse_time

__all__ = ["insert", "insert_many", "newest", "row"]

_INSERT = "INSERT INTO dead_letters (received_at, source, reason, raw, raw_is_text, dev_eui) VALUES (?, ?, ?, ?, ?, ?)"


def row(received: str, source: str, reason: str, raw: bytes | str | None, dev_eui: str | None) -> tuple[Any, ...]:
    """A dead letter's row (text is kept as UTF-8 bytes and marked as text)."""
    is_text = isinstance(raw, str)
    blob = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    return (received, source, reason, blob, 1 if is_text else 0, dev_eui)


def insert(cur: Cursor, d: Dialect, values: tuple[Any, ...]) -> int:
    """Insert one dead letter row; returns its id."""
    return int(cur.execute(d.sql(_INSERT + " RETURNING id"), values).fetchone()[0])


def insert_many(cur: Cursor, d: Dialect, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        cur.executemany(d.sql(_INSERT), rows)


def newest(db: Backend, limit: int = 100) -> list[DeadLetter]:
    """The newest ``limit`` dead letters, newest first."""
    rows = db.query(db.dialect.sql("SELECT * FROM dead_letters ORDER BY id DESC LIMIT ?"), (limit,))
    out = []
    for r in rows:
        raw = r["raw"]
        if raw is not None and r["raw_is_text"]:
            raw = bytes(raw).decode("utf-8", "surrogateescape")
        elif raw is not None:
            raw = bytes(raw)
        out.append(
            DeadLetter(
                id=r["id"],
                received_at=parse_time(r["received_at"]),
                source=r["source"],
                reason=r["reason"],
                raw=raw if raw is not None else b"",
                dev_eui=r["dev_eui"],
            )
        )
    return out
