"""A small OGC SensorThings API v1.1 SIMULATOR in the manner of FROST-Server, for tests and the demo.

Not a SensorThings server: it keeps entities in memory and implements what citynode's sink uses,
checking the request shapes of OGC 18-088 (SensorThings API Part 1: Sensing, v1.1):

* ``POST /v1.1/{Things,Sensors,ObservedProperties,Datastreams,FeaturesOfInterest}`` with the mandatory
  properties of each entity type (clause 8.2) and links by ``@iot.id`` to existing entities; answers
  201 with a ``Location`` header (clause 10.2), 400 with FROST's ``{"code", "type", "message"}`` on a
  missing property or dangling link;
* ``GET`` of those collections with ``$filter=name eq '...'`` or ``$filter=properties/devEui eq '...'``
  and ``GET /v1.1/Things(id)/Datastreams`` (for lookups after a lost id cache);
* ``POST /v1.1/CreateObservations`` (clause 14.3, data array extension): every item names an existing
  Datastream, ``components`` from the allowed list (and here ``phenomenonTime`` and ``result`` are
  required), every ``dataArray`` row has as many values as components, ``dataArray@iot.count`` matches;
  a malformed request is 400. Row-level problems answer ``"error"`` in the 201 response array, like
  FROST: no FeatureOfInterest (neither given nor derivable from the Thing's Location), a result that
  does not fit the Datastream's observationType, or a row refused by the ``reject`` hook.

Fault injection: ``fail_next`` (statuses for the next requests), ``reject`` (row predicate),
``delay_s`` (slow answers).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any, Self

from aiohttp import web

__all__ = ["OBSERVATION_TYPES", "FrostSimulator", "serve"]

_OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
OBSERVATION_TYPES = {
    _OM + "OM_Measurement": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    _OM + "OM_CountObservation": lambda v: isinstance(v, int) and not isinstance(v, bool),
    _OM + "OM_TruthObservation": lambda v: isinstance(v, bool),
    _OM + "OM_CategoryObservation": lambda v: isinstance(v, str),
    _OM + "OM_Observation": lambda v: True,
}
_COMPONENTS = {"id", "phenomenonTime", "result", "resultTime", "resultQuality", "validTime", "parameters",
               "FeatureOfInterest/id"}
# Mandatory properties per entity type (OGC 18-088 clause 8.2) and links that must resolve.
_REQUIRED = {
    "Things": ("name", "description"),
    "Sensors": ("name", "description", "encodingType", "metadata"),
    "ObservedProperties": ("name", "definition", "description"),
    "Datastreams": ("name", "description", "observationType", "unitOfMeasurement", "Thing", "Sensor",
                    "ObservedProperty"),
    "FeaturesOfInterest": ("name", "description", "encodingType", "feature"),
}
_LINKS = {"Thing": "Things", "Sensor": "Sensors", "ObservedProperty": "ObservedProperties"}
_FILTER = re.compile(r"^(name|properties/devEui) eq '((?:[^']|'')*)'$")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "type": "error", "message": message}, status=status)


class FrostSimulator:
    """Run with ``async with FrostSimulator() as sim:``; the service root is ``sim.url`` (…/v1.1)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.entities: dict[str, dict[Any, dict[str, Any]]] = {k: {} for k in _REQUIRED}
        self.observations: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path_qs)
        self.fail_next: deque[int] = deque()
        self.reject: Callable[[dict[str, Any]], bool] | None = None  # row -> refuse with "error"
        self.delay_s = 0.0
        self._next_id = 1
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1.1"

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._faults])
        for coll in _REQUIRED:
            app.router.add_post(f"/v1.1/{coll}", self._create)
            app.router.add_get(f"/v1.1/{coll}", self._list)
        app.router.add_get(r"/v1.1/Things({tid})/Datastreams", self._thing_datastreams)
        app.router.add_post("/v1.1/CreateObservations", self._create_observations)
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

    @web.middleware
    async def _faults(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next:
            return _error(self.fail_next.popleft(), "injected failure")
        return await handler(request)

    def _self_link(self, coll: str, iot_id: Any) -> str:
        return f"{self.url}/{coll}({iot_id})"

    async def _json(self, request: web.Request) -> Any:
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text=f"content type {request.content_type}")
        try:
            return await request.json()
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc

    async def _create(self, request: web.Request) -> web.Response:
        coll = request.path.rsplit("/", 1)[1]
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, f"{coll}: body must be an object")
        for prop in _REQUIRED[coll]:
            if body.get(prop) in (None, ""):
                return _error(400, f"{coll}: missing mandatory property {prop}")
        if coll == "Datastreams":
            if body["observationType"] not in OBSERVATION_TYPES:
                return _error(400, f"unknown observationType {body['observationType']}")
            uom = body["unitOfMeasurement"]
            if not isinstance(uom, dict) or set(uom) != {"name", "symbol", "definition"}:
                return _error(400, "unitOfMeasurement needs exactly name, symbol and definition")
            for link, target in _LINKS.items():
                ref = body[link].get("@iot.id") if isinstance(body[link], dict) else None
                if ref not in self.entities[target]:
                    return _error(400, f"Datastream links to missing {link} {ref!r}")
        if coll == "Things":
            for loc in body.get("Locations", []):
                if not all(loc.get(k) for k in ("name", "description", "encodingType", "location")):
                    return _error(400, "Location needs name, description, encodingType, location")
        if coll == "FeaturesOfInterest" and not isinstance(body["feature"], dict):
            return _error(400, "feature must be a GeoJSON object")
        iot_id = self._next_id
        self._next_id += 1
        self.entities[coll][iot_id] = {**body, "@iot.id": iot_id}
        link = self._self_link(coll, iot_id)
        return web.json_response({**body, "@iot.id": iot_id, "@iot.selfLink": link}, status=201,
                                 headers={"Location": link})

    def _filtered(self, items: list[dict[str, Any]], flt: str | None) -> list[dict[str, Any]] | None:
        if not flt:
            return items
        m = _FILTER.match(flt)
        if m is None:
            return None
        want = m.group(2).replace("''", "'")
        if m.group(1) == "name":
            return [e for e in items if e.get("name") == want]
        return [e for e in items if (e.get("properties") or {}).get("devEui") == want]

    async def _list(self, request: web.Request) -> web.Response:
        coll = request.path.rsplit("/", 1)[1]
        found = self._filtered(list(self.entities[coll].values()), request.query.get("$filter"))
        if found is None:
            return _error(400, f"unsupported $filter {request.query.get('$filter')!r}")
        return web.json_response({"value": found})

    async def _thing_datastreams(self, request: web.Request) -> web.Response:
        tid = int(request.match_info["tid"])
        mine = [d for d in self.entities["Datastreams"].values() if d["Thing"]["@iot.id"] == tid]
        found = self._filtered(mine, request.query.get("$filter"))
        if found is None:
            return _error(400, "unsupported $filter")
        return web.json_response({"value": found})

    async def _create_observations(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, list):
            return _error(400, "CreateObservations body must be an array")
        answers: list[str] = []
        for item in body:
            ds_id = (item.get("Datastream") or {}).get("@iot.id") if isinstance(item, dict) else None
            datastream = self.entities["Datastreams"].get(ds_id)
            if datastream is None:
                return _error(400, f"CreateObservations: no Datastream {ds_id!r}")
            comps = item.get("components")
            if not isinstance(comps, list) or not set(comps) <= _COMPONENTS:
                return _error(400, f"CreateObservations: invalid components {comps!r}")
            if "result" not in comps or "phenomenonTime" not in comps:
                return _error(400, "CreateObservations: components need phenomenonTime and result")
            rows = item.get("dataArray")
            if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) != len(comps) for r in rows):
                return _error(400, "CreateObservations: every dataArray row needs one value per component")
            if "dataArray@iot.count" in item and item["dataArray@iot.count"] != len(rows):
                return _error(400, "CreateObservations: dataArray@iot.count does not match")
            thing = self.entities["Things"][datastream["Thing"]["@iot.id"]]
            fits = OBSERVATION_TYPES[datastream["observationType"]]
            for values in rows:
                row = dict(zip(comps, values, strict=True))
                foi = row.get("FeatureOfInterest/id")
                ok = (foi in self.entities["FeaturesOfInterest"] if foi is not None else bool(thing.get("Locations")))
                try:
                    datetime.fromisoformat(str(row["phenomenonTime"]))
                except ValueError:
                    ok = False
                ok = ok and fits(row["result"]) and not (self.reject and self.reject(row))
                if not ok:
                    answers.append("error")
                    continue
                self.observations.append({**row, "Datastream": ds_id})
                answers.append(self._self_link("Observations", len(self.observations)))
        return web.json_response(answers, status=201, dumps=json.dumps)


async def serve(host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the simulator until cancelled (the demo's stand-in FROST-Server)."""
    async with FrostSimulator(host=host, port=port) as sim:
        print(f"SensorThings (FROST) simulator on {sim.url} (not a real server)", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":  # python -m gateway.sim.platforms.frost [port]
    import sys

    try:
        asyncio.run(serve(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8080))
    except KeyboardInterrupt:
        pass
