"""ChirpStack's MQTT integration: subscribe, store, then acknowledge.

* Topic ``application/+/device/+/event/+`` at QoS 1 (configurable), or the shared subscription
  ``$share/<group>/application/+/device/+/event/+`` so that several gateway instances split the stream
  (each message goes to one member of the group; MQTT 5.0 4.8.2, also honoured by mosquitto for 3.1.1
  clients).
* A persistent session: MQTT 3.1.1 ``clean_session=0`` under a stable client id (3.1.2.4), so the
  broker queues QoS 1 messages while the gateway is down and redelivers unacknowledged ones.
* Acknowledgement after storage: PUBACK (QoS 1) or PUBREC (QoS 2) is sent only after the store has
  committed the event, and in the order the PUBLISHes arrived (MQTT 3.1.1 4.6).
* Group commit: the messages already received when one is taken (up to ``batch_size``) are stored in
  one transaction and acknowledged together after its commit. The next batch is parsed and decoded
  while the previous one commits (see :meth:`MqttIngest._consume`).
* The connection is :class:`gateway.service.ingest.mqtt_wire.MqttConnection`, a lean MQTT 3.1.1 subscriber
  that parses packets in bulk (paho/aiomqtt cost about two thirds of the CPU per uplink on this path;
  see that module). :func:`mqtt_client` (aiomqtt) stays for the gateway's occasional publishes.
* Bounded read-ahead: at most :data:`READ_AHEAD_BATCHES` batches (``batch_size`` each) received and not
  yet taken; beyond that the socket is not read and the rest waits in the broker (its queue for this
  session) or in TCP's buffers. Without the bound a burst filled the process with every message the
  broker delivered ahead of the store (up to 13,900 of a burst of 20,000 in bench/memory.py, with
  mosquitto's ``max_inflight_messages 1000``; ~25 MiB more peak RSS).
* Reconnects with exponential back-off (1 s to 30 s) after a broker restart or a network failure.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.errors import DecodeError
from gateway.service.config import MqttConfig, TlsConfig
from gateway.service.ingest.events import parse_mqtt_topic
from gateway.service.ingest.limits import check_topic, oversized
from gateway.service.ingest.mqtt_wire import MqttConnection, MqttError, Publish
from gateway.service.ingest.reconnect import ReconnectingIngest
from gateway.service.pipeline import Pipeline, Prepared, Result
from gateway.service.store import StoreError

if TYPE_CHECKING:
    import aiomqtt

__all__ = ["READ_AHEAD_BATCHES", "MqttIngest", "mqtt_client", "tls_context"]

log = logging.getLogger("citynode.ingest.mqtt")

# Messages read off the socket ahead of the store, in batches: enough that a batch is always ready
# when the previous commit returns, few enough that a burst does not pile up in the process.
READ_AHEAD_BATCHES = 4


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
    """An aiomqtt client for ``config`` (not yet connected; use ``async with``). aiomqtt (and paho) are
    imported here, for the gateway's occasional publishes: the ingest's hot path does not use them."""
    import aiomqtt

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


def _commit(pipeline: Pipeline, prepared: list[Prepared]) -> list[Result]:
    """:meth:`Pipeline.commit_many`, any failure of it reported as the store's (what /health names)."""
    try:
        return pipeline.commit_many(prepared)
    except StoreError:
        raise
    except Exception as exc:  # e.g. sqlite3.OperationalError escaping the store: still the store
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc


class MqttIngest(ReconnectingIngest):
    """Consumes ChirpStack events from an MQTT broker into the pipeline until :meth:`stop` or cancellation."""

    label = "mqtt"
    expected_errors = (MqttError, OSError)  # the session runs on mqtt_wire only

    def __init__(
        self,
        config: MqttConfig,
        pipeline: Pipeline,
        *,
        batch_size: int = 500,
        warnings: dict[str, str] | None = None,
    ) -> None:
        super().__init__(log)
        self.config = config
        # Shown by /health: the broker lost this gateway's session (see _session).
        self.warnings: dict[str, str] = warnings if warnings is not None else {}
        self._subscribed_before = False
        self.pipeline = pipeline
        self.batch_size = batch_size

    def broker_name(self) -> str:
        return f"the broker {self.config.host}:{self.config.port}"

    def log_extra(self) -> dict[str, str]:
        return {"broker": f"{self.config.host}:{self.config.port}"}

    async def _session(self) -> None:
        c = self.config
        conn = await MqttConnection.open(
            c.host,
            c.port,
            client_id=c.client_id,
            clean_session=False,
            keepalive=c.keepalive,
            username=c.username.get() or None,
            password=c.password.get() or None,
            tls=tls_context(c.tls),
            timeout=10,
            max_pending=READ_AHEAD_BATCHES * self.batch_size,
        )
        try:
            await conn.subscribe(c.subscription, c.qos)
            if self._subscribed_before and not conn.session_present:
                # The broker forgot the session it kept for us (restarted without persistence, or
                # the session expired): what it received between its start and this subscription
                # was queued for nobody. Nothing the gateway can recover; say so, once per loss.
                text = (
                    f"the broker lost this gateway's session (at {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}): "
                    "events published between its restart and this re-subscription are lost; run "
                    "mosquitto with persistence true"
                )
                self.warnings["mqtt session"] = text
                log.warning("mqtt session lost by the broker", extra={"warning": text})
            self._subscribed_before = True
            self.connected.set()
            self.broker_error = None
            log.info(
                "mqtt subscribed",
                extra={
                    "subscription": c.subscription,
                    "client_id": c.client_id,
                    "session_present": conn.session_present,
                },
            )
            await self._consume(conn)
        finally:
            await conn.close()

    async def _consume(self, conn: MqttConnection) -> None:
        """Receive, prepare, commit, acknowledge; two batches in flight.

        While batch k is being committed (SQLite, which releases the GIL) batch k+1 is parsed, decoded
        and normalised; batch k is acknowledged once its commit returned, before batch k+1 is
        committed, so acknowledgements keep the order of the PUBLISHes (MQTT 3.1.1 4.6) and nothing is
        acknowledged before it is on disk. If the session ends with a batch not committed, its
        messages are not acknowledged and the broker redelivers them (de-duplicated by the store).
        """
        stopping = asyncio.ensure_future(self._stopping.wait())
        receiving: asyncio.Future[list[Publish]] | None = None
        in_flight: tuple[list[Publish], asyncio.Future[list[Result]]] | None = None
        try:
            while True:
                if receiving is None:
                    receiving = asyncio.ensure_future(conn.receive(self.batch_size))
                waits: set[asyncio.Future[Any]] = {receiving, stopping}
                if in_flight is not None:
                    waits.add(in_flight[1])
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if in_flight is not None and in_flight[1] in done:
                    self._ack(conn, in_flight[0], in_flight[1].result())  # StoreError ends the session
                    in_flight = None
                if stopping in done:
                    break
                if receiving not in done:
                    continue
                # Group commit: everything already read off the socket (up to batch_size), no waiting.
                batch = receiving.result()  # MqttError (connection lost) ends the session
                receiving = None
                prepared = await asyncio.to_thread(self._prepare_batch, batch)
                if in_flight is not None:
                    self._ack(conn, in_flight[0], await in_flight[1])
                    in_flight = None
                # The store call blocks on fsync: run it off the event loop. It completes even if we
                # are cancelled meanwhile (threads are not interruptible); the acknowledgements then
                # are not sent and the broker redelivers, which the store recognises as duplicates.
                commit = asyncio.ensure_future(asyncio.to_thread(_commit, self.pipeline, prepared))
                in_flight = (batch, commit)
        finally:
            stopping.cancel()
            if receiving is not None:
                receiving.cancel()
            if in_flight is not None:  # stopping: let the commit finish, then acknowledge what it kept
                results = await asyncio.shield(in_flight[1])
                if conn.error is None:
                    self._ack(conn, in_flight[0], results)

    def _ack(self, conn: MqttConnection, batch: list[Publish], results: list[Result]) -> None:
        """Acknowledge a committed batch, in arrival order (MQTT 3.1.1 4.6)."""
        conn.ack(batch)
        self.handled += len(batch)
        self.store_error = None

    def _prepare_batch(self, batch: list[Publish]) -> list[Prepared]:
        return [self._prepare(message) for message in batch]

    def _prepare(self, message: Publish) -> Prepared:
        payload = message.payload
        try:
            _app, dev_eui, kind = parse_mqtt_topic(message.topic)
        except DecodeError as exc:
            if len(payload) > self.config.max_message:
                return oversized("mqtt", "unknown", payload, self.config.max_message, None)
            return Prepared("unknown", "mqtt", payload, datetime.now(UTC), dead=(str(exc), payload, None))
        if len(payload) > self.config.max_message:
            return oversized("mqtt", kind, payload, self.config.max_message, dev_eui)
        prepared = self.pipeline.prepare(kind, payload, self.config.encoding, "mqtt", dev_eui_hint=dev_eui)
        return check_topic(prepared, dev_eui, kind)
