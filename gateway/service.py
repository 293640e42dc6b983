"""``citynode gateway serve``: the long-running service, its lifetime and its logs.

:class:`GatewayService` owns everything that runs: the store, the pipeline, the aiohttp server (HTTP
ingest + read API + ``/health`` + ``/metrics``), the MQTT and AMQP ingests and any extra workers (the
sink delivery workers register through ``worker_factories``). Start and stop it with ``async with``.

Shutdown order on SIGINT/SIGTERM (graceful): the ingests stop taking new events and finish the one in
hand (an unacknowledged event stays with the broker and is redelivered, then de-duplicated); the HTTP
server stops accepting and lets running requests finish; workers are cancelled (their outbox is on
disk); the store is closed last.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.api import Api, store_samples
from gateway.config import Config, LogConfig
from gateway.ingest.http import ChirpStackHttpIngest
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.store import Store

__all__ = ["GatewayService", "JsonFormatter", "WorkerFactory", "configure_logging", "serve"]

log = logging.getLogger("citynode.service")

WorkerFactory = Callable[["GatewayService"], Awaitable[None]]

# LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(
            f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        )
        return f"{base} {extras}" if extras else base


def configure_logging(config: LogConfig, stream: Any = None) -> None:
    """Root logging for the service: text or JSON lines on stderr. Never logs payload bytes or secrets:
    the modules log hex payloads in dead-letter reasons only, and secrets are :class:`Secret` values."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class GatewayService:
    """Everything ``serve`` runs, as one async context manager."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        worker_factories: list[WorkerFactory] | None = None,
    ) -> None:
        self.config = config
        self._own_store = store is None
        self.store = store
        self.metrics = Metrics()
        self.pipeline: Pipeline | None = None
        self.app: web.Application | None = None
        self.http_ingest: ChirpStackHttpIngest | None = None
        self.ingests: list[Any] = []
        self.worker_factories = list(worker_factories or [])
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self.http_port: int | None = None

    async def __aenter__(self) -> GatewayService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        cfg = self.config
        if self.store is None:
            self.store = await asyncio.to_thread(
                Store.open, cfg.store.path, synchronous=cfg.store.synchronous
            )
        self.metrics.add_collector(store_samples(self.store))
        self.pipeline = Pipeline(self.store, cfg.decode, self.metrics)
        checks: dict[str, Callable[[], str | None]] = {}

        if cfg.mqtt.enabled:
            from gateway.ingest.mqtt import MqttIngest

            mqtt = MqttIngest(cfg.mqtt, self.pipeline, batch_size=cfg.mqtt.batch)
            self.ingests.append(mqtt)
            checks["mqtt"] = lambda: None if mqtt.connected.is_set() else "not connected to the broker"
            if cfg.mqtt.processes > 1:
                from gateway.ingest.processes import MqttWorkers

                workers = MqttWorkers(cfg, cfg.mqtt.processes - 1)
                self.ingests.append(workers)
                self.metrics.add_counter_source(workers.counters)
                checks["mqtt processes"] = workers.health
        if cfg.amqp.enabled:
            from gateway.ingest.amqp import AmqpIngest

            amqp = AmqpIngest(cfg.amqp, self.pipeline)
            self.ingests.append(amqp)
            checks["amqp"] = lambda: None if amqp.connected.is_set() else "not connected to RabbitMQ"

        if cfg.http.enabled:
            self.app = web.Application(client_max_size=cfg.http.max_body)
            if cfg.http.ingest:
                self.http_ingest = ChirpStackHttpIngest(cfg.http, self.pipeline)
                self.http_ingest.add_routes(self.app)
                if not (cfg.http.token or cfg.http.secret):
                    log.warning("http ingest accepts unauthenticated requests: set http.token or http.secret")
            Api(
                self.store, self.metrics, api_token=cfg.http.api_token.get(), health_checks=checks
            ).add_routes(self.app)
            self._runner = web.AppRunner(self.app, shutdown_timeout=30.0, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, cfg.http.host, cfg.http.port)
            await site.start()
            sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
            self.http_port = sockets[0].getsockname()[1] if sockets else cfg.http.port
            log.info("http listening", extra={"host": cfg.http.host, "port": self.http_port})

        for ingest in self.ingests:
            self._tasks.append(asyncio.create_task(ingest.run(), name=type(ingest).__name__))
        for factory in self.worker_factories:
            self._workers.append(asyncio.create_task(factory(self)))  # type: ignore[arg-type]

    async def stop(self) -> None:
        for ingest in self.ingests:
            ingest.stop()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=30)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("ingest failed", exc_info=task.exception())
        if self._runner is not None:
            await self._runner.cleanup()  # stops accepting, waits for running requests
            self._runner = None
        for task in self._workers:
            task.cancel()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._tasks.clear()
        self._workers.clear()
        if self._own_store and self.store is not None:
            self.store.close()
            self.store = None


# Young-generation collections: every this many container allocations (CPython's default is 700).
_GC_GEN0_THRESHOLD = 20_000


def _settle_garbage_collector() -> None:
    """Keep the garbage collector off the ingest's hot path (about 7 µs of CPU per uplink).

    What exists once the service runs (modules, the protobuf descriptors, the codec schema, about
    90,000 objects) lives as long as the process: ``gc.freeze`` takes it out of every later
    collection. The ingest makes a few dozen short-lived containers per uplink, none in a cycle;
    collecting the young generation every 20,000 allocations instead of 700 costs a few MiB at most.
    """
    from gateway.schema import load_schema

    load_schema()  # loaded on first use otherwise: make it part of what is frozen
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


async def serve(config: Config, worker_factories: list[WorkerFactory] | None = None) -> int:
    """Run until SIGINT or SIGTERM, then shut down gracefully. Returns the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with GatewayService(config, worker_factories=worker_factories) as service:
        ingests = [type(i).__name__.removesuffix("Ingest").lower() for i in service.ingests]
        if service.http_ingest is not None:
            ingests.append("http")
        log.info(
            "gateway running",
            extra={
                "config": config.source,
                "store": service.store.path if service.store else "",
                "ingests": ",".join(ingests),
            },
        )
        _settle_garbage_collector()
        print(f"citynode gateway: ready (http port {service.http_port})", file=sys.stderr, flush=True)
        await stop.wait()
        log.info("shutting down")
    return 0
