"""Ingest: ChirpStack's MQTT, HTTP and AMQP integrations feeding :class:`gateway.service.pipeline.Pipeline`.

Each ingest acknowledges an event (MQTT PUBACK, HTTP 200, AMQP basic.ack) only after the pipeline
has committed it to the store, so a crash at any point means redelivery, and redelivery is harmless
because the store de-duplicates by ChirpStack's ``deduplicationId``.
"""

from __future__ import annotations

__all__ = ["amqp", "http", "mqtt"]
