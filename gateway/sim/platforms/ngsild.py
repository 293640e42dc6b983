"""A small NGSI-LD broker SIMULATOR (not a broker): batch upsert and entity retrieval, for tests and demo.

It answers ``POST /ngsi-ld/v1/entityOperations/upsert`` the way Orion-LD / Scorpio / Stellio do
(ETSI GS CIM 009 clauses 5.6.8, 6.15) and checks what they check:

* ``Content-Type`` is ``application/ld+json`` (then every entity carries ``@context``) or
  ``application/json`` (then no entity may carry ``@context``; the context comes in a ``Link`` header);
  anything else is 415;
* the body is a JSON array of entities; otherwise 400 ``InvalidRequest``;
* per entity: ``id`` is a URI, ``type`` is set, every attribute is a Property (with ``value``),
  GeoProperty (GeoJSON geometry) or Relationship (with ``object``), ``observedAt`` is ISO 8601 UTC and
  ``unitCode`` a string. Beyond the broker it also checks the Smart Data Models constraints citynode
  relies on (``dateObserved`` present, ``relativeHumidity``/``fillingLevel``/``occupancy`` within 0..1,
  ``WasteContainer.status`` from the model's enum, ``peopleCount`` a non-negative integer); a failing
  entity is reported in a 207 BatchOperationResult like a broker's per-entity error.

Answers: 201 with the ids when any entity was created, 204 when all existed, 207 when some failed.
Fault injection for tests: ``fail_next`` (statuses for the next requests, e.g. 503), ``reject``
(a per-entity predicate giving a ProblemDetails status), ``delay_s`` (slow answers).
``GET /ngsi-ld/v1/entities/{id}`` returns the merged entity, for the demo.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web

__all__ = ["NgsiLdSimulator", "check_entity", "serve"]

_ERR = "https://uri.etsi.org/ngsi-ld/errors/"
_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_WASTE_STATUS = {"ok", "lidOpen", "dropped", "moved", "vandalized", "burning", "unknown"}
_FRACTIONS = {"relativeHumidity", "fillingLevel", "occupancy"}


def _problem(status: int, kind: str, detail: str) -> dict[str, Any]:
    return {"type": _ERR + kind, "title": kind, "status": status, "detail": detail}


def check_entity(entity: Any, *, ld_json: bool) -> str | None:
    """What is wrong with one entity of an upsert, or None. Messages name the attribute."""
    if not isinstance(entity, dict):
        return "entity is not a JSON object"
    eid = entity.get("id")
    if not isinstance(eid, str) or not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", eid):
        return f"id {eid!r} is not a URI"
    if not isinstance(entity.get("type"), str):
        return "type missing"
    if ld_json and "@context" not in entity:
        return "application/ld+json entity without @context (clause 6.3.5)"
    if not ld_json and "@context" in entity:
        return "application/json entity must not carry @context (clause 6.3.5)"
    for name, attr in entity.items():
        if name in ("id", "type", "@context"):
            continue
        if not isinstance(attr, dict):
            return f"{name}: attribute is not an object"
        kind = attr.get("type")
        if kind == "Property":
            if "value" not in attr:
                return f"{name}: Property without value"
        elif kind == "GeoProperty":
            geo = attr.get("value")
            if not isinstance(geo, dict) or "type" not in geo or "coordinates" not in geo:
                return f"{name}: GeoProperty value is not GeoJSON geometry"
        elif kind == "Relationship":
            if not isinstance(attr.get("object"), str):
                return f"{name}: Relationship without object"
        else:
            return f"{name}: unknown attribute type {kind!r}"
        if "observedAt" in attr and not _ISO_UTC.match(str(attr["observedAt"])):
            return f"{name}: observedAt {attr['observedAt']!r} is not ISO 8601 UTC"
        if "unitCode" in attr and not isinstance(attr["unitCode"], str):
            return f"{name}: unitCode must be a string"
        value = attr.get("value")
        if name in _FRACTIONS and not (isinstance(value, int | float) and 0 <= value <= 1):
            return f"{name}: {value!r} outside 0..1 (Smart Data Models)"
    etype = entity["type"]
    if etype in ("AirQualityObserved", "WasteContainer", "CrowdFlowObserved") and "dateObserved" not in entity:
        return f"{etype}: dateObserved missing"
    if etype == "WasteContainer" and "status" in entity and entity["status"]["value"] not in _WASTE_STATUS:
        return f"status: {entity['status']['value']!r} not in the WasteContainer enum"
    if "peopleCount" in entity:
        count = entity["peopleCount"].get("value")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return f"peopleCount: {count!r} is not a non-negative integer"
    return None


class NgsiLdSimulator:
    """Run with ``async with NgsiLdSimulator() as sim:``; point the sink at ``sim.url``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.entities: dict[str, dict[str, Any]] = {}  # merged state
        self.updates: list[dict[str, Any]] = []  # every accepted entity update, in order
        self.requests: list[dict[str, Any]] = []  # every upsert request: headers, query, body
        self.fail_next: deque[int] = deque()  # statuses for the next requests (503, 500, 400 ...)
        self.reject: Callable[[dict[str, Any]], int | None] | None = None  # per entity: error status
        self.delay_s = 0.0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", self._upsert)
        app.router.add_get("/ngsi-ld/v1/entities/{id}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _get(self, request: web.Request) -> web.Response:
        entity = self.entities.get(request.match_info["id"])
        if entity is None:
            return web.json_response(_problem(404, "ResourceNotFound", request.match_info["id"]), status=404)
        return web.json_response(entity)

    async def _upsert(self, request: web.Request) -> web.Response:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        raw = await request.read()
        self.requests.append({"headers": dict(request.headers), "query": dict(request.query), "body": raw})
        if self.fail_next:
            status = self.fail_next.popleft()
            return web.json_response(_problem(status, "InternalError" if status >= 500 else "BadRequestData",
                                              "injected failure"), status=status)
        ctype = request.content_type
        if ctype not in ("application/ld+json", "application/json"):
            return web.json_response(_problem(415, "UnsupportedMediaType", ctype), status=415)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return web.json_response(_problem(400, "InvalidRequest", f"body is not JSON: {exc}"), status=400)
        if not isinstance(body, list) or not body:
            return web.json_response(_problem(400, "BadRequestData", "body must be a non-empty array"), status=400)
        ids = [e.get("id") for e in body if isinstance(e, dict)]
        if len(ids) != len(set(ids)):
            return web.json_response(_problem(400, "BadRequestData", "duplicate entity ids in one batch"),
                                     status=400)
        merge = request.query.get("options") == "update"
        success: list[str] = []
        errors: list[dict[str, Any]] = []
        created: list[str] = []
        for entity in body:
            problem = check_entity(entity, ld_json=ctype == "application/ld+json")
            refused = None if problem else (self.reject(entity) if self.reject else None)
            if problem or refused:
                code = refused or 400
                errors.append({"entityId": entity.get("id") if isinstance(entity, dict) else None,
                               "error": _problem(code, "BadRequestData" if code < 500 else "InternalError",
                                                 problem or "rejected")})
                continue
            eid = entity["id"]
            if eid not in self.entities:
                created.append(eid)
                self.entities[eid] = {}
            attrs = {k: v for k, v in entity.items() if k != "@context"}
            self.entities[eid] = {**self.entities[eid], **attrs} if merge else attrs
            self.updates.append(entity)
            success.append(eid)
        if errors:
            return web.json_response({"success": success, "errors": errors}, status=207)
        if created:
            return web.json_response(created, status=201)
        return web.Response(status=204)


async def serve(host: str = "127.0.0.1", port: int = 1026) -> None:
    """Run the simulator until cancelled (the demo's stand-in broker)."""
    async with NgsiLdSimulator(host=host, port=port) as sim:
        print(f"NGSI-LD broker simulator on {sim.url} (not a real broker)", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":  # python -m gateway.sim.platforms.ngsild [port]
    import sys

    try:
        asyncio.run(serve(port=int(sys.argv[1]) if len(sys.argv) > 1 else 1026))
    except KeyboardInterrupt:
        pass
