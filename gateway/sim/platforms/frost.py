"""A small OGC SensorThings API v1.1 SIMULATOR that answers as FROST-Server does, for tests and the demo.

Not a SensorThings server: it keeps entities in memory and implements what citynode's sink uses. Where
FROST-Server's behaviour is specific, the simulator follows FROST's source (FraunhoferIOSB/FROST-Server,
checked at 99b36f68; docs/platforms.md lists the files):

* ``POST /v1.1/{Things,Sensors,ObservedProperties,Datastreams,FeaturesOfInterest}``: the mandatory
  properties of each entity type (OGC 18-088 clause 8.2; FROST: ``Missing required property 'x'``) and
  links by ``@iot.id`` to existing entities (FROST: ``No such entity 'Thing' with id [7]``), else 400
  with FROST's body ``{"type": "error", "code", "message"}``. Success is **201 with a ``Location``
  header and an empty body**: FROST's core plugin answers creates with its ``noResponse`` formatter
  (``PluginCoreService``). ``return_body=True`` adds the entity as a body, like other servers.
* ids are numbers (``id_type="long"``, FROST's default), strings or UUIDs (``"string"``, ``"uuid"``, FROST's
  other ``persistence.idGenerateMode`` types); in URLs a string id is quoted, ``'`` doubled
  (``UrlHelper.quoteForUrl``).
* ``GET`` of a collection or of ``Things(<id>)/Datastreams`` with the ``$filter`` subset citynode uses,
  parsed as OData: ``<path> eq <literal>`` joined by ``and``, parentheses, string literals with ``''``,
  numbers, ``true``/``false``/``null``; paths ``name``, ``description``, ``id``/``@iot.id``,
  ``properties/<key>``... Anything else is 400 ``Query is not valid: ...`` (FROST's ``QueryParser``). A
  Thing that does not exist is 404 ``Nothing found.``.
* ``POST /v1.1/CreateObservations`` (clause 14.3, FROST's ``ServiceDataArray``): the body must be an
  array of ``{"Datastream", "components", "dataArray"}``; a malformed body is 400. Each row is created on
  its own and answered in the 201 array with its self link or with ``"error " + message`` as FROST does:
  an unknown Datastream or FeatureOfInterest (``No such entity 'FeatureOfInterest' with id [9]``), no
  FeatureOfInterest and none derivable from the Thing's Location (``No FeatureOfInterest provided, and
  none can be generated.``), an unparsable ``phenomenonTime``, or a row refused by the ``reject`` hook.
  FROST does not check a result against the Datastream's ``observationType``, so neither does this; the
  one observationType check FROST makes, ``OM_ComplexObservation`` for a new MultiDatastream, it makes too.
  An unknown component makes FROST fail with a null handler (500), and so does this.

Fault injection: ``fail_next`` (statuses for the next requests), ``reject`` (row -> None, or a message or
``True`` to refuse it), ``delay_s`` (slow answers).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from aiohttp import web

from gateway.sim.platforms.server import HttpSimulator, main

__all__ = ["FilterError", "FrostSimulator", "parse_filter", "quote_id"]

IdType = Literal["long", "string", "uuid"]

# Mandatory properties per entity type (OGC 18-088 clause 8.2; FROST's EntityType.validateCreate).
_REQUIRED = {
    "Things": ("name", "description"),
    "Sensors": ("name", "description", "encodingType", "metadata"),
    "ObservedProperties": ("name", "definition", "description"),
    "Datastreams": ("name", "description", "observationType", "unitOfMeasurement", "Thing", "Sensor",
                    "ObservedProperty"),
    "FeaturesOfInterest": ("name", "description", "encodingType", "feature"),
    "MultiDatastreams": ("name", "description", "unitOfMeasurements", "multiObservationDataTypes", "Thing",
                         "Sensor", "ObservedProperties"),
}
_COMPLEX = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation"
_LOCATION_REQUIRED = ("name", "description", "encodingType", "location")
# Datastream navigation property -> (collection, FROST's entity type name)
_LINKS = {"Thing": ("Things", "Thing"), "Sensor": ("Sensors", "Sensor"),
          "ObservedProperty": ("ObservedProperties", "ObservedProperty")}
# The dataArray components FROST's ArrayValueHandlers knows.
_COMPONENTS = {"id", "parameters", "phenomenonTime", "resultTime", "result", "resultQuality", "validTime",
               "FeatureOfInterest/id"}
_THING_DATASTREAMS = re.compile(r"^/v1\.1/Things\((.+)\)/Datastreams$")


def _error(status: int, message: str) -> web.Response:
    """FROST's error body (``Service.jsonResponse``: type, code, message cut to 200 characters)."""
    return web.json_response({"type": "error", "code": status, "message": message[:200]}, status=status)


def quote_id(iot_id: Any) -> str:
    """An id as FROST writes it in a URL: numbers as they are, anything else quoted with ``'`` doubled."""
    if isinstance(iot_id, int | float) and not isinstance(iot_id, bool):
        return str(iot_id)
    return "'" + str(iot_id).replace("'", "''") + "'"


def _pk(iot_id: Any) -> str:
    """FROST's ``PkValue.toString()`` in messages: ``[7]``."""
    return f"[{iot_id}]"


# -- $filter: the subset citynode uses, parsed as OData (not matched as text) -------------------------

class FilterError(ValueError):
    """A ``$filter`` the simulator cannot parse (FROST: 400 ``Query is not valid: ...``)."""


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
                    r"|(?P<paren>[()])|(?P<word>[@A-Za-z_][\w.@]*(?:/[A-Za-z_][\w]*)*))")
_Predicate = Callable[[dict[str, Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"unexpected character at {pos}: {text[pos:pos + 10]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _literal(kind: str, raw: str) -> Any:
    if kind == "str":
        return raw[1:-1].replace("''", "'")
    if kind == "num":
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    if kind == "word" and raw in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[raw]
    raise FilterError(f"expected a literal, got {raw!r}")


def _resolve(entity: dict[str, Any], path: str) -> Any:
    parts = path.split("/")
    if parts[0] in ("id", "@iot.id"):
        return entity.get("@iot.id")
    value: Any = entity
    for part in parts:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def parse_filter(text: str) -> _Predicate:
    """``$filter`` text -> predicate over an entity. Raises :class:`FilterError` when it does not parse."""
    tokens = _tokens(text)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise FilterError("unexpected end of expression")
        pos += 1
        return tokens[pos - 1]

    def term() -> _Predicate:
        kind, raw = take()
        if (kind, raw) == ("paren", "("):
            inner = expr()
            if take() != ("paren", ")"):
                raise FilterError("missing ')'")
            return inner
        if kind != "word" or raw in ("eq", "and", "true", "false", "null"):
            raise FilterError(f"expected a property path, got {raw!r}")
        op = take()
        if op != ("word", "eq"):
            raise FilterError(f"unsupported operator {op[1]!r} (the simulator knows eq and and)")
        lit_kind, lit_raw = take()
        want = _literal(lit_kind, lit_raw)
        return lambda e: _resolve(e, raw) == want

    def expr() -> _Predicate:
        parts = [term()]
        while peek() == ("word", "and"):
            take()
            parts.append(term())
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    predicate = expr()
    if pos != len(tokens):
        raise FilterError(f"unexpected {tokens[pos][1]!r}")
    return predicate


def _parse_id(raw: str) -> Any:
    """An id from a URL path segment: a number, or a quoted string."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1].replace("''", "'")
    try:
        return int(raw)
    except ValueError:
        raise FilterError(f"invalid id {raw!r}") from None


class FrostSimulator(HttpSimulator):
    """Run with ``async with FrostSimulator() as sim:``; the service root is ``sim.url`` (…/v1.1)."""

    title = "SensorThings (FROST) simulator"
    root = "/v1.1"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, id_type: IdType = "long",
                 return_body: bool = False) -> None:
        super().__init__(host=host, port=port)
        self.id_type: IdType = id_type
        self.return_body = return_body
        self.entities: dict[str, dict[Any, dict[str, Any]]] = {k: {} for k in _REQUIRED}
        self.observations: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path_qs)
        self.fail_next: deque[int] = deque()
        self.reject: Callable[[dict[str, Any]], str | bool | None] | None = None  # row -> refusal message
        self.delay_s = 0.0
        self._next_id = 1

    def middlewares(self) -> list[Any]:
        return [self._faults]

    def routes(self, app: web.Application) -> None:
        for coll in _REQUIRED:
            app.router.add_post(f"/v1.1/{coll}", self._create)
            app.router.add_get(f"/v1.1/{coll}", self._list)
        app.router.add_post("/v1.1/CreateObservations", self._create_observations)
        app.router.add_get("/v1.1/{tail:Things\\(.+\\)/Datastreams}", self._thing_datastreams)

    @web.middleware
    async def _faults(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next:
            return _error(self.fail_next.popleft(), "injected failure")
        return await handler(request)

    def _new_id(self, coll: str) -> Any:
        n, self._next_id = self._next_id, self._next_id + 1
        if self.id_type == "long":
            return n
        if self.id_type == "uuid":
            return str(uuid.UUID(int=n))
        return f"{coll[:-1]}-{n}'s"  # a quote inside, so clients must escape ids in URLs as FROST does

    def _self_link(self, coll: str, iot_id: Any) -> str:
        return f"{self.url}/{coll}({quote_id(iot_id)})"

    def _public(self, coll: str, entity: dict[str, Any]) -> dict[str, Any]:
        return {**entity, "@iot.selfLink": self._self_link(coll, entity["@iot.id"])}

    async def _json(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.text())
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text=_error(400, f"Failed to parse JSON: {exc}").text, content_type="application/json"
            ) from exc

    async def _create(self, request: web.Request) -> web.Response:
        coll = request.path.rsplit("/", 1)[1]
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, f"Expected an object for {coll}")
        for prop in _REQUIRED[coll]:
            if body.get(prop) is None:
                return _error(400, f"Missing required property '{prop}'")
        if coll == "Datastreams":
            # FROST stores observationType as given; only MultiDatastreams must be OM_ComplexObservation.
            if not isinstance(body["unitOfMeasurement"], dict):
                return _error(400, "unitOfMeasurement must be an object")
            for link, (target, type_name) in _LINKS.items():
                ref = body[link].get("@iot.id") if isinstance(body[link], dict) else None
                if ref not in self.entities[target]:
                    return _error(400, f"No such entity '{type_name}' with id {_pk(ref)}")
        if coll == "MultiDatastreams" and str(body.get("observationType", "")).lower() != _COMPLEX.lower():
            # The one observationType check FROST makes (PluginMultiDatastream, on create).
            return _error(400, f"ObservationType must be {_COMPLEX}.")
        if coll == "Things":
            for loc in body.get("Locations", []):
                for prop in _LOCATION_REQUIRED:
                    if not isinstance(loc, dict) or loc.get(prop) is None:
                        return _error(400, f"Missing required property '{prop}'")
        iot_id = self._new_id(coll)
        self.entities[coll][iot_id] = {**body, "@iot.id": iot_id}
        link = self._self_link(coll, iot_id)
        if self.return_body:
            return web.json_response(self._public(coll, self.entities[coll][iot_id]), status=201,
                                     headers={"Location": link})
        return web.Response(status=201, headers={"Location": link}, content_type="application/json")

    def _answer(self, coll: str, items: list[dict[str, Any]], flt: str | None) -> web.Response:
        if flt is not None:
            try:
                predicate = parse_filter(flt)
            except FilterError as exc:
                return _error(400, f"Query is not valid: {exc}")
            items = [e for e in items if predicate(e)]
        return web.json_response({"value": [self._public(coll, e) for e in items]})

    async def _list(self, request: web.Request) -> web.Response:
        coll = request.path.rsplit("/", 1)[1]
        return self._answer(coll, list(self.entities[coll].values()), request.query.get("$filter"))

    async def _thing_datastreams(self, request: web.Request) -> web.Response:
        m = _THING_DATASTREAMS.match(request.path)
        try:
            tid = _parse_id(m.group(1)) if m else None
        except FilterError:
            return _error(404, "Nothing found.")
        if tid not in self.entities["Things"]:
            return _error(404, "Nothing found.")
        mine = [d for d in self.entities["Datastreams"].values() if d["Thing"]["@iot.id"] == tid]
        return self._answer("Datastreams", mine, request.query.get("$filter"))

    def _row(self, datastream_id: Any, comps: list[str], values: list[Any]) -> str:
        """Create one observation; its answer: the self link, or ``"error " + message`` as FROST writes it."""
        datastream = self.entities["Datastreams"].get(datastream_id)
        if datastream is None:
            return f"error No such entity 'Datastream' with id {_pk(datastream_id)}"
        row = dict(zip(comps, values, strict=True))
        if "parameters" in row and not isinstance(row["parameters"], dict):
            return "error parameters has to be a map."
        try:
            text = str(row.get("phenomenonTime"))
            datetime.fromisoformat(text.split("/")[0])
        except ValueError:
            return "error phenomenonTime could not be parsed as time instant or time interval."
        foi = row.get("FeatureOfInterest/id")
        if foi is not None and foi not in self.entities["FeaturesOfInterest"]:
            return f"error No such entity 'FeatureOfInterest' with id {_pk(foi)}"
        if foi is None and not self.entities["Things"][datastream["Thing"]["@iot.id"]].get("Locations"):
            return "error No FeatureOfInterest provided, and none can be generated."
        refusal = self.reject(row) if self.reject else None
        if refusal:
            return "error " + (refusal if isinstance(refusal, str) else "rejected by the simulator's reject hook")
        self.observations.append({**row, "Datastream": datastream_id})
        return self._self_link("Observations", len(self.observations))

    async def _create_observations(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, list):
            return _error(400, "Expected token START_ARRAY. Found: " + type(body).__name__)
        answers: list[str] = []
        for item in body:
            if not isinstance(item, dict) or not isinstance(item.get("Datastream"), dict):
                return _error(400, "No Datastream found and MultiDatastream plugin not enabled.")
            comps, rows = item.get("components"), item.get("dataArray")
            if not isinstance(comps, list) or not isinstance(rows, list):
                return _error(400, "components and dataArray must be arrays")
            unknown = [c for c in comps if c not in _COMPONENTS]
            if unknown:  # FROST: no handler for the component, a NullPointerException -> 500
                return _error(500, "null")
            if any(not isinstance(r, list) or len(r) != len(comps) for r in rows):
                return _error(400, "every dataArray row needs one value per component")
            ds_id = item["Datastream"].get("@iot.id")
            answers.extend(self._row(ds_id, comps, values) for values in rows)
        return web.json_response(answers, status=201)


if __name__ == "__main__":  # python -m gateway.sim.platforms.frost [port]
    main(FrostSimulator, 8080)
