"""Where SQLite and PostgreSQL differ, as data: the shared statement layer renders through a dialect.

Every statement of the store is written once, in SQL both engines run (``ON CONFLICT``,
``RETURNING``, ``CASE``) with ``?`` parameters. :meth:`Dialect.sql` renders it for the backend's
driver once (``sqlite3`` takes ``?``, psycopg takes ``%s``) and caches the result; DDL names its
engine-dependent types as ``{ID}``, ``{BIGINT}``, ... and is rendered by :meth:`Dialect.ddl`.
The statements hold no literal ``?`` or ``%`` of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

__all__ = ["POSTGRES", "SQLITE", "Dialect"]


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" | "postgres"
    mark: str  # the driver's parameter marker
    types: dict[str, str] = field(hash=False, compare=False)  # DDL placeholders
    for_update: str = ""  # row lock on a read inside a write transaction
    bulk_ids: bool = False  # event ids may be allocated by the writer (one writer at a time, no sequence)

    def sql(self, statement: str) -> str:
        """``statement`` with its ``?`` parameters in this driver's style."""
        return _render(self.mark, statement)

    def ddl(self, statement: str) -> str:
        """A schema statement with ``{ID}``, ``{BIGINT}``, ``{REAL}``, ``{BLOB}`` ... filled in."""
        return statement.format(**self.types)


@cache
def _render(mark: str, statement: str) -> str:
    return statement if mark == "?" else statement.replace("?", mark)


SQLITE = Dialect(
    name="sqlite",
    mark="?",
    types={
        "EVENT_ID": "INTEGER PRIMARY KEY",  # rowid: the bulk writer allocates ids itself
        "LOG_ID": "INTEGER PRIMARY KEY AUTOINCREMENT",  # outbox position, never reused
        "BIGINT": "INTEGER",
        "REAL": "REAL",
        "BLOB": "BLOB",
        "VALUE_NUM": "CASE WHEN v.value GLOB '[-0-9]*' THEN CAST(v.value AS REAL) END",
        "WITHOUT_ROWID": " WITHOUT ROWID",  # a table that is its primary key's index
    },
    bulk_ids=True,
)

POSTGRES = Dialect(
    name="postgres",
    mark="%s",
    types={
        "EVENT_ID": "BIGSERIAL PRIMARY KEY",
        "LOG_ID": "BIGSERIAL PRIMARY KEY",
        "BIGINT": "BIGINT",
        "REAL": "DOUBLE PRECISION",
        "BLOB": "BYTEA",
        "VALUE_NUM": "CASE WHEN v.value ~ '^[-0-9]' THEN CAST(v.value AS DOUBLE PRECISION) END",
        "WITHOUT_ROWID": "",
    },
    for_update=" FOR UPDATE",
)
