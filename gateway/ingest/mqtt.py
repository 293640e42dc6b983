"""ChirpStack's MQTT integration: subscribe, store, then acknowledge.

* Topic ``application/+/device/+/event/+`` at QoS 1 (configurable), or the shared subscription
  ``$share/<group>/application/+/device/+/event/+`` so that several gateway instances split the stream
  (each message goes to one member of the group; MQTT 5.0 4.8.2, also honoured by mosquitto for 3.1.1
  clients).
* A persistent session: MQTT 3.1.1 ``clean_session=0`` under a stable client id (3.1.2.4), so the
  broker queues QoS 1 messages while the gateway is down and redelivers unacknowledged ones.
* Manual acknowledgement: paho's automatic PUBACK would be sent as soon as a message is read off the
  socket; here it is sent after :meth:`Pipeline.handle` has committed the event. Messages are handled
  one at a time, so PUBACKs keep the order of their PUBLISHes (MQTT 3.1.1 4.6).
* Group commit: the messages already received when one is taken (up to ``batch_size``) are stored in
  one transaction and acknowledged together after its commit.
* Reconnects with exponential back-off (1 s to 30 s) after a broker restart or a network failure.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

import aiomqtt

from gateway.chirpstack import parse_mqtt_topic
from gateway.config import MqttConfig, TlsConfig
from gateway.errors import DecodeError
from gateway.pipeline import Pipeline, Result
from gateway.store import StoreError

__all__ = ["MqttIngest", "mqtt_client", "tls_context"]

log = logging.getLogger("citynode.ingest.mqtt")

_BACKOFF_MIN = 1.0  # s
_BACKOFF_MAX = 30.0  # s


def tls_context(tls: TlsConfig | None) -> ssl.SSLContext | None:
    """An SSL context verifying the broker against ``tls.ca`` (system CAs when unset), with a client cert."""
    if tls is None:
        return None
    ctx = ssl.create_default_context(cafile=tls.ca)
    if tls.cert and tls.key:
        ctx.load_cert_chain(tls.cert, tls.key)
    if tls.insecure:
        ctx.check_hostname = False
    return ctx


def mqtt_client(
    config: MqttConfig, *, client_id: str | None = None, persistent: bool = True
) -> aiomqtt.Client:
    """An aiomqtt client for ``config`` (not yet connected; use ``async with``)."""
    return aiomqtt.Client(
        config.host,
        config.port,
        username=config.username.get() or None,
        password=config.password.get() or None,
        identifier=client_id or config.client_id,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=not persistent,
        keepalive=config.keepalive,
        tls_context=tls_context(config.tls),
        tls_insecure=config.tls.insecure if config.tls else None,
        timeout=10,
    )


class MqttIngest:
    """Consumes ChirpStack events from an MQTT broker into the pipeline until :meth:`stop` or cancellation."""

    def __init__(self, config: MqttConfig, pipeline: Pipeline, *, batch_size: int = 200) -> None:
        self.config = config
        self.pipeline = pipeline
        self.connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self.handled = 0
        self.batch_size = batch_size

    def stop(self) -> None:
        """Finish the message in hand, then leave (unacknowledged messages stay with the broker)."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; reconnect with back-off after any failure."""
        backoff = _BACKOFF_MIN
        while not self._stopping.is_set():
            try:
                await self._session()
                backoff = _BACKOFF_MIN
            except Exception as exc:
                # The message in hand was not acknowledged: the broker redelivers it.
                self.connected.clear()
                if isinstance(exc, (aiomqtt.MqttError, StoreError)):
                    log.warning(
                        "mqtt session ended, retrying",
                        extra={
                            "broker": f"{self.config.host}:{self.config.port}",
                            "error": str(exc),
                            "retry_s": backoff,
                        },
                    )
                else:  # a bug, not bad input (bad input becomes dead letters): say so loudly
                    log.exception("mqtt ingest failed unexpectedly, retrying", extra={"retry_s": backoff})
                try:
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, _BACKOFF_MAX)
        self.connected.clear()

    async def _session(self) -> None:
        client = mqtt_client(self.config)
        # paho-mqtt 2.x: PUBACK only when we call ack(); set before connecting.
        client._client.manual_ack_set(True)
        async with client:
            await client.subscribe(self.config.subscription, qos=self.config.qos)
            self.connected.set()
            log.info(
                "mqtt subscribed",
                extra={"subscription": self.config.subscription, "client_id": self.config.client_id},
            )
            messages = aiter(client.messages)
            while not self._stopping.is_set():
                next_message = asyncio.ensure_future(anext(messages))
                stopping = asyncio.ensure_future(self._stopping.wait())
                done, _ = await asyncio.wait({next_message, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if next_message not in done:
                    next_message.cancel()
                    stopping.cancel()
                    break
                stopping.cancel()
                batch = [next_message.result()]
                # Group commit: take what paho has already read off the socket (no waiting).
                while len(client.messages) and len(batch) < self.batch_size:
                    batch.append(await anext(messages))
                # The store call blocks on fsync: run it off the event loop. It completes even if we
                # are cancelled meanwhile (threads are not interruptible); the PUBACKs then are not
                # sent and the broker redelivers, which the store recognises as duplicates.
                await asyncio.to_thread(self._handle_batch, batch)
                for message in batch:  # in arrival order (MQTT 3.1.1 4.6)
                    if message.qos > 0:
                        client._client.ack(message.mid, message.qos)
                self.handled += len(batch)

    def _handle_batch(self, batch: list[aiomqtt.Message]) -> list[Result]:
        with self.pipeline.store.batch():
            return [self._handle(message) for message in batch]

    def _handle(self, message: aiomqtt.Message) -> Result:
        topic = str(message.topic)
        payload = message.payload
        body = (
            payload
            if isinstance(payload, bytes | bytearray)
            else str(payload if payload is not None else "").encode()
        )
        try:
            _app, dev_eui, kind = parse_mqtt_topic(topic)
        except DecodeError as exc:
            self.pipeline.store.dead_letter("mqtt", f"mqtt: {exc}", bytes(body))
            self.pipeline.metrics.inc("citynode_dead_letters_total", source="mqtt")
            return Result("unknown", "dead_letter", reason=str(exc))
        return self.pipeline.handle(kind, bytes(body), self.config.encoding, "mqtt", dev_eui_hint=dev_eui)
