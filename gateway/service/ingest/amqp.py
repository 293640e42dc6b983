"""ChirpStack's AMQP integration (RabbitMQ): a durable queue, manual acks after the event is stored.

ChirpStack publishes every event to the ``amq.topic`` exchange with the routing key
``application.<application id>.device.<devEui>.event.<type>``. The gateway declares a durable queue
(``amqp.queue``), binds it with ``application.*.device.*.event.*`` and consumes with a prefetch
window; each message is ``basic.ack``-ed only after :meth:`Pipeline.handle` committed it. If the
store fails the message is rejected with requeue; if the gateway dies, RabbitMQ redelivers everything
unacknowledged (AMQP 0-9-1 ``basic.ack`` semantics) and the store drops the duplicates.

Several gateway instances consuming the same queue are competing consumers: RabbitMQ hands each
message to one of them. Messages are handled in delivery order per instance so that a device's
frame counters are seen in order; the ones already delivered (up to ``prefetch``) are stored in one
transaction (group commit) and acknowledged after its commit, or all rejected with requeue if it fails.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from gateway.errors import DecodeError
from gateway.service.config import AmqpConfig
from gateway.service.ingest.events import parse_routing_key
from gateway.service.ingest.limits import check_topic, oversized
from gateway.service.ingest.reconnect import ReconnectingIngest
from gateway.service.pipeline import Pipeline, Prepared, Result
from gateway.service.store import StoreError

__all__ = ["AmqpIngest"]

log = logging.getLogger("citynode.ingest.amqp")



class AmqpIngest(ReconnectingIngest):
    """Consumes ChirpStack events from RabbitMQ into the pipeline until :meth:`stop` or cancellation."""

    label = "amqp"
    expected_errors = (aio_pika.exceptions.AMQPException, OSError)

    def __init__(self, config: AmqpConfig, pipeline: Pipeline, *, batch_size: int = 200) -> None:
        super().__init__(log)
        self.config = config
        self.pipeline = pipeline
        self.batch_size = batch_size

    def broker_name(self) -> str:
        return "RabbitMQ"

    async def _session(self) -> None:
        connection = await aio_pika.connect(self.config.url.get(), timeout=10)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.config.prefetch)
            exchange = await channel.get_exchange(self.config.exchange, ensure=True)
            queue = await channel.declare_queue(self.config.queue, durable=True)
            await queue.bind(exchange, routing_key=self.config.routing_key)
            self.connected.set()
            self.broker_error = None
            log.info(
                "amqp consuming", extra={"queue": self.config.queue, "routing_key": self.config.routing_key}
            )
            async with queue.iterator() as messages:
                while not self._stopping.is_set():
                    next_message = asyncio.ensure_future(messages.__anext__())
                    stopping = asyncio.ensure_future(self._stopping.wait())
                    done, _ = await asyncio.wait(
                        {next_message, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    stopping.cancel()
                    if next_message not in done:
                        next_message.cancel()
                        break
                    batch = [next_message.result()]
                    # Group commit: take what RabbitMQ has already delivered (at most ``prefetch``,
                    # held in aio-pika's iterator buffer), without waiting for more.
                    delivered = getattr(messages, "_queue", None)
                    while delivered is not None and not delivered.empty() and len(batch) < self.batch_size:
                        batch.append(await messages.__anext__())
                    try:
                        await asyncio.to_thread(self._handle_batch, batch)
                    except StoreError:
                        for message in batch:
                            await message.reject(requeue=True)
                        raise
                    # basic.ack only after the commit. One frame for the batch: ``multiple`` acknowledges
                    # every delivery up to this tag on the channel (AMQP 0-9-1 basic.ack), and the batch
                    # is exactly the deliveries after the previous batch, in delivery order.
                    await batch[-1].ack(multiple=True)
                    self.handled += len(batch)
                    self.store_error = None

    def _handle_batch(self, batch: list[AbstractIncomingMessage]) -> list[Result]:
        """Prepare every message, then store them all in one transaction (one fsync)."""
        prepared = [self._prepare(message) for message in batch]
        try:
            return self.pipeline.commit_many(prepared)
        except StoreError:
            raise
        except Exception as exc:  # e.g. sqlite3.OperationalError escaping the store: still the store
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def _prepare(self, message: AbstractIncomingMessage) -> Prepared:
        body = bytes(message.body)
        try:
            _app, dev_eui, kind = parse_routing_key(message.routing_key or "")
        except DecodeError as exc:
            if len(body) > self.config.max_message:
                return oversized("amqp", "unknown", body, self.config.max_message, None)
            return Prepared("unknown", "amqp", body, datetime.now(UTC), dead=(str(exc), body, None))
        if len(body) > self.config.max_message:
            return oversized("amqp", kind, body, self.config.max_message, dev_eui)
        prepared = self.pipeline.prepare(kind, body, self.config.encoding, "amqp", dev_eui_hint=dev_eui)
        return check_topic(prepared, dev_eui, kind)
