"""The gateway's embedded store: SQLite in WAL mode, one writer connection, versioned schema.

Everything the gateway keeps lives here: the raw ChirpStack events (de-duplicated), the normalised
readings (an append-only log whose ``id`` is the outbox position of every sink), the device registry
with frame-counter health, the dead letters and one delivery cursor per sink.

Durability decisions
--------------------
* ``journal_mode=WAL``: readers (the HTTP API, the sink workers) never block the writer.
* ``synchronous=FULL`` by default: every commit fsyncs the WAL before it returns. ``NORMAL`` would
  survive a ``kill -9`` of the gateway (the WAL is in the OS cache) but may lose the last commits on
  power loss, and the HTTP and AMQP ingests tell ChirpStack/RabbitMQ "stored" (200, basic.ack) right
  after the commit, after which nobody holds a copy any more. ``Store.open(path, synchronous="NORMAL")``
  is there for benchmarks and throw-away deployments.
* One transaction per event (``BEGIN IMMEDIATE`` ... ``COMMIT``): the event row, its readings, the
  device update and any dead letter land together or not at all, so a crash loses or duplicates
  nothing; a redelivered event is recognised by its de-duplication id (``UNIQUE(kind, dedup_id)``).

The API is synchronous and thread-safe (one lock around the connection); each call is one short
transaction, so asyncio code may call it directly or through :func:`asyncio.to_thread`.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from gateway.contract.records import RadioMeta, Reading, Uplink
from gateway.errors import CitynodeError, ConfigError

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetter",
    "Device",
    "DeviceUpdate",
    "FcntStep",
    "PruneResult",
    "Store",
    "StoreError",
    "StoredReading",
    "UplinkRecord",
    "fcnt_step",
    "format_time",
    "parse_time",
]

FCNT_MODULUS = 1 << 32  # LoRaWAN 1.0.4 / 1.1: FCntUp is a 32-bit counter (16 bits on air)
_WRAP_WINDOW = 1 << 16  # a drop from above 2**32 - window to below window is a wrap, not a reset
_LATE_WINDOW = 64  # a drop by at most this many frames (to above this) is a late uplink, not a reset


class StoreError(CitynodeError):
    """The store cannot be opened or written (disk full, newer schema, corrupt file)."""


# --------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class DeadLetter:
    """Something the gateway received but could not turn into readings, with the reason why."""

    id: int
    received_at: datetime
    source: str  # e.g. "mqtt", "http", "amqp", "decode", "chirpstack-log"
    reason: str
    raw: bytes | str  # exactly what was received (str when it arrived as text)
    dev_eui: str | None = None


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`Store.prune` deleted (or, on a dry run, would delete)."""

    readings: int
    events: int
    dead_letters: int
    kept_undelivered: int  # readings older than the cutoff kept because a sink has not delivered them


@dataclass(frozen=True)
class Device:
    """A device as the gateway knows it, with link and frame-counter health."""

    dev_eui: str
    name: str = ""
    application_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    role: str | None = None  # the message type of its last decoded uplink, e.g. "air_quality"
    last_fcnt: int | None = None
    fcnt_gaps: int = 0  # uplinks lost: FCnt values never seen
    resets: int = 0  # FCnt went backwards (reboot without persisted counters, or rejoin)
    joins: int = 0
    uplinks: int = 0
    last_seen: datetime | None = None
    last_rssi: int | None = None  # dBm, best gateway
    last_snr: float | None = None  # dB, best gateway
    battery: float | None = None  # V, from the last reading carrying "battery"
    margin: int | None = None  # dB, from the last ChirpStack status event
    last_event: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "dev_eui": self.dev_eui,
            "name": self.name,
            "application_id": self.application_id,
            "tags": dict(self.tags),
            "role": self.role,
            "last_fcnt": self.last_fcnt,
            "fcnt_gaps": self.fcnt_gaps,
            "resets": self.resets,
            "joins": self.joins,
            "uplinks": self.uplinks,
            "last_seen": format_time(self.last_seen) if self.last_seen else None,
            "last_rssi": self.last_rssi,
            "last_snr": self.last_snr,
            "battery": self.battery,
            "margin": self.margin,
            "last_event": self.last_event,
        }


@dataclass(frozen=True)
class DeviceUpdate:
    """What a non-uplink event (join, status, ack, txack, log) changes on a device row."""

    dev_eui: str
    name: str = ""
    application_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    joined: bool = False  # a join resets the frame counter: the next uplink starts at 0
    battery_level: float | None = None  # %, ChirpStack status event (not volts: kept apart)
    margin: int | None = None  # dB


@dataclass(frozen=True)
class StoredReading:
    """A reading with its position in the reading log and the radio metadata of its uplink."""

    id: int
    reading: Reading
    radio: RadioMeta

    def to_json(self) -> dict[str, Any]:
        r = self.reading
        return {
            "id": self.id,
            "dev_eui": r.dev_eui,
            "device_name": r.device_name,
            "message_type": r.message_type,
            "time": format_time(r.time),
            "field": r.field,
            "value": r.value,
            "unit": r.unit,
            "unit_code": r.unit_code,
            "deduplication_id": r.deduplication_id,
            "f_cnt": r.f_cnt,
            "tags": dict(r.tags),
            "rssi": self.radio.rssi,
            "snr": self.radio.snr,
            "gateway_id": self.radio.gateway_id,
            "spreading_factor": self.radio.spreading_factor,
            "frequency": self.radio.frequency,
            "gateway_count": self.radio.gateway_count,
        }


@dataclass(frozen=True)
class FcntStep:
    """How one uplink's FCnt relates to the previous one of the same device."""

    lost: int = 0  # FCnt values skipped (uplinks that never arrived); -1: a late one arrived after all
    reset: bool = False  # the counter went backwards without a join in between
    repeated: bool = False  # same FCnt again (retransmission of a confirmed uplink)
    late: bool = False  # an older FCnt stored after a newer one (parallel ingests): fills a gap


def fcnt_step(last: int | None, new: int) -> FcntStep:
    """Classify ``new`` against the device's ``last`` FCnt.

    * no previous FCnt (first sight, or just joined): frames ``0 .. new-1`` were lost when ``new > 0``
      after a join; on first sight ever we cannot know, so nothing is counted (``last is None``).
    * ``new == last + 1``: in order. ``new > last + 1``: ``new - last - 1`` uplinks lost.
    * ``new == last``: a repeat (LoRaWAN 1.0.4 4.3.1.1 retransmits confirmed uplinks with the same FCnt).
    * ``new < last``: a 32-bit wrap when ``last`` is near 2**32 and ``new`` near 0 (counted as
      gap across the wrap); else, when ``new`` is at most ``_LATE_WINDOW`` behind (and above it: a
      restarted node counts from 0, so small counters read as a restart), a late
      uplink: ChirpStack forwards a device's uplinks in FCnt order, but ingest processes or instances
      splitting a shared subscription store them in parallel, so an older one may be stored after a
      newer one; it fills a gap counted before (``lost=-1``; the caller never lets the count go below
      0) and leaves the last FCnt where it is. Otherwise a reset: the node rebooted without
      persisting its counter (ABP) or rejoined without us seeing the join; frames ``0 .. new-1`` of the
      new session were lost.
    """
    if last is None:
        return FcntStep()
    if new == last:
        return FcntStep(repeated=True)
    if new > last:
        return FcntStep(lost=new - last - 1)
    if last >= FCNT_MODULUS - _WRAP_WINDOW and new < _WRAP_WINDOW:
        return FcntStep(lost=new + FCNT_MODULUS - last - 1)
    if new > _LATE_WINDOW and last - new <= _LATE_WINDOW:
        return FcntStep(lost=-1, late=True)
    return FcntStep(lost=new, reset=True)


def format_time(value: datetime) -> str:
    """UTC, fixed width, microseconds, ``Z``: sorts lexicographically in SQL."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat with timespec is several times faster than strftime; years < 1000 never occur.
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time`; also accepts any ISO 8601 time (naive = UTC)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# --------------------------------------------------------------------------------------------- schema

# The reading log as the sinks, the API and exports read it: each reading with its uplink's columns
# (migration 3 on both backends; gateway/service/store/postgres.py uses it too).
READINGS_VIEW = """
    CREATE VIEW readings AS
        SELECT v.id AS id, v.event_id AS event_id, e.dev_eui AS dev_eui, e.device_name AS device_name,
               e.message_type AS message_type, v.time AS time, v.field AS field, v.value AS value,
               v.value_num AS value_num, v.unit AS unit, v.unit_code AS unit_code,
               e.dedup_id AS deduplication_id, e.f_cnt AS f_cnt, e.tags AS tags, e.rssi AS rssi,
               e.snr AS snr, e.gateway_id AS gateway_id, e.spreading_factor AS spreading_factor,
               e.frequency AS frequency, e.gateway_count AS gateway_count, e.received_at AS received_at
        FROM reading_log AS v JOIN events AS e ON e.id = v.event_id
"""

# Migration N brings the file from user_version N-1 to N. Never edit a released step: append one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,               -- up, join, status, ack, txack, log
        dev_eui     TEXT,
        received_at TEXT NOT NULL,               -- format_time()
        dedup_id    TEXT,                        -- ChirpStack deduplicationId (downlinkId for txack)
        encoding    TEXT NOT NULL DEFAULT '',    -- json | protobuf
        raw         BLOB,
        UNIQUE (kind, dedup_id)
    );
    CREATE INDEX events_device ON events (dev_eui, received_at);

    CREATE TABLE readings (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- outbox position, never reused
        event_id         INTEGER NOT NULL REFERENCES events (id),
        dev_eui          TEXT NOT NULL,
        device_name      TEXT NOT NULL,
        message_type     TEXT NOT NULL,
        time             TEXT NOT NULL,
        field            TEXT NOT NULL,
        value            TEXT NOT NULL,                      -- JSON: number, bool or string
        value_num        REAL,                               -- numeric copy for SQL filters
        unit             TEXT,
        unit_code        TEXT,
        deduplication_id TEXT NOT NULL,
        f_cnt            INTEGER NOT NULL,
        tags             TEXT NOT NULL DEFAULT '{}',
        rssi             INTEGER,
        snr              REAL,
        gateway_id       TEXT,
        spreading_factor INTEGER,
        frequency        INTEGER,
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
        last_fcnt      INTEGER,
        fcnt_gaps      INTEGER NOT NULL DEFAULT 0,
        resets         INTEGER NOT NULL DEFAULT 0,
        joins          INTEGER NOT NULL DEFAULT 0,
        uplinks        INTEGER NOT NULL DEFAULT 0,
        last_seen      TEXT,
        last_rssi      INTEGER,
        last_snr       REAL,
        battery        REAL,
        margin         INTEGER,
        last_event     TEXT
    );

    CREATE TABLE dead_letters (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at TEXT NOT NULL,
        source      TEXT NOT NULL,
        reason      TEXT NOT NULL,
        raw         BLOB,
        raw_is_text INTEGER NOT NULL DEFAULT 0,
        dev_eui     TEXT
    );

    CREATE TABLE sink_cursors (
        sink       TEXT PRIMARY KEY,
        reading_id INTEGER NOT NULL DEFAULT 0,
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
    # 3: narrow reading log. What every reading of an uplink repeated (device name, message type,
    # deduplication id, FCnt, tags, radio metadata) moves to the uplink's event row; the log keeps
    # what differs per reading. ``readings`` becomes a view with the old columns, so every query and
    # the ids (the sinks' outbox positions) stay as they were. About a third less disk per uplink and
    # half the values to bind per reading.
    # Indexes: the log's (device, field, time) index took 6.4 inserts at random places per uplink,
    # nearly half the cost of storing one; it goes. Queries by device now start from the events'
    # (device, message type, receive time) index (one entry per uplink, replacing the unused
    # (device, time) one) and reach the readings through the log's event index, which only ever
    # grows at its end. (A reading's time is its uplink's receive time or earlier.)
    f"""
    ALTER TABLE events ADD COLUMN device_name TEXT;
    ALTER TABLE events ADD COLUMN message_type TEXT;
    ALTER TABLE events ADD COLUMN f_cnt INTEGER;
    ALTER TABLE events ADD COLUMN tags TEXT;
    ALTER TABLE events ADD COLUMN rssi INTEGER;
    ALTER TABLE events ADD COLUMN snr REAL;
    ALTER TABLE events ADD COLUMN gateway_id TEXT;
    ALTER TABLE events ADD COLUMN spreading_factor INTEGER;
    ALTER TABLE events ADD COLUMN frequency INTEGER;
    ALTER TABLE events ADD COLUMN gateway_count INTEGER;
    CREATE TABLE reading_log (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,   -- outbox position, never reused
        event_id   INTEGER NOT NULL REFERENCES events (id),
        time       TEXT NOT NULL,
        field      TEXT NOT NULL,
        value      TEXT NOT NULL,                       -- JSON: number, bool or string
        value_num  REAL,                                -- numeric copy for SQL filters
        unit       TEXT,
        unit_code  TEXT
    );
    -- for the copy below only (one lookup per event), dropped with the old table
    CREATE INDEX readings_by_event ON readings (event_id, id);
    UPDATE events SET (device_name, message_type, f_cnt, tags, rssi, snr, gateway_id, spreading_factor,
                       frequency, gateway_count) =
        (SELECT r.device_name, r.message_type, r.f_cnt, r.tags, r.rssi, r.snr, r.gateway_id,
                r.spreading_factor, r.frequency, r.gateway_count
         FROM readings AS r WHERE r.event_id = events.id ORDER BY r.id LIMIT 1)
        WHERE id IN (SELECT event_id FROM readings);
    INSERT INTO reading_log (id, event_id, time, field, value, value_num, unit, unit_code)
        SELECT id, event_id, time, field, value, value_num, unit, unit_code FROM readings ORDER BY id;
    DELETE FROM sqlite_sequence WHERE name = 'reading_log';
    INSERT INTO sqlite_sequence (name, seq) SELECT 'reading_log', seq FROM sqlite_sequence WHERE name = 'readings';
    DROP TABLE readings;
    CREATE INDEX reading_log_event ON reading_log (event_id);
    DROP INDEX events_device;
    CREATE INDEX events_device_type ON events (dev_eui, message_type, received_at);
    {READINGS_VIEW};
    """,
)

SCHEMA_VERSION = len(_MIGRATIONS)

_READING_COLUMNS = (
    "id, dev_eui, device_name, message_type, time, field, value, unit, unit_code, deduplication_id, "
    "f_cnt, tags, rssi, snr, gateway_id, spreading_factor, frequency, gateway_count"
)


_READING_INSERT = "INSERT INTO reading_log (event_id, time, field, value, value_num, unit, unit_code) VALUES "
_READING_ROW = "(?, ?, ?, ?, ?, ?, ?)"
_UPLINK_EVENT_COLUMNS = (
    "kind, dev_eui, received_at, dedup_id, encoding, raw, device_name, message_type, f_cnt, tags, rssi, snr, "
    "gateway_id, spreading_factor, frequency, gateway_count"
)
_EVENT_INSERT = f"INSERT INTO events (id, {_UPLINK_EVENT_COLUMNS}) VALUES "
_EVENT_ROW = "(?, 'up', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# One row per device and batch: the counters add up, the rest is the newest uplink's.
_DEVICE_UPSERT_HEAD = (
    "INSERT INTO devices (dev_eui, name, application_id, tags, role, last_fcnt, fcnt_gaps, resets, "
    "uplinks, last_seen, last_rssi, last_snr, battery, last_event) VALUES "
)
_DEVICE_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'up')"
_DEVICE_UPSERT_TAIL = (
    " ON CONFLICT (dev_eui) DO UPDATE SET name = excluded.name, application_id = excluded.application_id, "
    "tags = excluded.tags, role = excluded.role, last_fcnt = excluded.last_fcnt, "
    "fcnt_gaps = devices.fcnt_gaps + excluded.fcnt_gaps, resets = devices.resets + excluded.resets, "
    "uplinks = devices.uplinks + excluded.uplinks, last_seen = excluded.last_seen, "
    "last_rssi = excluded.last_rssi, last_snr = excluded.last_snr, battery = excluded.battery, last_event = 'up'"
)


@dataclass(frozen=True, slots=True)
class UplinkRecord:
    """One uplink for :meth:`Store.record_uplinks`: the arguments of :meth:`Store.record_uplink`."""

    uplink: Uplink
    readings: Sequence[Reading]
    raw: bytes | None = None
    encoding: str = ""
    role: str | None = None
    dead_letter_reason: str | None = None
    dead_letter_source: str = "decode"


@dataclass(slots=True)
class _DeviceTally:
    lost: int = 0
    resets: int = 0
    uplinks: int = 0
    row: tuple[Any, ...] = ()


_PRUNE_WINDOW = 20_000  # ids per prune transaction: short enough not to stall a running gateway


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_MAX_ROWS = 512  # rows per multi-row INSERT: 512 x 19 values stays under SQLite's 32766 variables


def _pow2_chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """Slices of ``_MAX_ROWS`` rows, then of the powers of two that make up the rest: a handful of
    distinct statement sizes, so the connection's statement cache keeps them prepared."""
    start, n = 0, len(items)
    while n - start >= _MAX_ROWS:
        yield items[start : start + _MAX_ROWS]
        start += _MAX_ROWS
    size = _MAX_ROWS // 2
    while start < n:
        if n - start >= size:
            yield items[start : start + size]
            start += size
        size //= 2


@cache
def _multi_row(head: str, row: str, n: int) -> str:
    return head + ", ".join([row] * n)


def _now() -> datetime:
    return datetime.now(UTC)


_WRITER_WAIT_S = 30.0  # as PRAGMA busy_timeout


def _lock_file(fd: int, path: str) -> None:
    """Take the writers' lock of the store at ``path``: at once when free, else within a millisecond of
    its release (polled, so that the wait can end), at most ``_WRITER_WAIT_S``."""
    deadline = time.monotonic() + _WRITER_WAIT_S
    pause = 0.0001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise StoreError(
                    f"store {path}: another writer held {path}-writer.lock for {_WRITER_WAIT_S:.0f} s"
                ) from None
            time.sleep(pause)  # releases the GIL
            pause = min(pause * 2, 0.001)


def _open_writer_lock(path: str) -> int | None:
    """The file descriptor of ``<path>-writer.lock`` (see :meth:`Store._writing`), or None when the
    store is in memory or the lock file cannot be made (SQLite's own locking then serialises)."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    try:
        return os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return None


def _value_json(value: Any) -> str:
    """JSON text of a reading value; the common scalar types without the json module's overhead."""
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return repr(value)  # what json.dumps writes for a finite float
    return json.dumps(value)


def _value_num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)



def _reading_rows(
    event_id: int, readings: Sequence[Reading], times: dict[datetime, str] | None = None
) -> list[tuple[Any, ...]]:
    """The ``reading_log`` rows (``_READING_INSERT`` order) of one uplink's readings.

    What the readings share with their uplink (device name, message type, deduplication id, FCnt,
    tags, radio metadata) is stored once, in the uplink's event row (:func:`_uplink_event_values`).
    ``times`` caches formatted times (readings share a few: their uplink's, a batch's offsets).
    """
    if times is None:
        times = {}
    rows = []
    for x in readings:
        t = times.get(x.time)
        if t is None:
            t = times[x.time] = format_time(x.time)
        value = x.value
        kind = type(value)
        if kind is float and math.isfinite(value):  # the common case, inlined
            value_json, value_num = repr(value), value
        elif kind is int:
            value_json, value_num = str(value), float(value)
        else:
            value_json, value_num = _value_json(value), _value_num(value)
        rows.append((event_id, t, x.field, value_json, value_num, x.unit, x.unit_code))
    return rows


def _uplink_event_values(
    uplink: Uplink, received: str, encoding: str, raw: bytes | None, message_type: str | None, tags_json: str
) -> tuple[Any, ...]:
    """An uplink's ``events`` row after ``kind`` (``_UPLINK_EVENT_COLUMNS`` order)."""
    r = uplink.radio
    return (
        uplink.dev_eui,
        received,
        uplink.deduplication_id,
        encoding,
        raw,
        uplink.device_name,
        message_type,
        uplink.f_cnt,
        tags_json,
        r.rssi,
        r.snr,
        r.gateway_id,
        r.spreading_factor,
        r.frequency,
        r.gateway_count,
    )


def _row_to_stored(row: sqlite3.Row) -> StoredReading:
    reading = Reading(
        dev_eui=row["dev_eui"],
        device_name=row["device_name"],
        message_type=row["message_type"],
        time=parse_time(row["time"]),
        field=row["field"],
        value=json.loads(row["value"]),
        unit=row["unit"],
        unit_code=row["unit_code"],
        deduplication_id=row["deduplication_id"],
        f_cnt=row["f_cnt"],
        tags=json.loads(row["tags"]),
    )
    radio = RadioMeta(
        rssi=row["rssi"],
        snr=row["snr"],
        gateway_id=row["gateway_id"],
        spreading_factor=row["spreading_factor"],
        frequency=row["frequency"],
        gateway_count=row["gateway_count"],
    )
    return StoredReading(id=row["id"], reading=reading, radio=radio)


def _row_to_device(row: sqlite3.Row) -> Device:
    return Device(
        dev_eui=row["dev_eui"],
        name=row["name"],
        application_id=row["application_id"],
        tags=json.loads(row["tags"]),
        role=row["role"],
        last_fcnt=row["last_fcnt"],
        fcnt_gaps=row["fcnt_gaps"],
        resets=row["resets"],
        joins=row["joins"],
        uplinks=row["uplinks"],
        last_seen=parse_time(row["last_seen"]) if row["last_seen"] else None,
        last_rssi=row["last_rssi"],
        last_snr=row["last_snr"],
        battery=row["battery"],
        margin=row["margin"],
        last_event=row["last_event"],
    )


# ---------------------------------------------------------------------------------------------- store


class Store:
    """The SQLite store. Open with :meth:`Store.open`; close with :meth:`close` (or ``with``).

    ``Store.open("postgresql://...")`` returns the PostgreSQL backend
    (:class:`gateway.service.store.postgres.PostgresStore`), which has the same API.
    """

    _DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)
    _FOR_UPDATE = ""  # row lock on the device read in record_uplink (PostgreSQL: " FOR UPDATE")

    def __init__(self, conn: sqlite3.Connection, path: str, writer_lock: int | None = None) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self._closed = False
        self._batch_depth = 0
        self._writer_lock = writer_lock  # fd of <path>-writer.lock (see _writing)

    # -- lifetime ------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, synchronous: str = "FULL") -> Store:
        """Open (creating and migrating as needed) the store at ``path``.

        Raises :class:`StoreError` when the file cannot be opened or was written by a newer gateway.
        """
        if str(path).startswith(("postgresql://", "postgres://")):
            from gateway.service.store.postgres import PostgresStore

            return PostgresStore.connect(str(path))
        sync = synchronous.upper()
        if sync not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError(f"store.synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        path = str(path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, one per event.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={sync}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            # 32 MiB page cache (default 2 MiB): the reading indexes take random inserts by device.
            conn.execute("PRAGMA cache_size=-32768")
            store = cls(conn, path, _open_writer_lock(path))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        try:
            store._migrate()
        except BaseException as exc:
            store.close()  # the connection and the lock file's descriptor
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open store {path}: {exc}") from exc
            raise
        return store

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
                if self._writer_lock is not None:
                    os.close(self._writer_lock)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema version {current}, this gateway knows up to {SCHEMA_VERSION}"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self._tx() as cur:
                for statement in _MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        cur.execute(statement)
                cur.execute(f"PRAGMA user_version={version}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction; rolled back on any exception, which is re-raised.

        Inside :meth:`batch` it is a SAVEPOINT of the batch's transaction instead, so that one
        event's failure undoes only that event.
        """
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            nested = self._batch_depth > 0
            with self._writing(not nested):
                cur = self._conn.cursor()
                cur.execute("SAVEPOINT event" if nested else "BEGIN IMMEDIATE")
                try:
                    yield cur
                except BaseException:
                    if nested:
                        cur.execute("ROLLBACK TO event")
                        cur.execute("RELEASE event")
                    else:
                        cur.execute("ROLLBACK")
                    raise
                else:
                    cur.execute("RELEASE event" if nested else "COMMIT")
                finally:
                    cur.close()

    @contextmanager
    def _writing(self, take: bool = True) -> Iterator[None]:
        """Hold the writers' lock file while a write transaction is open (``take=False``: nested).

        Several processes may write one SQLite file (gateway instances splitting a subscription,
        ``gateway prune`` beside a running gateway). SQLite itself lets a writer that finds the file
        locked sleep and retry (1, 2, 5, 10 ... 100 ms), so two busy gateways lose much of their
        time asleep. A blocking ``flock`` on ``<path>-writer.lock`` hands the turn over the moment
        the other commits. SQLite's own locking still guards the file against any other writer.

        The wait is bounded like SQLite's own (``_WRITER_WAIT_S``, its busy timeout): a writer stuck
        with the lock makes this one fail with :class:`StoreError` (not acknowledged, retried), not hang.
        """
        if not take or self._writer_lock is None:
            yield
            return
        _lock_file(self._writer_lock, self.path)
        try:
            yield
        finally:
            fcntl.flock(self._writer_lock, fcntl.LOCK_UN)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit: every write inside is one transaction, committed (one fsync) on exit.

        Used by ingests that acknowledge several events at once (MQTT drains what the broker has
        already sent): the acknowledgements follow the single commit, so the crash guarantees are
        those of one event per transaction. Holds the store's lock for the whole batch.
        """
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
            with self._writing():
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise StoreError(f"cannot start a batch in {self.path}: {exc}") from exc
                self._batch_depth = 1
                try:
                    yield
                except BaseException:
                    self._batch_depth = 0
                    self._conn.execute("ROLLBACK")
                    raise
                self._batch_depth = 0
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._conn.execute("ROLLBACK")
                    raise StoreError(f"cannot commit a batch to {self.path}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            return self._conn.execute(sql, params).fetchall()

    # -- writes --------------------------------------------------------------------------------------

    def record_uplink(
        self,
        uplink: Uplink,
        readings: Sequence[Reading],
        *,
        raw: bytes | None = None,
        encoding: str = "",
        role: str | None = None,
        dead_letter_reason: str | None = None,
        dead_letter_source: str = "decode",
    ) -> bool:
        """Store one ``up`` event with its readings, update the device, all in one transaction.

        Returns ``False`` (and changes nothing) when an event with the same de-duplication id was
        stored before: this is what makes redelivery (MQTT QoS 1, AMQP requeue, HTTP retry) exactly-once.
        ``dead_letter_reason`` stores a dead letter (the raw payload, hex in the reason's context) in the
        same transaction, for uplinks whose payload could not be decoded.
        """
        received = format_time(uplink.received_at)
        try:
            with self._tx() as cur:
                tags_json = json.dumps(uplink.tags, sort_keys=True)
                message_type = readings[0].message_type if readings else role
                row = cur.execute(
                    f"INSERT INTO events ({_UPLINK_EVENT_COLUMNS}) "
                    "VALUES ('up', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                    _uplink_event_values(uplink, received, encoding, raw, message_type, tags_json),
                ).fetchone()
                if row is None:
                    return False
                event_id = row[0]
                self._update_device_for_uplink(cur, uplink, readings, role, received, tags_json)
                cur.executemany(_READING_INSERT + _READING_ROW, _reading_rows(event_id, readings))
                if dead_letter_reason is not None:
                    self._insert_dead_letter(
                        cur, dead_letter_source, dead_letter_reason, uplink.data, uplink.dev_eui, received
                    )
        except self._DB_ERRORS as exc:
            raise StoreError(
                f"cannot store uplink {uplink.deduplication_id} of {uplink.dev_eui}: {exc}"
            ) from exc
        return True

    def record_uplinks(self, records: Sequence[UplinkRecord]) -> list[bool]:
        """Store several ``up`` events at once; ``result[i]`` is what :meth:`record_uplink` would return.

        The same outcome as calling :meth:`record_uplink` for each record in order (duplicates are
        recognised, also within ``records``; a device's frame-counter tracking sees its uplinks in
        order), with a handful of statements for the lot instead of about ten per uplink: the
        duplicates are looked up with one query, event ids are allocated under the write lock, and
        events, readings and device rows go in as multi-row inserts. That is what lets the MQTT
        ingest commit a batch while the next one is parsed: SQLite releases the GIL for each
        statement, and a few long statements let the two threads overlap where thousands of short
        ones would wait for the GIL each time.

        All or nothing: if the bulk insert fails, it is undone and each record is stored on its own
        (one transaction or savepoint each), so one bad record cannot take the others with it.
        """
        if not records:
            return []
        try:
            with self._tx() as cur:
                return self._record_uplinks_bulk(cur, records)
        except self._DB_ERRORS:
            pass  # fall back to one record at a time; a real failure raises StoreError there
        return self._record_each(records)

    def _record_each(self, records: Sequence[UplinkRecord]) -> list[bool]:
        return [
            self.record_uplink(
                r.uplink,
                r.readings,
                raw=r.raw,
                encoding=r.encoding,
                role=r.role,
                dead_letter_reason=r.dead_letter_reason,
                dead_letter_source=r.dead_letter_source,
            )
            for r in records
        ]

    def _record_uplinks_bulk(self, cur: sqlite3.Cursor, records: Sequence[UplinkRecord]) -> list[bool]:
        dedup_ids = list({r.uplink.deduplication_id for r in records})
        seen: set[str] = set()
        for chunk in _chunks(dedup_ids, 500):
            marks = ", ".join("?" * len(chunk))
            seen.update(
                row[0]
                for row in cur.execute(
                    f"SELECT dedup_id FROM events WHERE kind = 'up' AND dedup_id IN ({marks})", chunk
                )
            )
        dev_euis = list({r.uplink.dev_eui for r in records})
        devices: dict[str, list[Any]] = {}  # dev_eui -> [last_fcnt, battery, role, fcnt_gaps] as stored
        for chunk in _chunks(dev_euis, 500):
            marks = ", ".join("?" * len(chunk))
            for row in cur.execute(
                f"SELECT dev_eui, last_fcnt, battery, role, fcnt_gaps FROM devices WHERE dev_eui IN ({marks})",
                chunk,
            ):
                devices[row[0]] = [row[1], row[2], row[3], row[4]]
        next_id = int(cur.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]) + 1
        stored: list[bool] = []
        events: list[tuple[Any, ...]] = []
        readings: list[tuple[Any, ...]] = []
        dead: list[tuple[Any, ...]] = []
        updates: dict[str, _DeviceTally] = {}
        times: dict[datetime, str] = {}  # formatted once per batch: an uplink's readings share its time
        tags_json_of: dict[tuple[tuple[str, str], ...], str] = {}  # a device's tags rarely change
        for r in records:
            up = r.uplink
            if up.deduplication_id in seen:
                stored.append(False)
                continue
            seen.add(up.deduplication_id)
            stored.append(True)
            event_id = next_id
            next_id += 1
            received = times.get(up.received_at)
            if received is None:
                received = times[up.received_at] = format_time(up.received_at)
            tags_key = tuple(up.tags.items())
            tags_json = tags_json_of.get(tags_key)
            if tags_json is None:
                tags_json = tags_json_of[tags_key] = json.dumps(up.tags, sort_keys=True)
            message_type = r.readings[0].message_type if r.readings else r.role
            events.append(
                (event_id, *_uplink_event_values(up, received, r.encoding, r.raw, message_type, tags_json))
            )
            readings.extend(_reading_rows(event_id, r.readings, times))
            # The device row, as record_uplink's _update_device_for_uplink would leave it.
            state = devices.get(up.dev_eui)
            tally = updates.get(up.dev_eui)
            if tally is None:
                tally = updates[up.dev_eui] = _DeviceTally()
            last = state[0] if state else None
            step = fcnt_step(last, up.f_cnt)
            battery = next(
                (x.value for x in r.readings if x.field == "battery" and _value_num(x.value) is not None),
                None,
            )
            if state is None:
                state = devices[up.dev_eui] = [None, None, None, 0]
            state[0] = up.f_cnt if not (step.repeated or step.late) else last
            if battery is not None:
                state[1] = battery
            if r.role:
                state[2] = r.role
            lost = step.lost if state[3] + step.lost >= 0 else 0  # a late uplink fills a counted gap
            state[3] += lost
            tally.lost += lost
            tally.resets += 1 if step.reset else 0
            tally.uplinks += 1
            tally.row = (
                up.dev_eui,
                up.device_name,
                up.application_id,
                tags_json,
                state[2],
                state[0],
                received,
                up.radio.rssi,
                up.radio.snr,
                state[1],
            )
            if r.dead_letter_reason is not None:
                dead.append((received, r.dead_letter_source, r.dead_letter_reason, up.data, 0, up.dev_eui))
        for chunk in _pow2_chunks(events):
            cur.execute(_multi_row(_EVENT_INSERT, _EVENT_ROW, len(chunk)), [v for row in chunk for v in row])
        for chunk in _pow2_chunks(readings):
            cur.execute(_multi_row(_READING_INSERT, _READING_ROW, len(chunk)), [v for row in chunk for v in row])
        device_rows = [(*t.row[:6], t.lost, t.resets, t.uplinks, *t.row[6:]) for t in updates.values()]
        for chunk in _pow2_chunks(device_rows):
            sql = _multi_row(_DEVICE_UPSERT_HEAD, _DEVICE_ROW, len(chunk)) + _DEVICE_UPSERT_TAIL
            cur.execute(sql, [v for row in chunk for v in row])
        if dead:
            cur.executemany(
                "INSERT INTO dead_letters (received_at, source, reason, raw, raw_is_text, dev_eui) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                dead,
            )
        return stored

    def _update_device_for_uplink(
        self,
        cur: sqlite3.Cursor,
        uplink: Uplink,
        readings: Sequence[Reading],
        role: str | None,
        received: str,
        tags_json: str,
    ) -> None:
        row = cur.execute(
            "SELECT last_fcnt, battery, role, fcnt_gaps FROM devices WHERE dev_eui = ?" + self._FOR_UPDATE,
            (uplink.dev_eui,),
        ).fetchone()
        last = row["last_fcnt"] if row else None
        step = fcnt_step(last, uplink.f_cnt)
        lost = step.lost if row is None or row["fcnt_gaps"] + step.lost >= 0 else 0
        battery = next(
            (x.value for x in readings if x.field == "battery" and _value_num(x.value) is not None), None
        )
        if row is None:
            battery_value = battery
            role_value = role
        else:
            battery_value = battery if battery is not None else row["battery"]
            role_value = role or row["role"]
        # A repeat or a late uplink must not move the counter backwards.
        new_last = uplink.f_cnt if not (step.repeated or step.late) else last
        cur.execute(
            "INSERT INTO devices (dev_eui, name, application_id, tags, role, last_fcnt, fcnt_gaps, resets, "
            "uplinks, last_seen, last_rssi, last_snr, battery, last_event) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, 'up') "
            "ON CONFLICT (dev_eui) DO UPDATE SET name = excluded.name, application_id = excluded.application_id, "
            "tags = excluded.tags, role = excluded.role, last_fcnt = excluded.last_fcnt, "
            "fcnt_gaps = devices.fcnt_gaps + excluded.fcnt_gaps, resets = devices.resets + excluded.resets, "
            "uplinks = devices.uplinks + 1, last_seen = excluded.last_seen, last_rssi = excluded.last_rssi, "
            "last_snr = excluded.last_snr, battery = excluded.battery, last_event = 'up'",
            (
                uplink.dev_eui,
                uplink.device_name,
                uplink.application_id,
                tags_json,
                role_value,
                new_last,
                lost,
                1 if step.reset else 0,
                received,
                uplink.radio.rssi,
                uplink.radio.snr,
                battery_value,
            ),
        )

    def record_event(
        self,
        kind: str,
        update: DeviceUpdate,
        *,
        received_at: datetime,
        dedup_id: str | None,
        raw: bytes | None = None,
        encoding: str = "",
        dead_letter: tuple[str, str] | None = None,
    ) -> bool:
        """Store a non-uplink event (join, status, ack, txack, log) and apply ``update`` to its device.

        Returns ``False`` when the same ``(kind, dedup_id)`` was stored before (``dedup_id=None`` is
        never a duplicate: log events carry no id). ``dead_letter=(source, reason)`` adds a dead letter
        holding ``raw`` in the same transaction.
        """
        received = format_time(received_at)
        try:
            with self._tx() as cur:
                row = cur.execute(
                    "INSERT INTO events (kind, dev_eui, received_at, dedup_id, encoding, raw) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                    (kind, update.dev_eui or None, received, dedup_id, encoding, raw),
                ).fetchone()
                if row is None:
                    return False
                if update.dev_eui:
                    cur.execute(
                        "INSERT INTO devices (dev_eui, name, application_id, tags, last_fcnt, joins, battery, "
                        "margin, last_seen, last_event) VALUES (?, ?, ?, ?, NULL, ?, NULL, ?, ?, ?) "
                        "ON CONFLICT (dev_eui) DO UPDATE SET "
                        "name = CASE WHEN excluded.name != '' THEN excluded.name ELSE devices.name END, "
                        "application_id = CASE WHEN excluded.application_id != '' "
                        "  THEN excluded.application_id ELSE devices.application_id END, "
                        "tags = CASE WHEN excluded.tags != '{}' THEN excluded.tags ELSE devices.tags END, "
                        "last_fcnt = CASE WHEN ? THEN NULL ELSE devices.last_fcnt END, "
                        "joins = devices.joins + excluded.joins, "
                        "margin = COALESCE(excluded.margin, devices.margin), "
                        "last_seen = excluded.last_seen, last_event = excluded.last_event",
                        (
                            update.dev_eui,
                            update.name,
                            update.application_id,
                            json.dumps(update.tags, sort_keys=True),
                            1 if update.joined else 0,  # joins: a count
                            update.margin,
                            received,
                            kind,
                            update.joined,  # CASE WHEN: a boolean
                        ),
                    )
                if dead_letter is not None:
                    source, reason = dead_letter
                    self._insert_dead_letter(cur, source, reason, raw, update.dev_eui or None, received)
        except self._DB_ERRORS as exc:
            raise StoreError(f"cannot store {kind} event {dedup_id}: {exc}") from exc
        return True

    def dead_letter(
        self,
        source: str,
        reason: str,
        raw: bytes | str | None,
        dev_eui: str | None = None,
        *,
        received_at: datetime | None = None,
    ) -> int:
        """Keep something that could not be processed, with the reason. Returns the dead letter's id."""
        try:
            with self._tx() as cur:
                return self._insert_dead_letter(
                    cur, source, reason, raw, dev_eui, format_time(received_at or _now())
                )
        except self._DB_ERRORS as exc:
            raise StoreError(f"cannot store dead letter from {source}: {exc}") from exc

    @staticmethod
    def _insert_dead_letter(
        cur: sqlite3.Cursor,
        source: str,
        reason: str,
        raw: bytes | str | None,
        dev_eui: str | None,
        received: str,
    ) -> int:
        is_text = isinstance(raw, str)
        blob = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
        row = cur.execute(
            "INSERT INTO dead_letters (received_at, source, reason, raw, raw_is_text, dev_eui) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (received, source, reason, blob, 1 if is_text else 0, dev_eui),
        ).fetchone()
        return int(row[0])

    # -- sink outbox ---------------------------------------------------------------------------------

    def readings_after(self, reading_id: int, limit: int = 500) -> list[tuple[int, Reading]]:
        """The next ``limit`` readings with ``id > reading_id``, oldest first: a sink's outbox page."""
        return [(s.id, s.reading) for s in self.stored_readings_after(reading_id, limit)]

    def stored_readings_after(self, reading_id: int, limit: int = 500) -> list[StoredReading]:
        """Like :meth:`readings_after`, with radio metadata."""
        rows = self._query(
            f"SELECT {_READING_COLUMNS} FROM readings WHERE id > ? ORDER BY id LIMIT ?", (reading_id, limit)
        )
        return [_row_to_stored(row) for row in rows]

    def get_cursor(self, sink: str) -> int:
        """Id of the last reading delivered to ``sink`` (0 when it never delivered anything)."""
        rows = self._query("SELECT reading_id FROM sink_cursors WHERE sink = ?", (sink,))
        return int(rows[0][0]) if rows else 0

    def set_cursor(self, sink: str, reading_id: int) -> None:
        """Record that ``sink`` has delivered every reading up to ``reading_id``.

        A cursor never moves backwards (a late, stale acknowledgement is ignored).
        """
        try:
            with self._tx() as cur:
                cur.execute(
                    "INSERT INTO sink_cursors (sink, reading_id, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (sink) DO UPDATE SET reading_id = CASE WHEN excluded.reading_id > sink_cursors.reading_id "
                    "THEN excluded.reading_id ELSE sink_cursors.reading_id END, "
                    "updated_at = excluded.updated_at",
                    (sink, reading_id, format_time(_now())),
                )
        except self._DB_ERRORS as exc:
            raise StoreError(f"cannot set cursor of sink {sink!r}: {exc}") from exc

    def pending(self, sink: str) -> int:
        """Readings not yet delivered to ``sink``."""
        rows = self._query("SELECT COUNT(*) FROM reading_log WHERE id > ?", (self.get_cursor(sink),))
        return int(rows[0][0])

    def cursors(self) -> dict[str, int]:
        """Every sink's cursor."""
        return {
            row[0]: int(row[1])
            for row in self._query("SELECT sink, reading_id FROM sink_cursors ORDER BY sink")
        }

    def last_reading_id(self) -> int:
        rows = self._query("SELECT COALESCE(MAX(id), 0) FROM reading_log")
        return int(rows[0][0])

    # -- reads ---------------------------------------------------------------------------------------

    def devices(self) -> list[Device]:
        """Every device, by EUI."""
        return [_row_to_device(row) for row in self._query("SELECT * FROM devices ORDER BY dev_eui")]

    def device(self, dev_eui: str) -> Device | None:
        rows = self._query("SELECT * FROM devices WHERE dev_eui = ?", (dev_eui,))
        return _row_to_device(rows[0]) if rows else None

    def readings(
        self,
        device: str | None = None,
        field: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
        *,
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
        rows = self._query(
            f"SELECT {_READING_COLUMNS} FROM readings WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", params
        )
        return [_row_to_stored(row) for row in rows]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first."""
        rows = self._query("SELECT * FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,))
        out = []
        for row in rows:
            raw = row["raw"]
            if raw is not None and row["raw_is_text"]:
                raw = bytes(raw).decode("utf-8", "surrogateescape")
            elif raw is not None:
                raw = bytes(raw)
            out.append(
                DeadLetter(
                    id=row["id"],
                    received_at=parse_time(row["received_at"]),
                    source=row["source"],
                    reason=row["reason"],
                    raw=raw if raw is not None else b"",
                    dev_eui=row["dev_eui"],
                )
            )
        return out

    def counts(self) -> dict[str, int]:
        """Row counts and frame-counter totals, for /metrics and /health."""
        row = self._query(
            "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM events WHERE kind = 'up'), "
            "(SELECT COUNT(*) FROM reading_log), (SELECT COUNT(*) FROM dead_letters), "
            "(SELECT COUNT(*) FROM devices), (SELECT COALESCE(SUM(fcnt_gaps), 0) FROM devices), "
            "(SELECT COALESCE(SUM(resets), 0) FROM devices)"
        )[0]
        keys = ("events", "uplinks", "readings", "dead_letters", "devices", "fcnt_gaps", "fcnt_resets")
        return {k: int(v) for k, v in zip(keys, row, strict=True)}

    # -- maintenance ---------------------------------------------------------------------------------

    def prune(
        self,
        before: datetime,
        delivered_up_to: int,
        *,
        dead_letters: bool = False,
        dry_run: bool = False,
        window: int = _PRUNE_WINDOW,
    ) -> PruneResult:
        """Delete readings and events older than ``before`` that every sink has delivered.

        A reading goes when its time is before ``before`` and its id is at most ``delivered_up_to``
        (the smallest cursor of the sinks that must still see it); an event goes when it was received
        before ``before`` and none of its readings is left. Dead letters older than ``before`` go only
        with ``dead_letters``. Devices (their counters and last state) and sink cursors stay; ids are
        never reused. Work is done in short transactions of ``window`` ids each, so a running gateway
        keeps storing while this runs. ``dry_run`` counts what would go and deletes nothing.

        A deduplication id deleted here is forgotten: an uplink redelivered after its event was pruned
        would be stored again, so prune well behind what the broker can redeliver.
        """
        cutoff = format_time(before)
        first, last = self._query("SELECT COALESCE(MIN(id), 1), COALESCE(MAX(id), 0) FROM reading_log")[0]
        readings = 0
        lo = int(first)
        top = min(int(last), delivered_up_to)
        while lo <= top:
            hi = min(lo + window - 1, top)
            where = "FROM reading_log WHERE id >= ? AND id <= ? AND time < ?"
            if dry_run:
                readings += int(self._query(f"SELECT COUNT(*) {where}", (lo, hi, cutoff))[0][0])
            else:
                with self._tx() as cur:
                    readings += max(cur.execute(f"DELETE {where}", (lo, hi, cutoff)).rowcount, 0)
            lo = hi + 1
        kept = int(
            self._query("SELECT COUNT(*) FROM reading_log WHERE id > ? AND time < ?", (delivered_up_to, cutoff))[0][0]
        )
        # Events that still have readings: the undelivered ones. (A delivered reading that stays is newer
        # than the cutoff, and so is its event: a reading's time is its uplink's receive time or earlier.)
        held = {int(r[0]) for r in self._query("SELECT DISTINCT event_id FROM reading_log WHERE id > ?", (delivered_up_to,))}
        first, last = self._query("SELECT COALESCE(MIN(id), 1), COALESCE(MAX(id), 0) FROM events")[0]
        events = 0
        lo = int(first)
        while lo <= int(last):
            hi = lo + window - 1
            ids = [
                int(r[0])
                for r in self._query(
                    "SELECT id FROM events WHERE id >= ? AND id <= ? AND received_at < ?", (lo, hi, cutoff)
                )
                if int(r[0]) not in held
            ]
            if ids and not dry_run:
                with self._tx() as cur:
                    for chunk in _chunks(ids, 500):
                        marks = ", ".join("?" * len(chunk))
                        cur.execute(f"DELETE FROM events WHERE id IN ({marks})", chunk)
            events += len(ids)
            lo = hi + 1
        letters = 0
        if dead_letters:
            where = "FROM dead_letters WHERE received_at < ?"
            if dry_run:
                letters = int(self._query(f"SELECT COUNT(*) {where}", (cutoff,))[0][0])
            else:
                with self._tx() as cur:
                    letters = max(cur.execute(f"DELETE {where}", (cutoff,)).rowcount, 0)
        return PruneResult(readings=readings, events=events, dead_letters=letters, kept_undelivered=kept)

    def event_count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self._query("SELECT COUNT(*) FROM events")[0][0])
        return int(self._query("SELECT COUNT(*) FROM events WHERE kind = ?", (kind,))[0][0])

    def dedup_ids(self, kind: str = "up") -> list[str]:
        """Every stored de-duplication id of ``kind`` (for end-to-end counting in tests and tools)."""
        return [
            row[0] for row in self._query("SELECT dedup_id FROM events WHERE kind = ? ORDER BY id", (kind,))
        ]
