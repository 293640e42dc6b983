"""ChirpStack's HTTP integration: ``POST /chirpstack?event=<type>``, stored before the answer.

ChirpStack v4 posts every event to the configured endpoint with ``?event=up`` (``join``, ``status``,
``ack``, ``txack``, ``log``, ``location``) and a body in the configured marshaler: JSON
(``Content-Type: application/json``) or protobuf (``application/octet-stream``). It does not retry;
so the answer comes only after :meth:`Pipeline.handle` committed the event (or its dead letter):

=====  ==========================================================================
200    stored, duplicate or kept as a dead letter (``{"outcome": ..., "reason": ...}``)
400    no or unknown ``event`` parameter (the body is kept as a dead letter)
401    missing/wrong bearer token or shared-secret header (nothing is stored)
413    body larger than ``http.max_body`` (nothing is stored)
415    unsupported Content-Type (the body is kept as a dead letter)
503    the store failed: nothing was kept, the sender should retry
=====  ==========================================================================

Authentication: ``http.token`` expects ``Authorization: Bearer <token>``, ``http.secret`` expects the
``http.secret_header`` header (set either as a custom header in ChirpStack's HTTP integration). When both
are configured both must match; comparisons are constant-time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import http_exceptions, web

from gateway.errors import DecodeError
from gateway.service.config import HttpConfig
from gateway.service.ingest.events import EVENT_TYPES, encoding_for_content_type
from gateway.service.ingest.limits import RateLimitedLog
from gateway.service.pipeline import Pipeline
from gateway.service.store import StoreError

__all__ = ["ChirpStackHttpIngest", "ConnectionGuard", "RefusedRequestLog", "check_bearer", "server_limits"]

log = logging.getLogger("citynode.ingest.http")


def check_bearer(request: web.Request, token: str) -> bool:
    """True when the request carries ``Authorization: Bearer <token>`` (constant-time compare)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


class ChirpStackHttpIngest:
    """The ``POST /chirpstack`` handler; :meth:`add_routes` mounts it on an aiohttp application."""

    def __init__(self, config: HttpConfig, pipeline: Pipeline) -> None:
        self.config = config
        self.pipeline = pipeline
        self.in_flight = 0
        self.refused = RateLimitedLog(log, per_minute=10)  # one line per refused request, at most 10/min

    def add_routes(self, app: web.Application, path: str = "/chirpstack") -> None:
        app.router.add_post(path, self.handle)

    def _authorised(self, request: web.Request) -> bool:
        cfg = self.config
        if cfg.token and not check_bearer(request, cfg.token.get()):
            return False
        if cfg.secret:
            given = request.headers.get(cfg.secret_header, "")
            if not hmac.compare_digest(given.encode(), cfg.secret.get().encode()):
                return False
        return True

    async def handle(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            self.refused.warning("http ingest: unauthorised request", peer=request.remote)
            return web.json_response({"error": "unauthorised"}, status=401)
        if request.content_length is not None and request.content_length > self.config.max_body:
            return web.json_response({"error": f"body larger than {self.config.max_body} bytes"}, status=413)
        try:
            # bounded by the application's client_max_size too, and in time
            body = await asyncio.wait_for(request.read(), self.config.request_timeout)
        except TimeoutError:
            self.refused.warning("http: body not received in time", peer=request.remote)
            return web.json_response({"error": "body not received in time"}, status=408)
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": f"body larger than {self.config.max_body} bytes"}, status=413)
        except (ConnectionError, asyncio.IncompleteReadError):
            return web.json_response({"error": "body not received"}, status=400)
        if len(body) > self.config.max_body:
            return web.json_response({"error": f"body larger than {self.config.max_body} bytes"}, status=413)
        kind = request.query.get("event", "")
        self.in_flight += 1
        try:
            return await self._store(kind, body, request.headers.get("Content-Type"))
        except StoreError as exc:
            log.error("http ingest: store failed", extra={"error": str(exc)})
            return web.json_response({"error": "store unavailable, retry"}, status=503)
        finally:
            self.in_flight -= 1

    async def _store(self, kind: str, body: bytes, content_type: str | None) -> web.Response:
        if kind not in EVENT_TYPES:
            reason = f"http: event parameter {kind!r} is not one of {', '.join(EVENT_TYPES)}"
            await asyncio.to_thread(self.pipeline.store.dead_letter, "http", reason, body)
            self.pipeline.metrics.inc("citynode_dead_letters_total", source="http")
            return web.json_response({"outcome": "dead_letter", "reason": reason}, status=400)
        try:
            encoding = encoding_for_content_type(content_type, self.config.default_encoding)  # type: ignore[arg-type]
        except DecodeError as exc:
            reason = f"http: {exc}"
            await asyncio.to_thread(self.pipeline.store.dead_letter, "http", reason, body)
            self.pipeline.metrics.inc("citynode_dead_letters_total", source="http")
            return web.json_response({"outcome": "dead_letter", "reason": reason}, status=415)
        # Shielded: a client that hangs up does not cancel a half-done store call; the thread finishes.
        result = await asyncio.shield(asyncio.to_thread(self.pipeline.handle, kind, body, encoding, "http"))
        return web.json_response(
            {
                "outcome": result.outcome,
                "reason": result.reason,
                "readings": result.readings,
                "dev_eui": result.dev_eui,
            }
        )


# ------------------------------------------------------------------ what a slow or malformed client costs

class RefusedRequestLog:
    """aiohttp's server logger: a malformed request is one rate-limited WARNING line, no traceback.

    aiohttp calls ``exception`` for every request it cannot parse (headers too large, bad request
    line); a handler's own exception (a bug) still goes to ``citynode.http`` with its traceback.
    """

    def __init__(self, limiter: RateLimitedLog | None = None) -> None:
        self.limiter = limiter or RateLimitedLog(logging.getLogger("citynode.http"), per_minute=10)
        self.bugs = logging.getLogger("citynode.http")

    def debug(self, *args: Any, **kwargs: Any) -> None:
        """Non-HTTP traffic on the port (aiohttp logs it at debug): nothing."""

    def exception(self, message: str, *args: Any, exc_info: BaseException | None = None, **kw: Any) -> None:
        if isinstance(exc_info, http_exceptions.HttpProcessingError):
            peer = args[0] if args else None
            text = (exc_info.message or type(exc_info).__name__).splitlines()[0][:200]
            self.limiter.warning("http: refused malformed request", peer=str(peer), error=text)
        else:
            self.bugs.error(message, *args, exc_info=exc_info, **kw)


def server_limits(config: HttpConfig) -> dict[str, Any]:
    """Keyword arguments for :class:`aiohttp.web.AppRunner`: header limits, keep-alive, the refused-request log."""
    return {
        "max_line_size": config.max_header_size,
        "max_field_size": config.max_header_size,
        "max_headers": config.max_headers,
        "keepalive_timeout": float(config.request_timeout),
        "lingering_time": 1.0,  # s reading what is left of a refused request's body, then close
        "logger": RefusedRequestLog(),
    }


class ConnectionGuard:
    """Closes a connection that has not completed a request head within ``timeout`` s (slow or partial
    requests, idle connections); time spent in a handler does not count (the handler bounds its own
    body reads). :meth:`middleware` marks requests, :meth:`run` sweeps once a second."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # protocol (held, so never confused with a later one) -> start of its wait for a request
        self._since: dict[Any, float] = {}
        self._busy: dict[Any, int] = {}
        self.closed = 0

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        key = request.protocol
        self._busy[key] = self._busy.get(key, 0) + 1
        try:
            return await handler(request)
        finally:
            self._busy[key] -= 1
            self._since[key] = time.monotonic()

    def sweep(self, connections: list[Any]) -> None:
        now = time.monotonic()
        alive = set(connections)
        for key in list(self._since):
            if key not in alive:
                del self._since[key]
                self._busy.pop(key, None)
        for protocol in connections:
            key = protocol
            since = self._since.setdefault(key, now)
            if self._busy.get(key, 0) == 0 and now - since > self.timeout:
                self.closed += 1
                protocol.force_close()

    async def run(self, runner: web.AppRunner) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.timeout / 2))
            server = runner.server
            if server is not None:
                self.sweep(server.connections)
