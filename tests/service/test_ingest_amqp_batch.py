"""AMQP ingest with group commit keeps the guarantees: the messages RabbitMQ already delivered are
stored in one transaction and ``basic.ack``-ed only after it committed; when the commit fails they
are all rejected with requeue, come back, and are stored exactly once. Runs against the machine's
RabbitMQ (127.0.0.1:5672)."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

from gateway.service.config import AmqpConfig, Secret
from gateway.service.ingest.amqp import AmqpIngest
from gateway.service.pipeline import Pipeline, Prepared, Result
from gateway.service.store import StoreError

pytestmark = pytest.mark.amqp

URL = "amqp://guest:guest@127.0.0.1:5672/"


class FailingOncePipeline(Pipeline):
    """Fails its first commit (a full disk), then records the size of every committed batch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.failed: list[str] = []
        self.batches: list[int] = []

    def commit_many(self, prepared: list[Prepared]) -> list[Result]:
        if not self.failed:
            self.failed = [p.uplink.deduplication_id for p in prepared if p.uplink]
            raise StoreError("disk full (simulated)")
        results = super().commit_many(prepared)
        self.batches.append(len(results))
        return results


def test_failed_batch_is_requeued_and_stored_exactly_once(store, events, aq_payload):
    app = uuid.uuid4().hex
    cfg = AmqpConfig(
        enabled=True,
        url=Secret(URL),
        queue=f"citynode-test-{app[:12]}",
        routing_key=f"application.{app}.device.*.event.*",
        prefetch=50,
        encoding="protobuf",
    )
    bodies = [
        (f"{app}-{i}", events.body(events.up(f_cnt=i, data=aq_payload(), dedup=f"{app}-{i}"), "protobuf"))
        for i in range(1, 151)
    ]

    async def main() -> None:
        pipeline = FailingOncePipeline(store)
        ingest = AmqpIngest(cfg, pipeline)
        task = asyncio.create_task(ingest.run())
        await asyncio.wait_for(ingest.connected.wait(), 15)
        conn = await aio_pika.connect(URL)
        async with conn:
            channel = await conn.channel()
            exchange = await channel.get_exchange("amq.topic")
            for _dedup, body in bodies:
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=f"application.{app}.device.0004a30b001c0530.event.up",
                )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60  # a deadlock guard, not a timing assertion
        while ingest.handled < len(bodies):
            assert loop.time() < deadline, f"handled {ingest.handled} of {len(bodies)}"
            await asyncio.sleep(0.02)
        ingest.stop()
        await asyncio.wait_for(task, 15)
        conn = await aio_pika.connect(URL)
        async with conn:
            channel = await conn.channel()
            queue = await channel.declare_queue(cfg.queue, durable=True)
            assert queue.declaration_result.message_count == 0  # everything acknowledged
            await channel.queue_delete(cfg.queue)
        assert pipeline.failed, "the first commit should have failed"
        assert sum(pipeline.batches) == len(bodies)

    asyncio.run(main())
    assert sorted(store.dedup_ids("up")) == sorted(d for d, _ in bodies)  # nothing lost, nothing twice
