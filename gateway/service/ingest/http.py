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

from aiohttp import web

from gateway.errors import DecodeError
from gateway.service.config import HttpConfig
from gateway.service.ingest.events import EVENT_TYPES, encoding_for_content_type
from gateway.service.pipeline import Pipeline
from gateway.service.store import StoreError

__all__ = ["ChirpStackHttpIngest", "check_bearer"]

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
            log.warning("http ingest: unauthorised request", extra={"peer": request.remote})
            return web.json_response({"error": "unauthorised"}, status=401)
        if request.content_length is not None and request.content_length > self.config.max_body:
            return web.json_response({"error": f"body larger than {self.config.max_body} bytes"}, status=413)
        try:
            body = await request.read()  # bounded by the application's client_max_size too
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
