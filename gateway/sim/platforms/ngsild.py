"""A small NGSI-LD broker SIMULATOR (not a broker): batch upsert and entity retrieval, for tests and demo.

It answers ``POST /ngsi-ld/v1/entityOperations/upsert`` as Orion-LD does (ETSI GS CIM 009 clauses 5.6.8,
6.3.4, 6.3.5, 6.15; the checks and messages follow FIWARE/context.Orion-LD's ``mhdConnectionInit.cpp``,
``batchEntityCountAndFirstCheck.cpp``, ``batchEntitiesFinalCheck.cpp``, ``pCheckEntityId.cpp``,
``pCheckUri.cpp`` and ``pCheckAttribute.cpp``; docs/platforms.md cites them):

Whole request (ProblemDetails ``{"type", "title", "detail", "status"}``, ``application/json``):

* ``Content-Type`` neither ``application/json`` nor ``application/ld+json``: **415** BadRequestData;
* ``application/ld+json`` **and** a ``Link`` header: **400** BadRequestData (with ld+json the context
  must travel in the body, clause 6.3.5);
* a body that is not JSON: **400** InvalidRequest; not an array, or empty: **400** BadRequestData;
  ``options`` with both ``update`` and ``replace``: **400** BadRequestData.

Per entity (a **207** BatchOperationResult ``{"success": [ids], "errors": [{"entityId", "error":
ProblemDetails}]}``, each error **400** BadRequestData):

* not a JSON object; ``id`` missing, not a string or not a URI (no scheme, whitespace); ``type`` missing
  on creation; ``@context`` missing with ``application/ld+json`` or present with ``application/json``;
* a malformed attribute: a ``Property`` without ``value``, a ``Relationship`` whose ``object`` is not a
  URI or an array of URIs, a ``GeoProperty`` whose value is not GeoJSON geometry, an unknown attribute
  ``type``, an ``observedAt`` that is not an ISO 8601 date-time, a ``unitCode`` that is not a string.
  A value that is not an object is the concise form of a Property and accepted, as brokers do.

``check_models=True`` (the default) adds what a broker does not check but a city's Smart Data Models
validation would: the model constraints citynode relies on (fractions 0..1, ``WasteContainer.status``
and ``refDevice`` array, ``peopleCount`` a non-negative integer, ``Device.controlledProperty``,
``location`` where the model requires it); those entities fail with 400 in the 207 answer as well.

Answers: 201 with the created ids when any entity was created, 204 when all existed, 207 when some
failed. Fault injection for tests: ``fail_next`` (statuses for the next requests, e.g. 503), ``reject``
(a per-entity predicate giving a ProblemDetails status), ``delay_s`` (slow answers).
``GET /ngsi-ld/v1/entities/{id}`` returns the merged entity, for the demo.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.sim.platforms.server import HttpSimulator, main

__all__ = ["NgsiLdSimulator", "broker_problem", "check_entity", "model_problem"]

_ERR = "https://uri.etsi.org/ngsi-ld/errors/"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_WASTE_STATUS = {"ok", "lidOpen", "dropped", "moved", "vandalized", "burning", "unknown"}
_FRACTIONS = {"relativeHumidity", "fillingLevel", "occupancy"}
_GEOMETRIES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
_ATTRIBUTE_TYPES = {"Property", "GeoProperty", "Relationship", "LanguageProperty", "VocabProperty",
                    "ListProperty", "ListRelationship", "JsonProperty"}
_LOCATION_REQUIRED = {"AirQualityObserved", "WasteContainer"}


def _problem(status: int, kind: str, title: str, detail: str | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"type": _ERR + kind, "title": title, "status": status}
    if detail is not None:
        p["detail"] = detail
    return p


def _response(status: int, kind: str, title: str, detail: str | None = None) -> web.Response:
    return web.json_response(_problem(status, kind, title, detail), status=status)


def _is_uri(value: Any) -> bool:
    return isinstance(value, str) and bool(_URI.match(value))


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        datetime.fromisoformat(value)  # Python 3.11 reads "Z"
    except ValueError:
        return False
    return True


def _value(attr: Any) -> Any:
    """The value of an attribute in normalised or concise form; a typed DateTime as its lexical form."""
    value = attr.get("value") if isinstance(attr, dict) and "type" in attr else attr
    if isinstance(value, dict) and value.get("@type") == "DateTime":
        return value.get("@value")
    return value


def _attribute_problem(name: str, attr: Any) -> str | None:
    if not isinstance(attr, dict) or "type" not in attr:
        return None  # concise form: a Property with this value (or an object value), accepted
    kind = attr["type"]
    if kind not in _ATTRIBUTE_TYPES:
        return f"{name}: invalid attribute type {kind!r}"
    if kind == "Property" and "value" not in attr:
        return f"{name}: Property without value"
    if kind == "Relationship":
        target = attr.get("object")
        targets = target if isinstance(target, list) else [target]
        if not targets or not all(_is_uri(t) for t in targets):
            return f"{name}: Relationship object is not a URI nor an array of URIs"
    if kind == "GeoProperty":
        geo = attr.get("value")
        if (not isinstance(geo, dict) or geo.get("type") not in _GEOMETRIES
                or not isinstance(geo.get("coordinates"), list)):
            return f"{name}: GeoProperty value is not GeoJSON geometry"
    if "observedAt" in attr and not _is_datetime(attr["observedAt"]):
        return f"{name}: observedAt {attr['observedAt']!r} is not an ISO 8601 date-time"
    if "unitCode" in attr and not isinstance(attr["unitCode"], str):
        return f"{name}: unitCode must be a string"
    return None


def broker_problem(entity: Any, *, ld_json: bool, creating: bool = True) -> tuple[str, str] | None:
    """What an NGSI-LD broker refuses in one entity of a batch: ``(title, detail)`` or None."""
    if not isinstance(entity, dict):
        return "Invalid Entity", "must be a JSON Object"
    if not entity:
        return "Empty Entity", "must be a non-empty JSON Object"
    eid = entity.get("id")
    if eid is None:
        return "Entity id is missing", "The 'id' field is mandatory"
    if not isinstance(eid, str):
        return "Entity id must be a String", type(eid).__name__
    if not _is_uri(eid):
        return "Invalid URI", f"id {eid!r} is not a URI"
    if creating and not isinstance(entity.get("type"), str):
        return "Invalid Entity", "no type in incoming payload for CREATION of Entity"
    if ld_json and "@context" not in entity:
        return "Invalid payload", "Content-Type is 'application/ld+json', but no @context in payload data array item"
    if not ld_json and "@context" in entity:
        return ("Invalid payload",
                "Content-Type is 'application/json', and an @context is present in the payload data array item")
    for name, attr in entity.items():
        if name in ("id", "type", "@context", "scope"):
            continue
        problem = _attribute_problem(name, attr)
        if problem:
            return "Invalid attribute", problem
    return None


def model_problem(entity: dict[str, Any]) -> str | None:
    """The Smart Data Models constraints citynode relies on that a city's validation would check."""
    etype = entity.get("type")
    for name in _FRACTIONS & set(entity):
        value = _value(entity[name])
        if not (isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1):
            return f"{name}: {value!r} outside 0..1 (Smart Data Models)"
    if etype in ("AirQualityObserved", "WasteContainer", "CrowdFlowObserved") and "dateObserved" not in entity:
        return f"{etype}: dateObserved missing"
    if etype in _LOCATION_REQUIRED and "location" not in entity:
        return f"{etype}: location missing (required by the model)"
    if etype == "WasteContainer":
        if "status" in entity and _value(entity["status"]) not in _WASTE_STATUS:
            return f"status: {_value(entity['status'])!r} not in the WasteContainer enum"
        ref = entity.get("refDevice")
        if ref is not None and not (isinstance(ref, dict) and isinstance(ref.get("object"), list)):
            return "refDevice: WasteContainer.refDevice must be an array of entity ids"
    if etype == "Device":
        cp = _value(entity.get("controlledProperty"))
        if not isinstance(cp, list) or not cp:
            return "Device: controlledProperty missing (required by the model)"
        level = _value(entity.get("batteryLevel", {"type": "Property", "value": 0}))
        if not (isinstance(level, int | float) and (0 <= level <= 1 or level == -1)):
            return f"batteryLevel: {level!r} outside 0..1"
    if "peopleCount" in entity:
        count = _value(entity["peopleCount"])
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return f"peopleCount: {count!r} is not a non-negative integer"
    return None


def check_entity(entity: Any, *, ld_json: bool, check_models: bool = True) -> str | None:
    """Everything the simulator refuses in one entity, as one line naming the attribute, or None."""
    problem = broker_problem(entity, ld_json=ld_json)
    if problem:
        return f"{problem[0]}: {problem[1]}"
    return model_problem(entity) if check_models else None


def _link_has_context(header: str) -> bool:
    return "http://www.w3.org/ns/json-ld#context" in header


class NgsiLdSimulator(HttpSimulator):
    """Run with ``async with NgsiLdSimulator() as sim:``; point the sink at ``sim.url``."""

    title = "NGSI-LD broker simulator"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, check_models: bool = True) -> None:
        super().__init__(host=host, port=port)
        self.check_models = check_models
        self.entities: dict[str, dict[str, Any]] = {}  # merged state
        self.updates: list[dict[str, Any]] = []  # every accepted entity update, in order
        self.requests: list[dict[str, Any]] = []  # every upsert request: headers, query, body
        self.fail_next: deque[int] = deque()  # statuses for the next requests (503, 500, 400 ...)
        self.reject: Callable[[dict[str, Any]], int | None] | None = None  # per entity: error status
        self.delay_s = 0.0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", self._upsert)
        app.router.add_get("/ngsi-ld/v1/entities/{id}", self._get)

    async def _get(self, request: web.Request) -> web.Response:
        entity = self.entities.get(request.match_info["id"])
        if entity is None:
            return _response(404, "ResourceNotFound", "Entity Not Found", request.match_info["id"])
        return web.json_response(entity)

    async def _upsert(self, request: web.Request) -> web.Response:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        raw = await request.read()
        self.requests.append({"headers": dict(request.headers), "query": dict(request.query), "body": raw})
        if self.fail_next:
            status = self.fail_next.popleft()
            kind = "InternalError" if status >= 500 else "BadRequestData"
            return _response(status, kind, "injected failure", "the test asked for this status")
        ctype = request.content_type
        if ctype not in ("application/ld+json", "application/json"):
            return _response(415, "BadRequestData", "unsupported format of payload",
                             "only application/json and application/ld+json are supported")
        ld_json = ctype == "application/ld+json"
        if ld_json and _link_has_context(request.headers.get("Link", "")):
            return _response(400, "BadRequestData", "invalid combination of HTTP headers Content-Type and Link",
                             "Content-Type is 'application/ld+json' AND Link header is present - not allowed")
        options = set(request.query.get("options", "").split(","))
        if {"update", "replace"} <= options:
            return _response(400, "BadRequestData", "URI Param Error", "options: both /update/ and /replace/ present")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return _response(400, "InvalidRequest", "JSON Parse Error", str(exc))
        if not isinstance(body, list):
            return _response(400, "BadRequestData", "Invalid payload", "payload body must be a JSON Array")
        if not body:
            return _response(400, "BadRequestData", "Invalid payload", "payload body must be a non-empty JSON Array")
        ids = [e.get("id") for e in body if isinstance(e, dict)]
        if len(ids) != len(set(map(str, ids))):
            return _response(400, "BadRequestData", "Invalid payload", "duplicate entity ids in one batch")
        merge = "update" in options
        success: list[str] = []
        errors: list[dict[str, Any]] = []
        created: list[str] = []
        for entity in body:
            eid = entity.get("id") if isinstance(entity, dict) else None
            entity_id = eid if isinstance(eid, str) else "No Entity::id"
            problem = broker_problem(entity, ld_json=ld_json, creating=entity_id not in self.entities)
            detail = f"{problem[0]}: {problem[1]}" if problem else None
            if detail is None and self.check_models:
                detail = model_problem(entity)
            refused = None if detail else (self.reject(entity) if self.reject else None)
            if detail or refused:
                code = refused or 400
                kind = "BadRequestData" if code < 500 else "InternalError"
                errors.append({"entityId": entity_id,
                               "error": _problem(code, kind, problem[0] if problem else "Invalid Entity",
                                                 detail or "rejected")})
                continue
            if entity_id not in self.entities:
                created.append(entity_id)
                self.entities[entity_id] = {}
            attrs = {k: v for k, v in entity.items() if k != "@context"}
            self.entities[entity_id] = {**self.entities[entity_id], **attrs} if merge else attrs
            self.updates.append(entity)
            success.append(entity_id)
        if errors:
            return web.json_response({"success": success, "errors": errors}, status=207)
        if created:
            return web.json_response(created, status=201)
        return web.Response(status=204)


if __name__ == "__main__":  # python -m gateway.sim.platforms.ngsild [port]
    main(NgsiLdSimulator, 1026)
