"""The gateway's read API and operations endpoints (aiohttp).

=========================================  =====================================================
``GET /api/devices``                       every device with FCnt health, last link quality and the
                                           app version its newest device_status reported (``firmware``)
``GET /api/readings?device=&field=&since=``  readings as JSON, oldest first (``since`` ISO 8601;
                                           ``limit`` <= 10000; ``after`` = the ``next`` of the previous
                                           answer, null on the last page)
``GET /api/deadletters?limit=``            newest dead letters (raw shown as hex or text)
``GET /api/history?device=&points=``       newest ``points`` (default 60) values of each field of a
                                           device and RSSI/SNR of its newest uplinks (sparklines)
``GET /api/summary``                       store totals and uplinks in the last minute
``GET /api/overview?q=&role=&tag=&flag=``   one page of the fleet for the status page (search, filter,
                                           sort, paging, sparklines of the page's devices only;
                                           :mod:`gateway.service.api.overview`)
``GET /`` and ``GET /static/*``            the status page (:mod:`gateway.service.api`)
``GET /`` and ``GET /static/*``            the status page (:mod:`gateway.service.api`)
``GET /context/citynode.jsonld``           the citynode JSON-LD context (``codecs/ngsi-ld/citynode.jsonld``)
                                           that NGSI-LD brokers fetch; open, no token
``GET /health``                            200 ``{"status": "ok"}`` or 503 with what is wrong
``GET /metrics``                           Prometheus text format
=========================================  =====================================================

``/api/*`` and ``/metrics`` require ``Authorization: Bearer <http.api_token>`` when that token is set.
``/health`` stays open (probes); it names each failing component with its reason, and lists
``warnings`` (configurations that run but are unsafe) in both its 200 and 503 answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.errors import ConfigError
from gateway.service.api import add_page_routes, device_history, uplinks_since
from gateway.service.api.accesslog import access_log_middleware
from gateway.service.api.history import MAX_POINTS
from gateway.service.api.overview import OverviewQuery, overview
from gateway.service.ingest.http import check_bearer
from gateway.service.metrics import Metrics, Sample
from gateway.service.sinks.ngsild_models import CITYNODE_CONTEXT_PATH, citynode_context_bytes
from gateway.service.store import Store, StoreError, format_time, parse_time

__all__ = ["Api", "dead_letter_json", "store_samples"]

_MAX_LIMIT = 10000


def store_samples(store: Store) -> Callable[[], Iterable[Sample]]:
    """A metrics collector reading durable gauges (FCnt gaps, pending per sink) from the store."""

    def collect() -> Iterable[Sample]:
        counts = store.counts()
        yield ("citynode_fcnt_gaps", {}, counts["fcnt_gaps"])
        yield ("citynode_fcnt_resets", {}, counts["fcnt_resets"])
        yield ("citynode_devices", {}, counts["devices"])
        yield ("citynode_stored_readings", {}, counts["readings"])
        yield ("citynode_stored_dead_letters", {}, counts["dead_letters"])
        for sink in store.cursors():
            yield ("citynode_sink_pending", {"sink": sink}, store.pending(sink))

    return collect


def dead_letter_json(dl: Any) -> dict[str, Any]:
    raw = dl.raw
    return {
        "id": dl.id,
        "received_at": dl.received_at.isoformat(),
        "source": dl.source,
        "reason": dl.reason,
        "dev_eui": dl.dev_eui,
        # Bytes as hex only (no payload leaves as anything else); text as received, cut to 4 kB.
        "raw_hex": raw.hex() if isinstance(raw, bytes) else None,
        "raw_text": raw[:4096] if isinstance(raw, str) else None,
    }


class Api:
    """Routes over a store and metrics; ``health_checks`` maps a name to a function returning an error or None."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        api_token: str = "",
        health_checks: Mapping[str, Callable[[], str | None]] | None = None,
        warnings: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.api_token = api_token
        # Kept by reference: workers started later (the sinks) add their checks to the service's dict.
        self.health_checks = health_checks if health_checks is not None else {}
        self.warnings = warnings if warnings is not None else {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/devices", self.devices)
        app.router.add_get("/api/readings", self.readings)
        app.router.add_get("/api/deadletters", self.dead_letters)
        app.router.add_get("/health", self.health)
        app.router.add_get(CITYNODE_CONTEXT_PATH, self.citynode_context)
        app.router.add_get("/metrics", self.metrics_text)
        app.router.add_get("/api/history", self.history)
        app.router.add_get("/api/summary", self.summary)
        app.router.add_get("/api/overview", self.overview)
        app.middlewares.append(access_log_middleware)
        add_page_routes(app)

    def _check(self, request: web.Request) -> None:
        if self.api_token and not check_bearer(request, self.api_token):
            raise web.HTTPUnauthorized(text='{"error": "unauthorised"}', content_type="application/json")

    @staticmethod
    def _int(request: web.Request, name: str, default: int, hi: int) -> int:
        text = request.query.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not 0 <= value <= hi:
            raise web.HTTPBadRequest(
                text=f'{{"error": "{name} must be an integer 0..{hi}"}}', content_type="application/json"
            )
        return value

    async def devices(self, request: web.Request) -> web.Response:
        self._check(request)
        devices = await asyncio.to_thread(self.store.devices)
        versions = await asyncio.to_thread(self.store.firmware_versions)
        # "firmware": the app version of the newest device_status (what a FUOTA update changes)
        return web.json_response({"devices": [{**d.to_json(), "firmware": versions.get(d.dev_eui)}
                                              for d in devices]})

    async def readings(self, request: web.Request) -> web.Response:
        self._check(request)
        since = None
        if request.query.get("since"):
            try:
                since = parse_time(request.query["since"])
            except ConfigError:
                raise web.HTTPBadRequest(
                    text='{"error": "since must be an ISO 8601 time"}', content_type="application/json"
                ) from None
        limit = self._int(request, "limit", 1000, _MAX_LIMIT)
        after = self._int(request, "after", 0, 2**63 - 1)
        rows = await asyncio.to_thread(
            self.store.readings,
            request.query.get("device") or None,
            request.query.get("field") or None,
            since,
            limit,
            after_id=after,
        )
        # Keyset paging: ``next`` is the ``after`` of the following page, null when this one is the last.
        next_after = rows[-1].id if limit and len(rows) == limit else None
        return web.json_response({"readings": [r.to_json() for r in rows], "next": next_after})

    async def dead_letters(self, request: web.Request) -> web.Response:
        self._check(request)
        limit = self._int(request, "limit", 100, _MAX_LIMIT)
        rows = await asyncio.to_thread(self.store.dead_letters, limit)
        return web.json_response({"dead_letters": [dead_letter_json(d) for d in rows]})

    async def history(self, request: web.Request) -> web.Response:
        self._check(request)
        device = request.query.get("device", "").strip().lower()
        if len(device) != 16 or any(c not in "0123456789abcdef" for c in device):
            raise web.HTTPBadRequest(
                text='{"error": "device must be a DevEUI of 16 hex digits"}', content_type="application/json"
            )
        points = self._int(request, "points", 60, MAX_POINTS)
        history = await asyncio.to_thread(device_history, self.store, device, max(points, 1))
        return web.json_response(history.to_json())

    async def summary(self, request: web.Request) -> web.Response:
        self._check(request)
        now = datetime.now(UTC)

        def read() -> dict[str, Any]:
            counts = self.store.counts()
            counts["uplinks_last_minute"] = uplinks_since(self.store, now - timedelta(minutes=1))
            return counts

        body = await asyncio.to_thread(read)
        return web.json_response({"time": format_time(now), **body})

    async def overview(self, request: web.Request) -> web.Response:
        self._check(request)
        try:
            query = OverviewQuery.from_params(request.query)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=json.dumps({"error": str(exc)}), content_type="application/json") from None
        body = await asyncio.to_thread(overview, self.store, query, datetime.now(UTC))
        return web.json_response(body)
    async def citynode_context(self, request: web.Request) -> web.Response:
        """The citynode JSON-LD context, as brokers fetch a remote context (JSON-LD 1.1 API, 9.4.1:
        ``application/ld+json``); no token, since brokers fetch contexts without credentials."""
        return web.Response(body=citynode_context_bytes(), content_type="application/ld+json",
                            headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"})

    async def health(self, request: web.Request) -> web.Response:
        problems: dict[str, str] = {}
        try:
            await asyncio.to_thread(self.store.last_reading_id)
        except StoreError as exc:
            problems["store"] = str(exc)
        for name, check in self.health_checks.items():
            error = check()
            if error:
                problems[name] = error
        extra = {"warnings": dict(self.warnings)} if self.warnings else {}
        if problems:
            return web.json_response({"status": "error", "problems": problems, **extra}, status=503)
        return web.json_response({"status": "ok", **extra})

    async def metrics_text(self, request: web.Request) -> web.Response:
        self._check(request)
        text = await asyncio.to_thread(self.metrics.render)
        return web.Response(
            body=text.encode("utf-8"), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )
