"""Group commit with pipelining (MQTT ingest) keeps the guarantees: a message is acknowledged only
after the transaction holding it committed, PUBACKs follow the order of the PUBLISHes (MQTT 3.1.1
4.6), and a batch whose commit fails is not acknowledged, so the broker redelivers it and the store
keeps it exactly once. Runs against a real mosquitto."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiomqtt
import pytest

from gateway.service.config import MqttConfig
from gateway.service.ingest.mqtt import MqttIngest
from gateway.service.pipeline import Pipeline, Prepared, Result
from gateway.service.store import StoreError

pytestmark = pytest.mark.mqtt


class RecordingPipeline(Pipeline):
    """Logs each commit; commits slowly (a slow disk), and can fail the first ``fail`` commits."""

    def __init__(self, *args, log: list[tuple[str, str]], fail: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log = log
        self.fail = fail

    def commit_many(self, prepared: list[Prepared]) -> list[Result]:
        if self.fail:
            self.fail -= 1
            self.log.extend(("failed", p.uplink.deduplication_id) for p in prepared if p.uplink)
            raise StoreError("disk full (simulated)")
        results = super().commit_many(prepared)
        self.log.extend(("commit", r.dedup_id) for r in results)
        time.sleep(0.02)  # lets the ingest prepare the next batch meanwhile (nothing is timed)
        return results


class RecordingIngest(MqttIngest):
    def __init__(self, *args, log: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log = log

    def _ack(self, client, batch, results) -> None:
        self.log.extend(("ack", r.dedup_id) for r in results)
        super()._ack(client, batch, results)


def uplinks(events, app: str, n: int, aq_payload) -> list[tuple[str, str, bytes]]:
    out = []
    for fcnt in range(1, n + 1):
        msg = events.up(f_cnt=fcnt, data=aq_payload(20 + fcnt / 100), dedup=f"{app}-{fcnt:04d}")
        msg.device_info.application_id = app
        out.append((events.topic(msg, "up"), msg.deduplication_id, events.body(msg, "protobuf")))
    return out


async def run(mosquitto, store, events, aq_payload, fail: int) -> tuple[list[tuple[str, str]], list[str]]:
    app = uuid.uuid4().hex
    log: list[tuple[str, str]] = []
    config = MqttConfig(
        enabled=True,
        host=mosquitto.host,
        port=mosquitto.port,
        client_id=f"gw-{uuid.uuid4().hex[:8]}",
        topic=f"application/{app}/device/+/event/+",
        encoding="protobuf",
    )
    pipeline = RecordingPipeline(store, log=log, fail=fail)
    ingest = RecordingIngest(config, pipeline, batch_size=25, log=log)
    task = asyncio.create_task(ingest.run())
    await asyncio.wait_for(ingest.connected.wait(), 15)
    msgs = uplinks(events, app, 120, aq_payload)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=f"pub-{app[:8]}") as pub:
        for topic, _dedup, body in msgs:
            await pub.publish(topic, body, qos=1)
    deadline = asyncio.get_running_loop().time() + 60  # a deadlock guard, not a timing assertion
    while sum(1 for what, _ in log if what == "ack") < len(msgs):
        assert asyncio.get_running_loop().time() < deadline, f"not all acknowledged: {len(log)} log entries"
        await asyncio.sleep(0.02)
    ingest.stop()
    await asyncio.wait_for(task, 15)
    return log, [dedup for _topic, dedup, _body in msgs]


def test_every_ack_follows_its_commit_and_acks_keep_publish_order(mosquitto, store, events, aq_payload):
    log, published = asyncio.run(run(mosquitto, store, events, aq_payload, fail=0))
    position = {entry: i for i, entry in enumerate(log)}
    for dedup in published:
        assert position[("commit", dedup)] < position[("ack", dedup)], dedup
    assert [d for what, d in log if what == "ack"] == published
    assert sorted(store.dedup_ids("up")) == sorted(published)


def test_a_failed_commit_is_not_acknowledged_and_comes_back_exactly_once(
    mosquitto, store, events, aq_payload
):
    log, published = asyncio.run(run(mosquitto, store, events, aq_payload, fail=1))
    failed = [d for what, d in log if what == "failed"]
    assert failed, "the first commit should have failed"
    acked = [d for what, d in log if what == "ack"]
    first_ack = {d: i for i, (what, d) in reversed(list(enumerate(log))) if what == "ack"}
    for dedup in failed:  # redelivered by the broker, then committed before being acknowledged
        fail_at = log.index(("failed", dedup))
        assert fail_at < log.index(("commit", dedup)) < first_ack[dedup]
    assert set(acked) == set(published)
    assert sorted(store.dedup_ids("up")) == sorted(published)  # nothing lost, nothing twice


def test_a_burst_is_read_at_most_a_few_batches_ahead_of_the_store_and_nothing_is_lost(
    mosquitto, store, events, aq_payload, monkeypatch
):
    """Bounded read-ahead: while the store is slow, the ingest holds at most READ_AHEAD_BATCHES batches
    of received messages (plus what one read of the socket brought) and stops reading the socket; the
    broker keeps the rest. Every message is still committed before its PUBACK, in publish order."""
    from gateway.service.ingest import mqtt_wire
    from gateway.service.ingest.mqtt import READ_AHEAD_BATCHES

    batch = 10
    bound = READ_AHEAD_BATCHES * batch
    held: list[tuple[int, int]] = []  # (messages held after a read, messages that read brought)
    paused: list[bool] = []
    original = mqtt_wire._Wire.data_received

    def recording(self, data: bytes) -> None:
        before = len(self.publishes)
        original(self, data)
        held.append((len(self.publishes), len(self.publishes) - before))
        paused.append(self.paused)

    monkeypatch.setattr(mqtt_wire._Wire, "data_received", recording)

    async def main() -> tuple[list[tuple[str, str]], list[str]]:
        app = uuid.uuid4().hex
        log: list[tuple[str, str]] = []
        config = MqttConfig(
            enabled=True, host=mosquitto.host, port=mosquitto.port, client_id=f"gw-{uuid.uuid4().hex[:8]}",
            topic=f"application/{app}/device/+/event/+", encoding="protobuf",
        )
        ingest = RecordingIngest(config, RecordingPipeline(store, log=log), batch_size=batch, log=log)
        task = asyncio.create_task(ingest.run())
        await asyncio.wait_for(ingest.connected.wait(), 15)
        msgs = uplinks(events, app, 400, aq_payload)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=f"pub-{app[:8]}") as pub:
            for topic, _dedup, body in msgs:
                await pub.publish(topic, body, qos=1)
        deadline = asyncio.get_running_loop().time() + 120  # a deadlock guard, not a timing assertion
        while sum(1 for what, _ in log if what == "ack") < len(msgs):
            assert asyncio.get_running_loop().time() < deadline, f"not all acknowledged: {len(log)} entries"
            await asyncio.sleep(0.02)
        ingest.stop()
        await asyncio.wait_for(task, 15)
        return log, [dedup for _topic, dedup, _body in msgs]

    log, published = asyncio.run(main())
    assert held, "no data was read"
    for total, brought in held:
        assert total <= bound + brought, (total, brought, bound)
    assert any(paused), "the burst never reached the bound: the test shows nothing"
    position = {entry: i for i, entry in enumerate(log)}
    for dedup in published:
        assert position[("commit", dedup)] < position[("ack", dedup)], dedup
    assert [d for what, d in log if what == "ack"] == published
    assert sorted(store.dedup_ids("up")) == sorted(published)  # nothing lost, nothing twice
