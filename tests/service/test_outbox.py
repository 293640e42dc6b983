"""The outbox delivery worker: exactly once per sink, back-off, dead letters, isolation, restart.

The store is the real SQLite store (``gateway.service.store``); the sink is a small scripted in-process Sink (the HTTP and MQTT sinks
have their own tests against simulators and mosquitto). Back-off waits go through an injected sleep
that records the delays and returns at once, so nothing here depends on wall-clock time.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.contract.records import Reading, Uplink
from gateway.errors import SinkError
from gateway.service.outbox import Backoff, Delivery, DeliveryWorker
from gateway.service.sinks.base import DeliveryResult, Row, RowFailure, Sink
from gateway.service.store import Store

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def readings(n: int, dev_eui: str = "70b3d57ed0000001") -> list[Reading]:
    return [
        Reading(dev_eui, "aq-1", "air_quality", T0 + timedelta(seconds=i), "temperature", 20.0 + i / 10,
                "°C", "CEL", f"dedup-{i}", i)
        for i in range(n)
    ]


def add(store: Store, rows: list[Reading]) -> list[int]:
    """Store readings the way ingest does (one uplink per de-duplication id); return their ids."""
    before = store.last_reading_id()
    uplinks: dict[str, list[Reading]] = {}
    for r in rows:
        uplinks.setdefault(r.deduplication_id, []).append(r)
    for dedup, group in uplinks.items():
        first = group[0]
        uplink = Uplink(first.dev_eui, first.device_name, "app", 10, first.f_cnt, b"", first.time, dedup,
                        dict(first.tags))
        assert store.record_uplink(uplink, group)
    return [rid for rid, _ in store.readings_after(before, 100_000)]


class ScriptedSink(Sink):
    """Records what it accepted; ``behaviour(call_no, batch)`` may raise or return row failures."""

    def __init__(self, name: str = "test", behaviour: Callable[[int, Sequence[Row]], DeliveryResult | None]
                 | None = None) -> None:
        self.name = name
        self.behaviour = behaviour
        self.calls: list[list[int]] = []
        self.accepted: list[int] = []
        self.closed = False

    async def deliver(self, batch: Sequence[Row]) -> DeliveryResult:
        self.calls.append([rid for rid, _ in batch])
        result = DeliveryResult.ok()
        if self.behaviour is not None:
            result = self.behaviour(len(self.calls), batch) or result
        failed = result.failed_ids()
        self.accepted.extend(rid for rid, _ in batch if rid not in failed)
        return result

    async def aclose(self) -> None:
        self.closed = True


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)  # let other workers run, as a real sleep would


def worker(sink: Sink, store: Store, **kw) -> tuple[DeliveryWorker, RecordingSleep]:
    sleep = RecordingSleep()
    kw.setdefault("backoff", Backoff(initial_s=1.0, factor=2.0, max_s=60.0, jitter=0.0))
    return DeliveryWorker(sink, store, sleep=sleep, rng=random.Random(7), **kw), sleep


# -- back-off ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("attempt", "expected_s"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (5, 32.0), (6, 60.0), (20, 60.0), (1000, 60.0)],
)
def test_backoff_doubles_up_to_the_cap_without_jitter(attempt: int, expected_s: float) -> None:
    assert Backoff(initial_s=1.0, factor=2.0, max_s=60.0, jitter=0.0).delay(attempt, random.Random(1)) == expected_s


def test_backoff_jitter_stays_between_half_and_full_delay_and_varies() -> None:
    b = Backoff(initial_s=1.0, factor=2.0, max_s=60.0, jitter=0.5)
    rng = random.Random(3)
    delays = [b.delay(4, rng) for _ in range(200)]
    assert all(8.0 <= d <= 16.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100


@pytest.mark.parametrize("bad", [{"initial_s": 0}, {"factor": 0.5}, {"max_s": 0.1}, {"jitter": 1.5}])
def test_backoff_rejects_nonsense(bad: dict) -> None:
    with pytest.raises(ValueError):
        Backoff(**bad)


# -- exactly once -----------------------------------------------------------------------------------

def test_every_reading_is_delivered_exactly_once_in_order(store: Store) -> None:
    ids = add(store, readings(50))
    sink = ScriptedSink()
    w, sleep = worker(sink, store, batch_size=7)
    assert asyncio.run(w.drain()) == 50
    assert sink.accepted == ids
    assert max(len(c) for c in sink.calls) == 7
    assert store.get_cursor("test") == ids[-1]
    assert store.pending("test") == 0
    assert (w.metrics.delivered, w.metrics.failed, w.metrics.retries, w.metrics.pending) == (50, 0, 0, 0)
    assert sleep.delays == []


def test_a_batch_never_splits_an_uplink(store: Store) -> None:
    # three uplinks of four readings each; a batch of 6 would cut the second uplink in half
    rows = [Reading("70b3d57ed0000001", "aq-1", "air_quality", T0 + timedelta(minutes=u), f, 1.0, None, None,
                    f"up-{u}", u) for u in range(3) for f in ("temperature", "pm1_0", "pm2_5", "pm10")]
    ids = add(store, rows)
    sink = ScriptedSink()
    w, _ = worker(sink, store, batch_size=6)
    asyncio.run(w.drain())
    assert sink.calls == [ids[0:4], ids[4:8], ids[8:12]]


def test_an_uplink_larger_than_a_batch_still_moves(store: Store) -> None:
    rows = [Reading("70b3d57ed0000001", "aq-1", "air_quality", T0, f"f{i}", i, None, None, "up-0", 0)
            for i in range(5)]
    ids = add(store, rows)
    sink = ScriptedSink()
    w, _ = worker(sink, store, batch_size=3)
    asyncio.run(w.drain())
    assert sink.accepted == ids


def test_sink_down_for_a_while_is_retried_with_backoff_then_catches_up(store: Store) -> None:
    ids = add(store, readings(30))

    def down_for_four_calls(call: int, batch: Sequence[Row]) -> None:
        if call <= 4:
            raise SinkError("HTTP 503 from http://broker", retryable=True)

    sink = ScriptedSink(behaviour=down_for_four_calls)
    w, sleep = worker(sink, store, batch_size=10)
    asyncio.run(w.drain())
    assert sleep.delays == [1.0, 2.0, 4.0, 8.0]
    assert sink.accepted == ids
    assert w.metrics.retries == 4 and w.metrics.delivered == 30 and w.metrics.failed == 0
    assert w.metrics.last_error == "HTTP 503 from http://broker"


def test_refused_batch_is_split_until_only_the_bad_row_is_dead_lettered(store: Store) -> None:
    ids = add(store, readings(16))
    poison = ids[11]

    def refuse_batches_with_poison(call: int, batch: Sequence[Row]) -> None:
        if poison in [rid for rid, _ in batch]:
            raise SinkError("HTTP 400 BadRequestData: value out of range", retryable=False)

    sink = ScriptedSink(behaviour=refuse_batches_with_poison)
    w, _ = worker(sink, store, batch_size=16)
    asyncio.run(w.drain())
    assert sink.accepted == [i for i in ids if i != poison]
    (letter,) = store.dead_letters()
    assert letter.source == "sink:test" and "BadRequestData" in letter.reason
    assert letter.dev_eui == "70b3d57ed0000001"
    assert json.loads(letter.raw)["readingId"] == poison and json.loads(letter.raw)["field"] == "temperature"
    assert store.pending("test") == 0 and w.metrics.failed == 1 and w.metrics.delivered == 15


def test_non_retryable_row_failures_are_dead_lettered_and_the_cursor_moves_on(store: Store) -> None:
    ids = add(store, readings(5))

    def reject_second(call: int, batch: Sequence[Row]) -> DeliveryResult:
        return DeliveryResult((RowFailure(batch[1][0], "207: entity rejected (400 BadRequestData)"),))

    sink = ScriptedSink(behaviour=reject_second)
    w, sleep = worker(sink, store)
    asyncio.run(w.drain())
    assert sink.accepted == [ids[0]] + ids[2:]
    assert [d.reason for d in store.dead_letters()] == ["207: entity rejected (400 BadRequestData)"]
    assert store.get_cursor("test") == ids[-1] and sleep.delays == []


def test_retryable_row_failures_are_sent_again_alone(store: Store) -> None:
    ids = add(store, readings(6))

    def third_row_busy_twice(call: int, batch: Sequence[Row]) -> DeliveryResult | None:
        if call <= 2:
            return DeliveryResult((RowFailure(ids[2], "207: 503 for entity", retryable=True),))
        return None

    sink = ScriptedSink(behaviour=third_row_busy_twice)
    w, sleep = worker(sink, store)
    asyncio.run(w.drain())
    assert sink.calls == [ids, [ids[2]], [ids[2]]]
    assert sorted(sink.accepted) == ids and len(sink.accepted) == 6
    assert sleep.delays == [1.0, 2.0] and store.dead_letters() == []


def test_retryable_row_failure_gives_up_after_max_attempts(store: Store) -> None:
    ids = add(store, readings(2))

    def always_busy(call: int, batch: Sequence[Row]) -> DeliveryResult:
        return DeliveryResult(tuple(RowFailure(rid, "503 for entity", retryable=True)
                                    for rid, _ in batch if rid == ids[0]))

    sink = ScriptedSink(behaviour=always_busy)
    w, sleep = worker(sink, store, max_row_attempts=3)
    asyncio.run(w.drain())
    assert len(sink.calls) == 3 and len(sleep.delays) == 2
    (letter,) = store.dead_letters()
    assert letter.reason == "503 for entity (gave up after 3 attempts)"
    assert store.pending("test") == 0


def test_a_bug_in_a_sink_dead_letters_the_row_with_the_reason_instead_of_looping(store: Store) -> None:
    ids = add(store, readings(3))

    def crash_on_middle(call: int, batch: Sequence[Row]) -> None:
        if ids[1] in [rid for rid, _ in batch]:
            raise KeyError("pm2_5")

    sink = ScriptedSink(behaviour=crash_on_middle)
    w, _ = worker(sink, store)
    asyncio.run(w.drain())
    assert sink.accepted == [ids[0], ids[2]]
    assert "KeyError('pm2_5')" in store.dead_letters()[0].reason


# -- restart, stop, isolation -----------------------------------------------------------------------

def test_restart_resumes_from_the_cursor(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    first = Store.open(path)
    ids = add(first, readings(25))
    sink1 = ScriptedSink()
    w1, _ = worker(sink1, first, batch_size=10)
    assert asyncio.run(w1.step()) == 10
    first.close()

    second = Store.open(path)  # a new process: only the disk survives
    sink2 = ScriptedSink()
    w2, _ = worker(sink2, second, batch_size=10)
    assert w2.metrics.delivered == 0
    asyncio.run(w2.drain())
    assert sink1.accepted + sink2.accepted == ids
    assert not set(sink1.accepted) & set(sink2.accepted)
    second.close()


def test_stop_during_backoff_leaves_the_batch_pending(store: Store) -> None:
    add(store, readings(4))

    def down(call: int, batch: Sequence[Row]) -> None:
        raise SinkError("connection refused", retryable=True)

    sink = ScriptedSink(behaviour=down)

    async def main() -> None:
        stopped = asyncio.Event()

        async def sleep_then_notice(delay: float) -> None:
            stopped.set()
            await asyncio.Event().wait()  # a long back-off; only stop() ends it

        w = DeliveryWorker(sink, store, sleep=sleep_then_notice)
        task = asyncio.create_task(w.run())
        await stopped.wait()
        w.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert store.get_cursor("test") == 0 and store.pending("test") == 4
    assert store.dead_letters() == []


def test_stop_keeps_the_finished_prefix_of_a_batch(store: Store) -> None:
    ids = add(store, readings(4))

    async def main() -> ScriptedSink:
        w: DeliveryWorker

        def third_row_busy(call: int, batch: Sequence[Row]) -> DeliveryResult:
            return DeliveryResult((RowFailure(ids[2], "503", retryable=True),))

        sink = ScriptedSink(behaviour=third_row_busy)

        async def stop_on_wait(delay: float) -> None:
            w.stop()
            await asyncio.sleep(0)

        w = DeliveryWorker(sink, store, sleep=stop_on_wait)
        await asyncio.wait_for(w.run(), 5)
        return sink

    asyncio.run(main())
    # ids[0..1] done, ids[2] unfinished: the cursor stops before it; ids[3] will be sent again.
    assert store.get_cursor("test") == ids[1]


def test_a_sink_that_stays_down_does_not_block_another(store: Store) -> None:
    ids = add(store, readings(40))

    def down(call: int, batch: Sequence[Row]) -> None:
        raise SinkError("HTTP 503", retryable=True)

    dead, alive = ScriptedSink("dead", down), ScriptedSink("alive")

    async def main() -> Delivery:
        sleep = RecordingSleep()
        delivery = Delivery(store, [dead, alive], batch_size=8, sleep=sleep, poll_interval_s=0.01,
                            backoff=Backoff(jitter=0.0))
        async with delivery:
            for _ in range(10_000):
                if store.pending("alive") == 0 and len(dead.calls) > 5:
                    break
                await asyncio.sleep(0)
        return delivery

    delivery = asyncio.run(main())
    assert alive.accepted == ids
    assert dead.accepted == [] and store.pending("dead") == 40 and store.get_cursor("dead") == 0
    metrics = delivery.metrics()
    assert metrics["alive"].delivered == 40 and metrics["dead"].retries >= 5
    assert dead.closed and alive.closed
    # The dead sink retried the same first batch only: it never read further into the outbox.
    assert all(call == ids[:8] for call in dead.calls)


def test_sink_names_must_be_unique(store: Store) -> None:
    with pytest.raises(ValueError, match="ngsild"):
        Delivery(store, [ScriptedSink("ngsild"), ScriptedSink("ngsild")])


def test_prometheus_exposition_names_each_sink(store: Store) -> None:
    add(store, readings(3))
    delivery = Delivery(store, [ScriptedSink("a")])
    asyncio.run(delivery.workers[0].drain())
    text = delivery.prometheus()
    assert 'citynode_sink_delivered_total{sink="a"} 3' in text
    assert 'citynode_sink_pending{sink="a"} 0' in text
    assert "# TYPE citynode_sink_pending gauge" in text
