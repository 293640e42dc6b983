"""MQTT republish sink: normalised JSON for anything that is neither NGSI-LD nor SensorThings.

One message per uplink and reading time (not per field), on ``<topic_prefix>/<devEui>/<message type>``,
QoS 1: a subscriber gets the values that were measured together in one message, the topic still lets it
pick devices and roles with wildcards (``citynode/readings/+/air_quality``), and the broker handles a
fifth of the messages a per-field scheme would need. Payload::

    {"devEui": "70b3d57ed0000001", "deviceName": "aq-1", "type": "air_quality",
     "time": "2026-05-04T12:00:00.000Z", "deduplicationId": "...", "fCnt": 42, "tags": {...},
     "readings": {"temperature": {"value": 21.5, "unit": "°C", "unitCode": "CEL"}, ...}}

``publish`` with QoS 1 returns when the broker's PUBACK arrived (MQTT 3.1.1 section 4.3.2), so a
delivered row really reached the broker. Connection problems are retryable; if a batch breaks off
midway, the messages already acknowledged count as delivered and only the rest is sent again.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from gateway.contract.records import Reading
from gateway.errors import SinkError
from gateway.service.config import Secret
from gateway.service.sinks.base import DeliveryResult, Row, RowFailure, Sink, group_uplinks, isoformat_utc

__all__ = ["MqttSink", "MqttSinkConfig", "uplink_message"]


@dataclass(frozen=True)
class MqttSinkConfig:
    """``[sinks.mqtt]`` in the gateway's TOML file (the MQTT ingest's is ``gateway.service.config.MqttConfig``)."""

    host: str
    port: int = 1883
    name: str = "mqtt"
    topic_prefix: str = "citynode/readings"
    username: Secret = field(default_factory=Secret)
    password: Secret = field(default_factory=Secret)
    tls: bool = False
    ca_file: str | None = None  # CA bundle for the broker's certificate (default: system CAs)
    client_id: str | None = None  # default: citynode-sink-<random>
    qos: int = 1
    retain: bool = False
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        # Secrets are Secret values (never shown by repr); plain strings are taken too.
        for name in ("username", "password"):
            object.__setattr__(self, name, Secret.of(getattr(self, name)))


def uplink_message(group: Sequence[Reading]) -> dict[str, Any]:
    """The JSON document for the readings of one uplink and time."""
    first = group[0]
    return {
        "devEui": first.dev_eui,
        "deviceName": first.device_name,
        "type": first.message_type,
        "time": isoformat_utc(first.time),
        "deduplicationId": first.deduplication_id,
        "fCnt": first.f_cnt,
        "tags": dict(first.tags),
        "readings": {r.field: {"value": r.value, "unit": r.unit, "unitCode": r.unit_code} for r in group},
    }


class MqttSink(Sink):
    """Publishes one normalised JSON message per uplink to an MQTT broker (aiomqtt)."""

    def __init__(self, config: MqttSinkConfig) -> None:
        if config.qos not in (0, 1, 2):
            raise ValueError(f"sinks.mqtt.qos must be 0, 1 or 2, not {config.qos}")
        self.config = config
        self.name = config.name
        self._client: aiomqtt.Client | None = None

    def topic(self, reading: Reading) -> str:
        return f"{self.config.topic_prefix.rstrip('/')}/{reading.dev_eui}/{reading.message_type}"

    async def _connect(self) -> aiomqtt.Client:
        if self._client is not None:
            return self._client
        c = self.config
        tls_context = None
        if c.tls:
            tls_context = ssl.create_default_context(cafile=c.ca_file)
        client = aiomqtt.Client(
            c.host, c.port, username=c.username.get() or None, password=c.password.get() or None,
            identifier=c.client_id or f"citynode-sink-{uuid.uuid4().hex[:12]}",
            tls_context=tls_context, timeout=c.timeout_s,
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise SinkError(f"MQTT sink cannot connect to {c.host}:{c.port}: {exc}", retryable=True) from exc
        self._client = client
        return client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass  # the connection was already gone

    async def deliver(self, batch: Sequence[Row]) -> DeliveryResult:
        client = await self._connect()
        failures: list[RowFailure] = []
        groups = group_uplinks(batch)
        for n, group in enumerate(groups):
            ids = [rid for rid, _ in group]
            readings = [r for _, r in group]
            try:
                payload = json.dumps(uplink_message(readings), ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                failures.extend(RowFailure(rid, f"reading cannot be written as JSON: {exc}") for rid in ids)
                continue
            try:
                await client.publish(self.topic(readings[0]), payload.encode(), qos=self.config.qos,
                                     retain=self.config.retain, timeout=self.config.timeout_s)
            except aiomqtt.MqttError as exc:
                await self.aclose()  # reconnect on the next attempt
                reason = f"MQTT publish to {self.config.host}:{self.config.port} failed: {exc}"
                if n == 0 and not failures:
                    raise SinkError(reason, retryable=True) from exc
                failures.extend(RowFailure(rid, reason, retryable=True)
                                for later in groups[n:] for rid, _ in later)
                break
        return DeliveryResult(tuple(failures))
