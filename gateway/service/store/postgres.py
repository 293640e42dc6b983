"""The store on PostgreSQL, for larger deployments and several gateway instances: same API, same tables.

``Store.open("postgresql://user@host/db?options=-csearch_path%3Dcitynode")`` returns a
:class:`PostgresStore`. It reuses every query of :class:`gateway.service.store.Store` (the SQL there is
written to run on both: ``ON CONFLICT``, ``RETURNING``, ``CASE``) and differs only where the engines do:

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

from gateway.service.store import READINGS_VIEW, SCHEMA_VERSION, Store, StoreError, UplinkRecord

__all__ = ["PostgresStore"]

_WRITE_LOCK = 0x63697479  # "city": pg_advisory_xact_lock key serialising the reading log's writers
_MIGRATE_LOCK = 0x6E6F6465  # "node"

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id          BIGSERIAL PRIMARY KEY,
        kind        TEXT NOT NULL,
        dev_eui     TEXT,
        received_at TEXT NOT NULL,
        dedup_id    TEXT,
        encoding    TEXT NOT NULL DEFAULT '',
        raw         BYTEA,
        UNIQUE (kind, dedup_id)
    );
    CREATE INDEX events_device ON events (dev_eui, received_at);
    CREATE TABLE readings (
        id               BIGSERIAL PRIMARY KEY,
        event_id         BIGINT NOT NULL REFERENCES events (id),
        dev_eui          TEXT NOT NULL,
        device_name      TEXT NOT NULL,
        message_type     TEXT NOT NULL,
        time             TEXT NOT NULL,
        field            TEXT NOT NULL,
        value            TEXT NOT NULL,
        value_num        DOUBLE PRECISION,
        unit             TEXT,
        unit_code        TEXT,
        deduplication_id TEXT NOT NULL,
        f_cnt            BIGINT NOT NULL,
        tags             TEXT NOT NULL DEFAULT '{}',
        rssi             INTEGER,
        snr              DOUBLE PRECISION,
        gateway_id       TEXT,
        spreading_factor INTEGER,
        frequency        BIGINT,
        gateway_count    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX readings_device_field_time ON readings (dev_eui, field, time);
    CREATE INDEX readings_time ON readings (time);
    CREATE TABLE devices (
        dev_eui        TEXT PRIMARY KEY,
        name           TEXT NOT NULL DEFAULT '',
        application_id TEXT NOT NULL DEFAULT '',
        tags           TEXT NOT NULL DEFAULT '{}',
        role           TEXT,
        last_fcnt      BIGINT,
        fcnt_gaps      BIGINT NOT NULL DEFAULT 0,
        resets         BIGINT NOT NULL DEFAULT 0,
        joins          BIGINT NOT NULL DEFAULT 0,
        uplinks        BIGINT NOT NULL DEFAULT 0,
        last_seen      TEXT,
        last_rssi      INTEGER,
        last_snr       DOUBLE PRECISION,
        battery        DOUBLE PRECISION,
        margin         INTEGER,
        last_event     TEXT
    );
    CREATE TABLE dead_letters (
        id          BIGSERIAL PRIMARY KEY,
        received_at TEXT NOT NULL,
        source      TEXT NOT NULL,
        reason      TEXT NOT NULL,
        raw         BYTEA,
        raw_is_text INTEGER NOT NULL DEFAULT 0,
        dev_eui     TEXT
    );
    CREATE TABLE sink_cursors (
        sink       TEXT PRIMARY KEY,
        reading_id BIGINT NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    );
    """,
    # 2: the reading log's time index goes. Every query by time also names the device (the API's
    # device + field + since, the status page) and uses readings_device_field_time; a time-only
    # query (an export with --since) pages through the log by id. Keeping it cost about a fifth of
    # the store's CPU per uplink (bench/RESULTS.md, gateway throughput).
    """
    DROP INDEX readings_time;
    """,
    # 3: the narrow reading log (see gateway.service.store's migration 3); ``readings`` becomes a view.
    f"""
    ALTER TABLE events ADD COLUMN device_name TEXT;
    ALTER TABLE events ADD COLUMN message_type TEXT;
    ALTER TABLE events ADD COLUMN f_cnt BIGINT;
    ALTER TABLE events ADD COLUMN tags TEXT;
    ALTER TABLE events ADD COLUMN rssi INTEGER;
    ALTER TABLE events ADD COLUMN snr DOUBLE PRECISION;
    ALTER TABLE events ADD COLUMN gateway_id TEXT;
    ALTER TABLE events ADD COLUMN spreading_factor INTEGER;
    ALTER TABLE events ADD COLUMN frequency BIGINT;
    ALTER TABLE events ADD COLUMN gateway_count INTEGER;
    CREATE TABLE reading_log (
        id         BIGSERIAL PRIMARY KEY,
        event_id   BIGINT NOT NULL REFERENCES events (id),
        time       TEXT NOT NULL,
        field      TEXT NOT NULL,
        value      TEXT NOT NULL,
        value_num  DOUBLE PRECISION,
        unit       TEXT,
        unit_code  TEXT
    );
    UPDATE events SET (device_name, message_type, f_cnt, tags, rssi, snr, gateway_id, spreading_factor,
                       frequency, gateway_count) =
        (r.device_name, r.message_type, r.f_cnt, r.tags, r.rssi, r.snr, r.gateway_id, r.spreading_factor,
         r.frequency, r.gateway_count)
        FROM (SELECT DISTINCT ON (event_id) * FROM readings ORDER BY event_id, id) AS r
        WHERE events.id = r.event_id;
    INSERT INTO reading_log (id, event_id, time, field, value, value_num, unit, unit_code)
        SELECT id, event_id, time, field, value, value_num, unit, unit_code FROM readings ORDER BY id;
    SELECT setval(pg_get_serial_sequence('reading_log', 'id'), last_value, is_called) FROM readings_id_seq;
    DROP TABLE readings;
    CREATE INDEX reading_log_event ON reading_log (event_id);
    DROP INDEX events_device;
    CREATE INDEX events_device_type ON events (dev_eui, message_type, received_at);
    {READINGS_VIEW};
    """,
)
assert len(_MIGRATIONS) == SCHEMA_VERSION, "PostgreSQL and SQLite schemas move together"


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


class _Cursor:
    """Runs the store's ``?``-style SQL on psycopg (``%s``); the SQL holds no literal ``?`` or ``%``."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        self._cur.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> _Cursor:
        if rows:
            self._cur.executemany(sql.replace("?", "%s"), rows)  # type: ignore[arg-type]
        return self

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def close(self) -> None:
        self._cur.close()


class PostgresStore(Store):
    """:class:`gateway.service.store.Store` on PostgreSQL (psycopg 3)."""

    _DB_ERRORS = (psycopg.Error,)
    _FOR_UPDATE = " FOR UPDATE"

    def __init__(self, conn: psycopg.Connection[Any], dsn: str) -> None:
        self._pg = conn
        self._lock = threading.RLock()
        self.path = _redact(dsn)
        self._closed = False
        self._batch_depth = 0

    @classmethod
    def connect(cls, dsn: str) -> PostgresStore:
        """Connect, migrate, and return the store. Raises :class:`StoreError` naming the (redacted) DSN."""
        try:
            conn = psycopg.connect(dsn, autocommit=True, row_factory=_row_factory)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {_redact(dsn)}: {str(exc).strip()}") from exc
        store = cls(conn, dsn)
        try:
            store._migrate()
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot migrate {store.path}: {exc}") from exc
        return store

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._pg.close()

    @property
    def schema_version(self) -> int:
        rows = self._query("SELECT COALESCE(MAX(version), 0) FROM citynode_schema")
        return int(rows[0][0])

    def _migrate(self) -> None:
        with self._lock:
            self._pg.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
            try:
                self._pg.execute("CREATE TABLE IF NOT EXISTS citynode_schema (version INTEGER PRIMARY KEY)")
                current = self.schema_version
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"store {self.path} has schema version {current}, "
                        f"this gateway knows up to {SCHEMA_VERSION}"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    with self._pg.transaction():
                        for statement in _MIGRATIONS[version - 1].split(";"):
                            if statement.strip():
                                self._pg.execute(statement)  # type: ignore[arg-type]
                        self._pg.execute("INSERT INTO citynode_schema (version) VALUES (%s)", (version,))
            finally:
                self._pg.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """One transaction (a savepoint inside :meth:`batch`), holding the writers' advisory lock."""
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            try:
                with self._pg.transaction(), self._pg.cursor() as cur:
                    if self._batch_depth == 0:
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                    yield _Cursor(cur)
            except psycopg.OperationalError as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc

    @contextmanager
    def batch(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            if self._batch_depth:
                self._batch_depth += 1
                try:
                    yield
                finally:
                    self._batch_depth -= 1
                return
            try:
                with self._pg.transaction():
                    self._pg.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                    self._batch_depth = 1
                    try:
                        yield
                    finally:
                        self._batch_depth = 0
            except psycopg.Error as exc:
                raise StoreError(f"cannot commit a batch to {self.path}: {exc}") from exc

    def record_uplinks(self, records: Sequence[UplinkRecord]) -> list[bool]:
        """One record at a time: ids come from sequences here, which the SQLite bulk path bypasses
        (it allocates event ids under SQLite's single write lock)."""
        return self._record_each(records)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            try:
                return self._pg.execute(sql.replace("?", "%s"), params).fetchall()  # type: ignore[arg-type]
            except psycopg.OperationalError as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://<unparsable dsn>"
    info.pop("password", None)
    host = info.get("host", "localhost")
    return f"postgresql://{info.get('user', '')}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"
