"""The outbox: one worker per sink moves readings from the store to the sink, losing nothing.

The store's readings table is append-only and every sink has its own cursor (the id of the last row it
has finished with) on disk. A worker reads a batch after its cursor, hands it to its sink and advances
the cursor only when every row of the batch is either delivered or in the dead-letter store. So:

* a sink that stays down holds back only its own cursor; the others keep going, and nothing piles up in
  memory (the undelivered rows are just the rows after the cursor, on disk);
* a restart resumes at the cursor; a graceful stop leaves undelivered rows pending for the next start;
* whole-batch failures that may pass (``SinkError(retryable=True)``: platform down, 5xx, timeouts) are
  retried with exponential back-off with jitter, capped, for as long as it takes;
* a batch refused for good (``SinkError(retryable=False)``) is split in halves until the bad rows are
  isolated; they alone are dead-lettered with the platform's reason and the cursor moves on;
* row failures reported by the sink are dead-lettered (not retryable) or sent again with back-off
  (retryable), at most ``max_row_attempts`` times before they too are dead-lettered.

Delivery is exactly once per sink while the gateway runs; a crash between a successful delivery and
the cursor update sends that one batch again (NGSI-LD upserts are idempotent; SensorThings would get
duplicates for that batch). The clock and the sleep function are injectable so tests never wait.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, Self

from gateway.contract.records import Reading
from gateway.errors import SinkError
from gateway.service.sinks.base import Row, Sink, reading_to_json

__all__ = [
    "Backoff",
    "Delivery",
    "DeliveryWorker",
    "OutboxStore",
    "SinkMetrics",
    "dead_letter_source",
]

log = logging.getLogger("gateway.service.outbox")

Sleep = Callable[[float], Awaitable[None]]


class OutboxStore(Protocol):
    """The part of ``gateway.service.store.Store`` the outbox uses (methods may be plain, then thread-safe, or async)."""

    def readings_after(self, reading_id: int, limit: int) -> Any: ...  # list[tuple[int, Reading]]
    def get_cursor(self, sink: str) -> Any: ...  # int, 0 when the sink never delivered
    def set_cursor(self, sink: str, reading_id: int) -> Any: ...
    def pending(self, sink: str) -> Any: ...  # int
    def dead_letter(self, source: str, reason: str, raw: Any, dev_eui: str | None = None) -> Any: ...


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter: attempt n waits about ``initial_s * factor**n``, at most ``max_s``.

    ``jitter`` is the randomised share of each delay (0.5: between half and the full delay), so several
    gateways retrying a platform that comes back do not hit it in lock-step.
    """

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.factor < 1 or self.max_s < self.initial_s or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid back-off {self!r}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0 = first retry)."""
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter) + rng.uniform(0.0, base * self.jitter)


@dataclass
class SinkMetrics:
    """Counters of one sink since start (``pending`` is a gauge read from the store)."""

    delivered: int = 0  # rows the platform accepted
    failed: int = 0  # rows dead-lettered
    retries: int = 0  # back-off waits (whole batch or failed rows sent again)
    pending: int = 0  # rows after the cursor
    batches: int = 0  # successful deliver() calls
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dead_letter_source(sink_name: str) -> str:
    """The ``source`` under which a sink's refused rows are dead-lettered."""
    return f"sink:{sink_name}"


class _Stopped(Exception):
    """Internal: stop was requested while waiting; the batch stays (partly) pending."""


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a store method: async ones are awaited, blocking ones (SQLite with fsync) run in a thread
    so that ingest on the same event loop never waits for a sink's cursor write."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    return await asyncio.to_thread(fn, *args)


class DeliveryWorker:
    """Delivers one sink's outbox. Run :meth:`run` as a task; :meth:`stop` ends it after the current call.

    ``sleep`` is used for back-off waits only (tests pass one that records the delays and returns at once);
    ``rng`` draws the jitter. Idle polling uses real time (``poll_interval_s``) or :meth:`wake`.
    """

    def __init__(
        self,
        sink: Sink,
        store: OutboxStore,
        *,
        batch_size: int = 100,
        poll_interval_s: float = 1.0,
        backoff: Backoff | None = None,
        max_row_attempts: int = 8,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sink = sink
        self.store = store
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.backoff = backoff or Backoff()
        self.max_row_attempts = max_row_attempts
        self._sleep: Sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self.metrics = SinkMetrics()
        self.failing: str | None = None  # why the sink is being retried now; None once a batch went through
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    @property
    def name(self) -> str:
        return self.sink.name

    # -- control ------------------------------------------------------------------------------------

    def wake(self) -> None:
        """New readings are in the store: look now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the call in flight, then return from :meth:`run`; unfinished rows stay pending."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        """Deliver until stopped. Store errors are logged and retried with back-off, never fatal."""
        failures = 0
        try:  # register the sink's cursor at once, so /metrics shows its pending count from the start
            await _call(self.store.set_cursor, self.name, int(await _call(self.store.get_cursor, self.name)))
        except Exception:
            log.exception("sink %s: cannot register its cursor", self.name)
        while not self._stop.is_set():
            try:
                handled = await self.step()
                failures = 0
            except _Stopped:
                break
            except Exception as exc:  # the store itself failed (disk full, locked): keep the worker alive
                self.metrics.last_error = self.failing = f"store: {exc}"
                log.exception("sink %s: outbox step failed", self.name)
                try:
                    await self._wait(self.backoff.delay(failures, self._rng))
                except _Stopped:
                    break
                failures += 1
                continue
            if handled == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                except TimeoutError:
                    pass

    async def drain(self) -> int:
        """Deliver until no row is pending; return the number of rows handled (for tests and the CLI)."""
        total = 0
        while True:
            handled = await self.step()
            if handled == 0:
                return total
            total += handled

    # -- one batch ----------------------------------------------------------------------------------

    async def step(self) -> int:
        """Deliver the next batch after the cursor; return how many rows were finished (0 = idle)."""
        cursor = int(await _call(self.store.get_cursor, self.name))
        # One row more than a batch, to see whether the batch ends in the middle of an uplink.
        rows: list[Row] = list(await _call(self.store.readings_after, cursor, self.batch_size + 1))
        if not rows:
            self.metrics.pending = int(await _call(self.store.pending, self.name))
            return 0
        rows = _whole_uplinks(rows, self.batch_size)
        finished: set[int] = set()
        try:
            await self._deliver_all(rows, finished)
        except _Stopped:
            # Commit the finished prefix so a restart does not send those rows again.
            prefix = _finished_prefix(rows, finished)
            if prefix is not None:
                await _call(self.store.set_cursor, self.name, prefix)
            raise
        await _call(self.store.set_cursor, self.name, rows[-1][0])
        self.failing = None
        self.metrics.pending = int(await _call(self.store.pending, self.name))
        return len(rows)

    async def _deliver_all(self, rows: list[Row], finished: set[int]) -> None:
        chunks: deque[list[Row]] = deque([rows])
        again: list[Row] = []
        row_attempts: dict[int, int] = {}
        attempt = 0  # consecutive whole-batch failures, drives the back-off
        rounds = 0  # rounds of re-sending failed rows, drives their back-off
        while chunks or again:
            if not chunks:
                # Rows the platform refused for a passing reason: wait, then send them again.
                chunks.append(again)
                again = []
                await self._retry_wait(rounds, f"{len(chunks[0])} row(s) failed, retrying")
                rounds += 1
                continue
            chunk = chunks[0]
            try:
                result = await self.sink.deliver(chunk)
            except SinkError as exc:
                if exc.retryable:
                    self.metrics.last_error = str(exc)
                    await self._retry_wait(attempt, str(exc))
                    attempt += 1
                    continue
                chunks.popleft()
                await self._refused(chunk, str(exc), chunks, finished)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in the sink: keep the rows with the reason, never loop on them
                log.exception("sink %s: unexpected error delivering %d row(s)", self.name, len(chunk))
                chunks.popleft()
                await self._refused(chunk, f"unexpected sink error: {exc!r}", chunks, finished)
                continue
            chunks.popleft()
            attempt = 0
            self.metrics.batches += 1
            failures = {f.reading_id: f for f in result.failures}
            by_id = dict(chunk)
            for rid, _reading in chunk:
                failure = failures.get(rid)
                if failure is None:
                    self.metrics.delivered += 1
                    finished.add(rid)
                elif failure.retryable and row_attempts.get(rid, 0) + 1 < self.max_row_attempts:
                    row_attempts[rid] = row_attempts.get(rid, 0) + 1
                    again.append((rid, by_id[rid]))
                    self.metrics.last_error = failure.reason
                else:
                    reason = failure.reason
                    if failure.retryable:
                        reason = f"{reason} (gave up after {self.max_row_attempts} attempts)"
                    await self._dead_letter(rid, by_id[rid], reason)
                    finished.add(rid)

    async def _refused(self, chunk: list[Row], reason: str, chunks: deque[list[Row]], finished: set[int]) -> None:
        """A whole chunk was refused for good: split it to find the bad rows, dead-letter single rows."""
        if len(chunk) == 1:
            rid, reading = chunk[0]
            await self._dead_letter(rid, reading, reason)
            finished.add(rid)
            return
        mid = len(chunk) // 2
        chunks.appendleft(chunk[mid:])
        chunks.appendleft(chunk[:mid])

    async def _dead_letter(self, rid: int, reading: Reading, reason: str) -> None:
        raw = json.dumps({"readingId": rid, **reading_to_json(reading)}, ensure_ascii=False, default=str)
        await _call(
            self.store.dead_letter, dead_letter_source(self.name), reason, raw, reading.dev_eui
        )
        self.metrics.failed += 1
        self.metrics.last_error = reason
        log.warning("sink %s: reading %d dead-lettered: %s", self.name, rid, reason)

    async def _retry_wait(self, attempt: int, reason: str) -> None:
        delay = self.backoff.delay(attempt, self._rng)
        self.metrics.retries += 1
        self.failing = reason
        log.warning("sink %s: %s; retry %d in %.1f s", self.name, reason, attempt + 1, delay)
        await self._wait(delay)

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds with the injected sleep, cut short by :meth:`stop`."""
        if self._stop.is_set():
            raise _Stopped
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
        if self._stop.is_set():
            raise _Stopped


def _whole_uplinks(rows: list[Row], batch_size: int) -> list[Row]:
    """Cut ``rows`` (up to ``batch_size + 1`` of them) to a batch that does not split an uplink.

    The store writes an uplink's readings in one transaction, so they have consecutive ids; a sink that
    turns an uplink into one entity update (NGSI-LD, MQTT) must see all of them in one batch. When the
    row after the batch belongs to the batch's last uplink, that uplink is left for the next batch,
    unless it alone fills the batch.
    """
    if len(rows) <= batch_size:
        return rows
    following = rows[batch_size][1].deduplication_id
    rows = rows[:batch_size]
    cut = len(rows)
    while cut > 0 and rows[cut - 1][1].deduplication_id == following:
        cut -= 1
    return rows[:cut] if cut else rows


def _finished_prefix(rows: Sequence[Row], finished: set[int]) -> int | None:
    """The id of the last row before the first unfinished one, or None if the first is unfinished."""
    last = None
    for rid, _ in rows:
        if rid not in finished:
            break
        last = rid
    return last


class Delivery:
    """All sinks' workers as one async context manager.

    ``async with Delivery(store, sinks) as delivery:`` starts one task per sink; call
    :meth:`notify` after storing new readings; leaving the block stops the workers (rows in flight
    finish, the rest stay pending) and closes the sinks.
    """

    def __init__(self, store: OutboxStore, sinks: Iterable[Any], **worker_options: Any) -> None:
        # Items are sinks, or specs with ``.sink`` and ``.worker_options`` (gateway.service.sinks.config.SinkSpec)
        # whose options override the common ones.
        pairs: list[tuple[Sink, dict[str, Any]]] = []
        for item in sinks:
            if isinstance(item, Sink):
                pairs.append((item, dict(worker_options)))
            else:
                pairs.append((item.sink, {**worker_options, **item.worker_options}))
        names = [s.name for s, _ in pairs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sink names must be unique (they key the cursors): {', '.join(duplicates)}")
        self.workers = [DeliveryWorker(s, store, **opts) for s, opts in pairs]
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start(self) -> None:
        for worker in self.workers:
            self._tasks.append(asyncio.create_task(worker.run(), name=f"delivery:{worker.name}"))

    def notify(self) -> None:
        """Wake every worker (new readings were stored)."""
        for worker in self.workers:
            worker.wake()

    async def aclose(self, timeout_s: float = 30.0) -> None:
        """Stop all workers, waiting up to ``timeout_s`` for calls in flight, then close the sinks."""
        for worker in self.workers:
            worker.stop()
        if self._tasks:
            _done, late = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
        for worker in self.workers:
            try:
                await worker.sink.aclose()
            except Exception:
                log.exception("sink %s: close failed", worker.name)

    def metrics(self) -> dict[str, SinkMetrics]:
        return {w.name: w.metrics for w in self.workers}

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """Per-sink counters as ``(metric, labels, value)`` for ``gateway.service.metrics.Metrics.add_collector``.

        ``pending`` is not included: ``/metrics`` reads it from the store, where it survives restarts.
        """
        out: list[tuple[str, dict[str, str], float]] = []
        for w in self.workers:
            labels = {"sink": w.name}
            out.append(("citynode_sink_delivered_total", labels, float(w.metrics.delivered)))
            out.append(("citynode_sink_failed_total", labels, float(w.metrics.failed)))
            out.append(("citynode_sink_retries_total", labels, float(w.metrics.retries)))
        return out

    def prometheus(self) -> str:
        """The per-sink counters in the Prometheus text exposition format (for ``/metrics``)."""
        lines: list[str] = []
        series = [
            ("delivered", "counter", "Readings the sink accepted"),
            ("failed", "counter", "Readings dead-lettered by the sink"),
            ("retries", "counter", "Back-off waits before sending again"),
            ("pending", "gauge", "Readings waiting in the sink's outbox"),
        ]
        for key, kind, help_text in series:
            metric = f"citynode_sink_{key}" + ("_total" if kind == "counter" else "")
            lines.append(f"# HELP {metric} {help_text}")
            lines.append(f"# TYPE {metric} {kind}")
            for w in self.workers:
                lines.append(f'{metric}{{sink="{w.name}"}} {getattr(w.metrics, key)}')
        return "\n".join(lines) + "\n"
