"""Data-platform sinks: NGSI-LD, OGC SensorThings and MQTT republish, fed by the outbox.

``gateway.sinks.base`` defines what a sink promises, ``gateway.delivery`` runs one outbox worker per
sink, and ``gateway.sinks.config.build_sinks`` turns the ``[sinks.*]`` tables of the TOML file into
sinks.
"""

from __future__ import annotations

from gateway.sinks.base import DeliveryResult, Row, RowFailure, Sink
from gateway.sinks.mqtt import MqttConfig, MqttSink
from gateway.sinks.ngsild import NgsiLdConfig, NgsiLdSink
from gateway.sinks.sensorthings import SensorThingsConfig, SensorThingsSink

__all__ = [
    "DeliveryResult",
    "MqttConfig",
    "MqttSink",
    "NgsiLdConfig",
    "NgsiLdSink",
    "Row",
    "RowFailure",
    "SensorThingsConfig",
    "SensorThingsSink",
    "Sink",
]
