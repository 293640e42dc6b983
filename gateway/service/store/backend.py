"""What the store's modules need of a backend (:mod:`.sqlite`, :mod:`.postgres`)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from gateway.service.store.dialect import Dialect

__all__ = ["Backend", "Cursor"]


class Cursor(Protocol):
    """The DB-API cursor subset used in a write transaction (sqlite3 and psycopg both have it)."""

    def execute(self, sql: Any, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: Any, rows: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...

    @property
    def rowcount(self) -> int: ...


class Backend(Protocol):
    dialect: Dialect
    errors: tuple[type[Exception], ...]  # the driver's errors, translated to StoreError by the store
    path: str  # for messages (PostgreSQL: the DSN without its password)
    connection: Any

    @property
    def schema_version(self) -> int: ...
    def tx(self) -> AbstractContextManager[Any]: ...
    def batch(self) -> AbstractContextManager[None]: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
    def close(self) -> None: ...
