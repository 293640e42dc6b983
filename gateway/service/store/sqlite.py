"""The SQLite backend: one file in WAL mode, one writer connection, the writers' lock file.

Durability decisions
--------------------
* ``journal_mode=WAL``: readers (the HTTP API, the sink workers) never block the writer.
* ``synchronous=FULL`` by default: every commit fsyncs the WAL before it returns. ``NORMAL`` would
  survive a ``kill -9`` of the gateway (the WAL is in the OS cache) but may lose the last commits on
  power loss, and the HTTP and AMQP ingests tell ChirpStack/RabbitMQ "stored" (200, basic.ack) right
  after the commit, after which nobody holds a copy any more. ``Store.open(path, synchronous="NORMAL")``
  is there for benchmarks and throw-away deployments.
* One transaction per event (``BEGIN IMMEDIATE`` ... ``COMMIT``) or per batch (:meth:`batch`, each
  event a ``SAVEPOINT`` in it): an event's rows land together or not at all.
* The file (and with it SQLite's ``-wal`` and ``-shm`` files, which take its mode) and the lock file
  are created mode 0600: raw events and readings are the operator's alone.
* A failed ``COMMIT`` is reported as itself (``database or disk is full``), also when SQLite has
  already rolled the transaction back.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.service.store.dialect import SQLITE
from gateway.service.store.lock import FILE_MODE, WriterLock
from gateway.service.store.migrations import SCHEMA_VERSION, migrations, statements
from gateway.service.store.values import StoreError

__all__ = ["SqliteBackend"]


class SqliteBackend:
    """A SQLite connection with the store's transactions. Thread-safe (one lock around the connection)."""

    dialect = SQLITE
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.connection = conn
        self.path = path
        self._lock = threading.RLock()
        self._closed = False
        self._batch_depth = 0
        self._writer = WriterLock(path)

    @classmethod
    def open(cls, path: str, synchronous: str = "FULL") -> SqliteBackend:
        """Open (creating and migrating as needed) the store file at ``path``."""
        sync = synchronous.upper()
        if sync not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError(f"store.synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        backend = cls(conn, path)
        try:
            conn.row_factory = sqlite3.Row
            # 8 KiB pages for a new file (no effect on an existing one): rows of ~0.4 KB (an uplink's
            # event) waste less of a page's end; ~1.5 % less disk per uplink than 4 KiB.
            conn.execute("PRAGMA page_size=8192")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={sync}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            # 32 MiB page cache (default 2 MiB): the reading indexes take random inserts by device.
            conn.execute("PRAGMA cache_size=-32768")
            backend._migrate()
        except BaseException as exc:
            backend.close()  # the connection and the lock file's descriptor
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open store {path}: {exc}") from exc
            raise
        return backend

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.connection.close()
                self._writer.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self.connection.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema version {current}, this gateway knows up to {SCHEMA_VERSION}"
            )
        steps = migrations(SQLITE)
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self.tx() as cur:
                for statement in statements(steps[version - 1]):
                    cur.execute(statement)
                cur.execute(f"PRAGMA user_version={version}")

    # -- transactions --------------------------------------------------------------------------------

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction; rolled back on any exception, which is re-raised.

        Inside :meth:`batch` it is a SAVEPOINT of the batch's transaction instead, so that one
        event's failure undoes only that event.
        """
        with self._lock:
            self._check_open()
            nested = self._batch_depth > 0
            with self._writing(not nested):
                cur = self.connection.cursor()
                cur.execute("SAVEPOINT event" if nested else "BEGIN IMMEDIATE")
                try:
                    yield cur
                except BaseException:
                    self._undo(cur, nested)
                    raise
                else:
                    if nested:
                        cur.execute("RELEASE event")
                    else:
                        self._commit(cur)
                finally:
                    cur.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit: every write inside is one transaction, committed (one fsync) on exit."""
        with self._lock:
            self._check_open()
            if self._batch_depth:
                self._batch_depth += 1
                try:
                    yield
                finally:
                    self._batch_depth -= 1
                return
            with self._writing():
                try:
                    self.connection.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise StoreError(f"cannot start a batch in {self.path}: {exc}") from exc
                self._batch_depth = 1
                cur = self.connection.cursor()
                try:
                    try:
                        yield
                    except BaseException:
                        self._batch_depth = 0
                        self._undo(cur, nested=False)
                        raise
                    self._batch_depth = 0
                    try:
                        self._commit(cur)
                    except sqlite3.Error as exc:
                        raise StoreError(f"cannot commit a batch to {self.path}: {exc}") from exc
                finally:
                    cur.close()

    def _commit(self, cur: sqlite3.Cursor) -> None:
        """COMMIT; when it fails, roll back what SQLite left open and raise the COMMIT's own error."""
        try:
            cur.execute("COMMIT")
        except sqlite3.Error:
            self._undo(cur, nested=False)
            raise

    def _undo(self, cur: sqlite3.Cursor, nested: bool) -> None:
        """Roll back the event (``nested``) or the transaction. SQLite rolls a transaction back by
        itself after some errors (disk full, I/O error): then there is nothing left to undo, and the
        error being handled, not "no transaction is active", is what the caller must see."""
        if not self.connection.in_transaction:
            return
        try:
            if nested:
                cur.execute("ROLLBACK TO event")
                cur.execute("RELEASE event")
            else:
                cur.execute("ROLLBACK")
        except sqlite3.Error:
            if nested:
                raise
            # the transaction is gone; the original error is the one to report

    @contextmanager
    def _writing(self, take: bool = True) -> Iterator[None]:
        """Hold the writers' lock file while a write transaction is open (``take=False``: nested)."""
        if not take:
            yield
            return
        with self._writer.held():
            yield

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            self._check_open()
            return self.connection.execute(sql, params).fetchall()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
