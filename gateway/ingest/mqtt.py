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


def mqtt_client(config: MqttConfig, *, client_id: str | None = None, persistent: bool = True) -> aiomqtt.Client:
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

    def __init__(self, config: MqttConfig, pipeline: Pipeline) -> None:
        self.config = config
        self.pipeline = pipeline
        self.connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self.handled = 0

    def stop(self) -> None:
        """Finish the message in hand, then leave (unacknowledged messages stay with the broker)."""
        self._stopping.set()

    async def run(self) -> None:
        backoff = _BACKOFF_MIN
        while not self._stopping.is_set():
            try:
                await self._session()
                backoff = _BACKOFF_MIN
            except (aiomqtt.MqttError, StoreError) as exc:
                # StoreError: the message in hand was not acknowledged; the broker redelivers it.
                self.connected.clear()
                log.warning(
                    "mqtt session ended, retrying",
                    extra={"broker": f"{self.config.host}:{self.config.port}", "error": str(exc), "retry_s": backoff},
                )
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
            log.info("mqtt subscribed", extra={"subscription": self.config.subscription, "client_id": self.config.client_id})
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
                message = next_message.result()
                await self._handle(message)
                if message.qos > 0:
                    client._client.ack(message.mid, message.qos)
                self.handled += 1

    async def _handle(self, message: aiomqtt.Message) -> Result:
        topic = str(message.topic)
        payload = message.payload
        body = payload if isinstance(payload, bytes | bytearray) else str(payload if payload is not None else "").encode()
        try:
            _app, dev_eui, kind = parse_mqtt_topic(topic)
        except DecodeError as exc:
            return await asyncio.to_thread(self._dead, str(exc), bytes(body))
        # The store call blocks on fsync: run it off the event loop. It completes even if we are
        # cancelled meanwhile (threads are not interruptible); the PUBACK then is not sent and the
        # broker redelivers, which the store recognises as a duplicate.
        return await asyncio.to_thread(
            self.pipeline.handle, kind, bytes(body), self.config.encoding, "mqtt", dev_eui_hint=dev_eui
        )

    def _dead(self, reason: str, body: bytes) -> Result:
        self.pipeline.store.dead_letter("mqtt", f"mqtt: {reason}", body)
        self.pipeline.metrics.inc("citynode_dead_letters_total", source="mqtt")
        return Result("unknown", "dead_letter", reason=reason)
