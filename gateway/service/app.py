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
import ipaddress
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.service.api.routes import Api, store_samples
from gateway.service.config import SHARED_SUBSCRIPTION_LOSS, Config, HttpConfig
from gateway.service.ingest.http import ChirpStackHttpIngest, ConnectionGuard, server_limits
from gateway.service.metrics import Metrics
from gateway.service.pipeline import Pipeline
from gateway.service.runtime import settle_garbage_collector
from gateway.service.store import Store

__all__ = ["GatewayService", "WorkerFactory", "open_routes", "serve"]

log = logging.getLogger("citynode.service")

WorkerFactory = Callable[["GatewayService"], Awaitable[None]]


def _loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name or "" (every interface)
        return False


def open_routes(http: HttpConfig) -> list[str]:
    """The routes anyone who reaches ``http.host`` may use without a token (empty on loopback)."""
    if not http.enabled or _loopback(http.host):
        return []
    routes = []
    if http.ingest and not (http.token or http.secret):
        routes.append("POST /chirpstack (ingest: set http.token or http.secret)")
    if not http.api_token:
        routes.append("/api/* (device names, tags, positions: set http.api_token)")
        routes.append("/metrics (set http.api_token)")
    return routes


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
        # name -> a function returning what is wrong (or None), for /health; see add_health_check.
        self.health_checks: dict[str, Callable[[], str | None]] = {}
        self.warnings: dict[str, str] = {}

    def add_health_check(self, name: str, check: Callable[[], str | None]) -> None:
        """Let ``/health`` answer 503 naming ``name`` while ``check()`` returns a reason (workers, sinks)."""
        self.health_checks[name] = check

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
        checks = self.health_checks
        # Said at start-up and in every /health answer: configurations that work but are unsafe.
        routes = open_routes(cfg.http)
        if routes:
            self.warnings["http"] = (
                f"listening on {cfg.http.host}, beyond loopback, with open routes: " + "; ".join(routes)
            )
        if cfg.mqtt.enabled and cfg.mqtt.shared_group:
            self.warnings["mqtt"] = SHARED_SUBSCRIPTION_LOSS.replace(
                "To run it anyway, set mqtt.allow_shared_subscription_loss = true",
                "Running anyway (mqtt.allow_shared_subscription_loss = true)",
            )
        for name, text in self.warnings.items():
            log.warning("unsafe configuration", extra={"component": name, "warning": text})

        def store_writes() -> str | None:
            errors = [i.store_error for i in self.ingests if getattr(i, "store_error", None)]
            return f"writing failed: {errors[0]}" if errors else None

        checks["store"] = store_writes
        if cfg.mqtt.enabled:
            from gateway.service.ingest.mqtt import MqttIngest

            mqtt = MqttIngest(cfg.mqtt, self.pipeline, batch_size=cfg.mqtt.batch, warnings=self.warnings)
            self.ingests.append(mqtt)
            checks["mqtt"] = mqtt.problem
        if cfg.amqp.enabled:
            from gateway.service.ingest.amqp import AmqpIngest

            amqp = AmqpIngest(cfg.amqp, self.pipeline)
            self.ingests.append(amqp)
            checks["amqp"] = amqp.problem

        if cfg.http.enabled:
            guard = ConnectionGuard(cfg.http.request_timeout)
            self.app = web.Application(client_max_size=cfg.http.max_body, middlewares=[guard.middleware])
            if cfg.http.ingest:
                self.http_ingest = ChirpStackHttpIngest(cfg.http, self.pipeline)
                self.http_ingest.add_routes(self.app)
                if not (cfg.http.token or cfg.http.secret) and not routes:
                    log.warning("http ingest accepts unauthenticated requests: set http.token or http.secret")
            Api(
                self.store,
                self.metrics,
                api_token=cfg.http.api_token.get(),
                health_checks=checks,
                warnings=self.warnings,
            ).add_routes(self.app)
            self._runner = web.AppRunner(
                self.app, shutdown_timeout=30.0, access_log=None, **server_limits(cfg.http)
            )
            await self._runner.setup()
            self._workers.append(asyncio.create_task(guard.run(self._runner), name="ConnectionGuard"))
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
        settle_garbage_collector()
        # stdout, apart from the (JSON) log lines on stderr: a supervisor or script waits for this line
        print(f"citynode gateway: ready (http port {service.http_port})", flush=True)
        await stop.wait()
        log.info("shutting down")
    return 0
