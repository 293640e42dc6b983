"""Data-platform sinks: NGSI-LD, OGC SensorThings and MQTT republish, fed by the outbox.

``gateway.service.sinks.base`` defines what a sink promises, ``gateway.service.outbox`` runs one outbox worker per
sink, and ``gateway.service.sinks.config.build_sinks`` turns the ``[sinks.*]`` tables of the TOML file into
sinks. :func:`worker_factories` is the hook ``citynode gateway serve`` calls to run them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.service.sinks.base import DeliveryResult, Row, RowFailure, Sink

if TYPE_CHECKING:
    from gateway.service.sinks.mqtt import MqttSink, MqttSinkConfig
    from gateway.service.sinks.ngsild import NgsiLdConfig, NgsiLdSink
    from gateway.service.sinks.sensorthings import SensorThingsConfig, SensorThingsSink

__all__ = [
    "DeliveryResult",
    "MqttSink",
    "MqttSinkConfig",
    "NgsiLdConfig",
    "NgsiLdSink",
    "Row",
    "RowFailure",
    "SensorThingsConfig",
    "SensorThingsSink",
    "Sink",
    "served_context_url",
    "worker_factories",
]


# A sink's module (aiomqtt, aiohttp clients, the NGSI-LD models) is imported when it is used: a gateway
# with no sink configured does not carry them (bench/memory.py).
_LAZY = {
    "MqttSink": "mqtt", "MqttSinkConfig": "mqtt", "NgsiLdConfig": "ngsild", "NgsiLdSink": "ngsild",
    "SensorThingsConfig": "sensorthings", "SensorThingsSink": "sensorthings",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def served_context_url(http: Any) -> str:
    """Where this gateway's HTTP API serves the citynode JSON-LD context, as a broker would fetch it.

    ``http.host`` when it names one address, else (0.0.0.0, ::) this machine's name. Behind a proxy, or
    with the HTTP server off, set ``sinks.<name>.citynode_context_url`` instead.
    """
    from gateway.service.sinks.ngsild import DEFAULT_CITYNODE_CONTEXT_URL
    from gateway.service.sinks.ngsild_models import CITYNODE_CONTEXT_PATH

    host, port = getattr(http, "host", None), getattr(http, "port", None)
    if not host or not isinstance(port, int):
        return DEFAULT_CITYNODE_CONTEXT_URL
    if host in ("0.0.0.0", "::"):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{CITYNODE_CONTEXT_PATH}"


def worker_factories(config: Any) -> list[Callable[[Any], Awaitable[None]]]:
    """The sink delivery of a gateway ``Config`` as one worker for ``GatewayService``.

    Validates ``config.sinks`` now (a bad key fails at start-up with :class:`ConfigError`), returns no
    worker when no sink is enabled. The worker runs one outbox worker per sink on the service's store,
    adds the per-sink counters to ``/metrics`` and, when the service cancels it at shutdown, lets the
    deliveries in flight finish (bounded by the sinks' timeouts) so their cursors are saved; everything
    else stays pending in the store for the next start.
    """
    if not getattr(config, "sinks", None):
        return []  # nothing to validate or run: no sink module imported
    from gateway.service.outbox import Delivery
    from gateway.service.sinks.config import build_sinks

    specs = build_sinks(config.sinks, store_path=config.store.path,
                        citynode_context_url=served_context_url(getattr(config, "http", None)))
    if not specs:
        return []

    async def run(service: Any) -> None:
        delivery = Delivery(service.store, specs)
        service.metrics.add_collector(delivery.samples)
        for worker in delivery.workers:  # /health names a sink being retried, with the reason
            service.add_health_check(
                f"sink {worker.name}", lambda w=worker: f"failing, retrying: {w.failing}" if w.failing else None
            )
        delivery.start()
        try:
            await asyncio.Event().wait()  # until the service cancels us
        finally:
            await asyncio.shield(delivery.aclose())

    return [run]
