"""AMQP ingest against the machine's RabbitMQ: durable queue, ack after store, competing consumers.

Each test uses its own queue (and application id in the binding) and deletes the queue afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import aio_pika
import pytest

from gateway.service.config import AmqpConfig, Secret
from gateway.service.ingest.amqp import AmqpIngest
from gateway.service.pipeline import Pipeline
from gateway.service.store import StoreError

pytestmark = pytest.mark.amqp

URL = "amqp://guest:guest@127.0.0.1:5672/"


async def until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def amqp_setup():
    """A unique application id and queue; the queue is deleted after the test."""
    app = uuid.uuid4().hex
    cfg = AmqpConfig(
        enabled=True,
        url=Secret(URL),
        queue=f"citynode-test-{app[:12]}",
        routing_key=f"application.{app}.device.*.event.*",
        prefetch=10,
    )
    yield app, cfg

    async def delete():
        conn = await aio_pika.connect(URL)
        async with conn:
            channel = await conn.channel()
            await channel.queue_delete(cfg.queue)

    asyncio.run(delete())


async def publish(app, items):
    """Publish like ChirpStack's AMQP integration: amq.topic, routing key per event."""
    conn = await aio_pika.connect(URL)
    async with conn:
        channel = await conn.channel()
        exchange = await channel.get_exchange("amq.topic")
        for dev_eui, kind, body in items:
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=f"application.{app}.device.{dev_eui}.event.{kind}",
            )


def ups(events, n, encoding, aq_payload, start=1, app="x"):
    return [
        (
            "0004a30b001c0530",
            "up",
            events.body(events.up(f_cnt=i, data=aq_payload(), dedup=f"{app}-{i}"), encoding),
        )
        for i in range(start, start + n)
    ]


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_events_arrive_decoded_and_are_acked(amqp_setup, store, events, aq_payload, encoding):
    app, cfg = amqp_setup
    cfg = replace(cfg, encoding=encoding)

    async def main():
        ingest = AmqpIngest(cfg, Pipeline(store))
        task = asyncio.create_task(ingest.run())
        await asyncio.wait_for(ingest.connected.wait(), 15)
        await publish(
            app,
            ups(events, 15, encoding, aq_payload, app=app)
            + [
                ("0004a30b001c0530", "up", b"\x07random"),
                ("0004a30b001c0530", "status", events.body(events.status(), encoding)),
            ],
        )
        await until(lambda: ingest.handled == 17, what="17 messages")
        ingest.stop()
        await asyncio.wait_for(task, 15)
        # nothing left unacknowledged in the queue
        conn = await aio_pika.connect(URL)
        async with conn:
            q = await (await conn.channel()).declare_queue(cfg.queue, durable=True, passive=True)
            return q.declaration_result.message_count

    assert asyncio.run(main()) == 0
    assert store.event_count("up") == 15 and store.event_count("status") == 1
    assert len(store.readings(field="pm10")) == 15
    [dl] = store.dead_letters()
    assert dl.source == "amqp" and dl.raw == b"\x07random"


def test_store_failure_requeues_and_nothing_is_lost_or_duplicated(amqp_setup, store, events, aq_payload):
    app, cfg = amqp_setup

    class FlakyPipeline(Pipeline):
        failures = 3

        def handle(self, *args, **kwargs):
            if self.failures:
                self.failures -= 1
                raise StoreError("disk full (simulated)")
            return super().handle(*args, **kwargs)

    async def main():
        ingest = AmqpIngest(cfg, FlakyPipeline(store))
        ingest.backoff_min = 0.05  # keep the test fast: reconnect quickly after each simulated failure
        task = asyncio.create_task(ingest.run())
        await asyncio.wait_for(ingest.connected.wait(), 15)
        await publish(app, ups(events, 10, "json", aq_payload, app=app))
        await until(lambda: store.event_count("up") == 10, what="all 10 after requeues")
        ingest.stop()
        await asyncio.wait_for(task, 15)

    asyncio.run(main())
    assert sorted(store.dedup_ids()) == sorted(f"{app}-{i}" for i in range(1, 11))


def test_competing_consumers_share_one_durable_queue(amqp_setup, store, events, aq_payload):
    app, cfg = amqp_setup
    cfg = replace(cfg, prefetch=1)

    async def main():
        a, b = AmqpIngest(cfg, Pipeline(store)), AmqpIngest(cfg, Pipeline(store))
        tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
        await asyncio.wait_for(a.connected.wait(), 15)
        await asyncio.wait_for(b.connected.wait(), 15)
        await publish(app, ups(events, 40, "json", aq_payload, app=app))
        await until(lambda: a.handled + b.handled == 40, what="40 across both")
        a.stop()
        b.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        return a.handled, b.handled

    handled = asyncio.run(main())
    assert sum(handled) == 40 and all(handled)
    assert store.event_count("up") == 40


def test_service_with_amqp_ingest_reports_health_and_stores(amqp_setup, tmp_path, events, aq_payload):
    import aiohttp

    from gateway.service.app import GatewayService
    from gateway.service.config import parse_config

    app, cfg = amqp_setup
    config = parse_config(
        {
            "store": {"path": str(tmp_path / "g.sqlite")},
            "http": {"port": 0, "ingest": False},
            "amqp": {"enabled": True, "queue": cfg.queue, "routing_key": cfg.routing_key},
        }
    )

    async def main():
        async with GatewayService(config) as svc:
            [ingest] = svc.ingests
            await asyncio.wait_for(ingest.connected.wait(), 15)
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{svc.http_port}/health") as r:
                assert r.status == 200
            await publish(app, ups(events, 5, "json", aq_payload, app=app))
            await until(lambda: svc.store.event_count("up") == 5, what="5 via the service")

    asyncio.run(main())
