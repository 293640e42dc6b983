"""The :class:`Store`: the gateway's one storage API, over a backend chosen by the path it is opened with.

``Store.open(path)`` opens a SQLite file (:mod:`.sqlite`), ``Store.open("postgresql://...")`` a
PostgreSQL database (:mod:`.postgres`). The store holds a backend (a connection with its
transactions, see :class:`gateway.service.store.backend.Backend`); what it does with it is in one
module per concern, each written once for both engines:

* :mod:`.events`: uplinks with their readings (one path for one uplink and for a batch) and other events;
* :mod:`.health`: what an uplink does to its device's frame-counter health (a pure function);
* :mod:`.devices`: the device registry; :mod:`.deadletters`; :mod:`.outbox`: sink cursors;
* :mod:`.queries`: the reading log and totals as the API reads them; :mod:`.shapes`: message shapes; :mod:`.prune`;
* :mod:`.migrations`: the schema, both engines side by side; :mod:`.dialect`: where they differ.

The API is synchronous and thread-safe (one lock around the connection); each call is one short
transaction, so asyncio code may call it directly or through :func:`asyncio.to_thread`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.contract.records import Reading, Uplink
from gateway.service.store import deadletters, devices, events, outbox, queries, shapes
from gateway.service.store import prune as pruning
from gateway.service.store.backend import Backend
from gateway.service.store.rawcodec import RawCodec
from gateway.service.store.sqlite import SqliteBackend
from gateway.service.store.values import (
    DeadLetter,
    Device,
    DeviceUpdate,
    PruneResult,
    StoredEvent,
    StoredReading,
    StoreError,
    UplinkRecord,
    format_time,
    now,
    parse_time,
)

__all__ = ["Store"]


def is_postgres(path: str | Path) -> bool:
    return str(path).startswith(("postgresql://", "postgres://"))


class Store:
    """The gateway's store. Open with :meth:`Store.open`; close with :meth:`close` (or ``with``)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.path = backend.path
        self._db = backend
        self._d = backend.dialect
        self._raw = RawCodec()

    # -- lifetime ------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, synchronous: str = "FULL") -> Store:
        """Open (creating and migrating as needed) the store at ``path`` (a file, or a PostgreSQL URL).

        Raises :class:`StoreError` when it cannot be opened or was written by a newer gateway, and
        :class:`gateway.errors.ConfigError` for a bad ``synchronous`` (SQLite: FULL, NORMAL, EXTRA).
        """
        if is_postgres(path):
            from gateway.service.store.postgres import PostgresBackend

            return cls(PostgresBackend.connect(str(path)))
        return cls(SqliteBackend.open(str(path), synchronous))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self._db.schema_version

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit: every write inside is one transaction, committed (one fsync) on exit.

        Used by ingests that acknowledge several events at once (MQTT drains what the broker has
        already sent): the acknowledgements follow the single commit, so the crash guarantees are
        those of one event per transaction. Inside, each write is a savepoint: one that fails undoes
        only itself.
        """
        with self._db.batch():
            yield

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one read statement written with ``?`` parameters (rendered for the backend's driver);
        rows are readable by position and by column name."""
        return self._db.query(self._d.sql(sql), params)

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
        gateway_received_at: datetime | None = None,
    ) -> bool:
        """Store one ``up`` event with its readings, update the device, all in one transaction.

        Returns ``False`` (and changes nothing) when an event with the same de-duplication id was
        stored before: this is what makes redelivery (MQTT QoS 1, AMQP requeue, HTTP retry) exactly-once.
        ``dead_letter_reason`` stores a dead letter (the raw payload) in the same transaction, for
        uplinks whose payload could not be decoded; its time is ``gateway_received_at`` (default: now),
        when the gateway received the event, not the network time the event states.
        """
        record = UplinkRecord(
            uplink, readings, raw, encoding, role, dead_letter_reason, dead_letter_source, gateway_received_at
        )
        try:
            with self._db.tx() as cur:
                return events.record_uplinks(cur, self._d, [record], self._raw)[0]
        except self._db.errors as exc:
            raise StoreError(f"cannot store uplink {uplink.deduplication_id} of {uplink.dev_eui}: {exc}") from exc

    def record_uplinks(self, records: Sequence[UplinkRecord]) -> list[bool]:
        """Store several ``up`` events at once; ``result[i]`` is what :meth:`record_uplink` would return.

        The same outcome as calling :meth:`record_uplink` for each record in order (duplicates are
        recognised, also within ``records``; a device's frame-counter tracking sees its uplinks in
        order), with a handful of statements for the lot: that is what lets the MQTT ingest commit a
        batch while the next one is parsed (SQLite releases the GIL for each statement, and a few long
        statements let the two threads overlap where thousands of short ones would wait for the GIL).

        All or nothing: if the bulk insert fails, it is undone and each record is stored on its own
        (one transaction or savepoint each), so one bad record cannot take the others with it.
        """
        if not records:
            return []
        try:
            with self._db.tx() as cur:
                return events.record_uplinks(cur, self._d, records, self._raw)
        except self._db.errors:
            pass  # fall back to one record at a time; a real failure raises StoreError there
        return [
            self.record_uplink(
                r.uplink,
                r.readings,
                raw=r.raw,
                encoding=r.encoding,
                role=r.role,
                dead_letter_reason=r.dead_letter_reason,
                dead_letter_source=r.dead_letter_source,
                gateway_received_at=r.gateway_received_at,
            )
            for r in records
        ]

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
        holding ``raw`` in the same transaction, timed now (``received_at`` is the event's own time).
        """
        received = format_time(received_at)
        try:
            with self._db.tx() as cur:
                return events.record_event(
                    cur, self._d, kind, update, received, dedup_id, raw, encoding, dead_letter, self._raw
                )
        except self._db.errors as exc:
            raise StoreError(f"cannot store {kind} event {dedup_id}: {exc}") from exc

    def dead_letter(
        self,
        source: str,
        reason: str,
        raw: bytes | str | None,
        dev_eui: str | None = None,
        *,
        received_at: datetime | None = None,
    ) -> int:
        """Keep something that could not be processed, with the reason. Returns the dead letter's id.

        ``received_at`` is when the gateway received it (default: now), never a time read from the body.
        """
        row = deadletters.row(format_time(received_at or now()), source, reason, raw, dev_eui)
        try:
            with self._db.tx() as cur:
                return deadletters.insert(cur, self._d, row)
        except self._db.errors as exc:
            raise StoreError(f"cannot store dead letter from {source}: {exc}") from exc

    # -- sink outbox ---------------------------------------------------------------------------------

    def readings_after(self, reading_id: int, limit: int = 500) -> list[tuple[int, Reading]]:
        """The next ``limit`` readings with ``id > reading_id``, oldest first: a sink's outbox page."""
        return [(s.id, s.reading) for s in outbox.stored_readings_after(self._db, reading_id, limit)]

    def stored_readings_after(self, reading_id: int, limit: int = 500) -> list[StoredReading]:
        """Like :meth:`readings_after`, with radio metadata."""
        return outbox.stored_readings_after(self._db, reading_id, limit)

    def get_cursor(self, sink: str) -> int:
        """Id of the last reading delivered to ``sink`` (0 when it never delivered anything)."""
        return outbox.get_cursor(self._db, sink)

    def set_cursor(self, sink: str, reading_id: int) -> None:
        """Record that ``sink`` has delivered every reading up to ``reading_id``.

        A cursor never moves backwards (a late, stale acknowledgement is ignored).
        """
        try:
            outbox.set_cursor(self._db, sink, reading_id)
        except self._db.errors as exc:
            raise StoreError(f"cannot set cursor of sink {sink!r}: {exc}") from exc

    def pending(self, sink: str) -> int:
        """Readings not yet delivered to ``sink``."""
        return outbox.pending(self._db, sink)

    def cursors(self) -> dict[str, int]:
        """Every sink's cursor."""
        return outbox.cursors(self._db)

    def last_reading_id(self) -> int:
        return outbox.last_reading_id(self._db)

    # -- reads ---------------------------------------------------------------------------------------

    def devices(self) -> list[Device]:
        """Every device, by EUI."""
        return devices.devices(self._db)

    def device(self, dev_eui: str) -> Device | None:
        return devices.device(self._db, dev_eui)

    def firmware_versions(self, dev_euis: Sequence[str] | None = None) -> dict[str, str]:
        """DevEUI -> the app version its newest device_status reported (None: every device)."""
        return queries.firmware_versions(self._db, dev_euis)

    def device_shapes(self, dev_eui: str) -> dict[int, str] | None:
        """The message shapes of ``dev_eui``'s uplinks (shape id -> message type, :mod:`.shapes`), one
        index seek each; None when it has more than :data:`.shapes.MOST_PER_DEVICE`."""
        found = shapes.device_shapes(self._db, dev_eui.lower())
        if found is None:
            return None
        types = shapes.shape_types(self._db, found)
        return {s: types[s] for s in found}

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
        return queries.readings(self._db, device, field, since, limit, after_id)

    def raw_event(self, event: int | str) -> StoredEvent | None:
        """An event with its body exactly as received, by event id (an integer; the ``event_id`` of
        the ``readings`` view) or by deduplication id (a text; an uplink's). None when not stored.

        Raw bodies are stored compressed (:mod:`gateway.service.store.rawcodec`); this gives back the
        bytes ChirpStack sent, JSON or protobuf as ``encoding`` says.
        """
        if isinstance(event, int):
            where, key = "id = ?", event
        else:
            where, key = "kind = 'up' AND dedup_id = ?", event
        rows = self._db.query(
            self._d.sql(f"SELECT id, kind, dev_eui, dedup_id, received_at, encoding, raw FROM events WHERE {where}"),
            (key,),
        )
        if not rows:
            return None
        row = rows[0]
        try:
            raw, encoding = self._raw.decode(self._db, row[6], row[5])
        except zlib.error as exc:
            raise StoreError(f"raw event {row[0]} cannot be read back: {exc}") from exc
        return StoredEvent(int(row[0]), row[1], row[2], row[3], parse_time(row[4]), encoding, raw)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first."""
        return deadletters.newest(self._db, limit)

    def counts(self) -> dict[str, int]:
        """Row counts and frame-counter totals, for /metrics and /health."""
        return queries.counts(self._db)

    def event_count(self, kind: str | None = None) -> int:
        return queries.event_count(self._db, kind)

    def dedup_ids(self, kind: str = "up") -> list[str]:
        """Every stored de-duplication id of ``kind`` (for end-to-end counting in tests and tools)."""
        return queries.dedup_ids(self._db, kind)

    # -- maintenance ---------------------------------------------------------------------------------

    def prune(
        self,
        before: datetime,
        delivered_up_to: int,
        *,
        dead_letters: bool = False,
        dry_run: bool = False,
        window: int = pruning.WINDOW,
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
        return pruning.prune(
            self._db, before, delivered_up_to, dead_letters=dead_letters, dry_run=dry_run, window=window
        )
