"""The PostgreSQL backend, for larger deployments and several gateway instances: same API, same tables.

``Store.open("postgresql://user@host/db?options=-csearch_path%3Dcitynode")`` opens a store on this
backend. The statements are the shared ones (:mod:`gateway.service.store.dialect` renders them for
psycopg); what differs from SQLite is here and in the dialect:

* Types: ``BIGSERIAL``/``BIGINT`` ids and frame counters, ``BYTEA`` raw bodies, ``DOUBLE PRECISION``.
  Times stay fixed-width UTC text (:func:`gateway.service.store.format_time`) so comparisons are identical.
* The reading log is an outbox read by ``id > cursor``. PostgreSQL hands out sequence values at insert
  time, so two concurrent transactions could commit ids out of order and a sink could step over the
  earlier one. Every write transaction therefore takes one transaction-scoped advisory lock first:
  writers from all gateway instances commit one at a time, and ids become visible in order.
* The device row is read ``FOR UPDATE`` so two instances never interleave one device's FCnt tracking.
* Schema migrations are recorded in ``citynode_schema`` and run under a session advisory lock, so
  instances starting together migrate once.

Durability is PostgreSQL's own (``synchronous_commit`` on, its default, is what the acks rely on).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from gateway.service.store.dialect import POSTGRES
from gateway.service.store.migrations import SCHEMA_VERSION, migrations, statements
from gateway.service.store.values import StoreError

__all__ = ["PostgresBackend"]

_WRITE_LOCK = 0x63697479  # "city": pg_advisory_xact_lock key serialising the reading log's writers
_MIGRATE_LOCK = 0x6E6F6465  # "node"


class _Row(tuple):  # type: ignore[type-arg]
    """A result row readable by position and by column name, like ``sqlite3.Row``."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    names = [c.name for c in cursor.description or ()]
    index = {name: i for i, name in enumerate(names)}
    row_type = type("Row", (_Row,), {"_index": index})

    def make(values: Sequence[Any]) -> Any:
        return row_type(bytes(v) if isinstance(v, memoryview) else v for v in values)

    return make


class PostgresBackend:
    """A psycopg 3 connection with the store's transactions. Thread-safe (one lock around the connection)."""

    dialect = POSTGRES
    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, conn: psycopg.Connection[Any], dsn: str) -> None:
        self.connection = conn
        self.path = redact(dsn)
        self._lock = threading.RLock()
        self._closed = False
        self._batch_depth = 0

    @classmethod
    def connect(cls, dsn: str) -> PostgresBackend:
        """Connect, migrate, and return the backend. Raises :class:`StoreError` naming the (redacted) DSN."""
        try:
            conn = psycopg.connect(dsn, autocommit=True, row_factory=_row_factory)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {redact(dsn)}: {str(exc).strip()}") from exc
        backend = cls(conn, dsn)
        try:
            backend._migrate()
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"cannot migrate {backend.path}: {exc}") from exc
            raise
        return backend

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.connection.close()

    @property
    def schema_version(self) -> int:
        rows = self.query("SELECT COALESCE(MAX(version), 0) FROM citynode_schema")
        return int(rows[0][0])

    def _migrate(self) -> None:
        with self._lock:
            self.connection.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
            try:
                self.connection.execute("CREATE TABLE IF NOT EXISTS citynode_schema (version INTEGER PRIMARY KEY)")
                current = self.schema_version
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"store {self.path} has schema version {current}, "
                        f"this gateway knows up to {SCHEMA_VERSION}"
                    )
                steps = migrations(POSTGRES)
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    with self.connection.transaction():
                        for statement in statements(steps[version - 1]):
                            self.connection.execute(statement)  # type: ignore[arg-type]
                        self.connection.execute("INSERT INTO citynode_schema (version) VALUES (%s)", (version,))
            finally:
                self.connection.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))

    @contextmanager
    def tx(self) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction (a savepoint inside :meth:`batch`), holding the writers' advisory lock."""
        with self._lock:
            self._check_open()
            try:
                with self.connection.transaction(), self.connection.cursor() as cur:
                    if self._batch_depth == 0:
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                    yield cur
            except psycopg.OperationalError as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit: every write inside is one transaction, committed on exit."""
        with self._lock:
            self._check_open()
            if self._batch_depth:
                self._batch_depth += 1
                try:
                    yield
                finally:
                    self._batch_depth -= 1
                return
            try:
                with self.connection.transaction():
                    self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                    self._batch_depth = 1
                    try:
                        yield
                    finally:
                        self._batch_depth = 0
            except psycopg.Error as exc:
                raise StoreError(f"cannot commit a batch to {self.path}: {exc}") from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            self._check_open()
            try:
                return self.connection.execute(sql, params).fetchall()  # type: ignore[arg-type]
            except psycopg.OperationalError as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://<unparsable dsn>"
    info.pop("password", None)
    host = info.get("host", "localhost")
    return f"postgresql://{info.get('user', '')}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"
