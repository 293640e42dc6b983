"""NGSI-LD sink: readings become FIWARE Smart Data Models entities, upserted in batches.

Protocol (ETSI GS CIM 009, NGSI-LD API):
* ``POST {url}/ngsi-ld/v1/entityOperations/upsert?options=update`` (clause 5.6.8 / 6.15) with
  ``Content-Type: application/ld+json`` and the ``@context`` inside every entity of the array (clause
  6.3.5: with ld+json the context travels in the body, not in a Link header). ``options=update`` merges
  our attributes into an existing entity instead of replacing it, so attributes the city maintains
  itself (``location`` of a bin, ``address``, ``name``) are kept.
* 201 (some entities created) and 204 (all updated) are success; 207 carries a BatchOperationResult
  ``{"success": [ids], "errors": [{"entityId", "error": ProblemDetails}]}`` and only the entities in
  ``errors`` fail (5xx/429/503 per entity: retried; 4xx: dead-lettered).
* 400/413/415/422 (a request the broker will never accept): not retryable; the worker splits the batch
  to isolate the bad readings. 401/403/404/408/429, 5xx, timeouts and connection errors: retryable
  (a wrong token or a broker restarting must not dead-letter the whole outbox).

Mapping (one entity update per uplink and reading time, id ``urn:ngsi-ld:<Type>:<devEui>`` or the
device's ``ngsild_id`` tag): the table in :mod:`gateway.service.sinks.ngsild_models` (and docs/platforms.md)
says, per message, the Smart Data Models type and for every codec field its attribute, model and unit.
Every entity validates against its type's published schema: model attributes in the model's units and
ranges (fractions 0..1, ``pressure`` in hPa, ``WasteContainer.refDevice`` an array, ``Device`` with its
required ``controlledProperty`` and ``batteryLevel`` 0..1), and attributes outside the models defined in
citynode's own context. Every Property carries ``observedAt`` and, where it has a unit, ``unitCode``
(UN/CEFACT Common Code).

``@context`` (unless ``context`` is configured): the type's subject context (e.g. dataModel.Environment's
``context.jsonld``), the citynode context (``citynode_context_url``, served by the gateway at
``/context/citynode.jsonld``, shipped as ``codecs/ngsi-ld/citynode.jsonld``) and the ETSI core context.

``location``: a GPS reading of the uplink, else the device's ``lat``/``lon`` (or ``latitude``/
``longitude``) tags, which provisioning copies from the inventory into ChirpStack, else the sink's
``default_location``. A type whose model requires ``location`` (AirQualityObserved, WasteContainer) and
has none is not sent: its readings become dead letters naming the missing attribute, unless the
device has an ``ngsild_id`` tag (an entity the city keeps, with its own location: the update merges).

Fields not in the table become a Property named in lowerCamelCase with the reading's unit code, so a
new firmware field reaches the platform instead of being dropped (a test fails until it is mapped).
Readings of an unknown message type are refused (dead-lettered).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from gateway.contract.records import Reading
from gateway.errors import SinkError
from gateway.service.config import Secret
from gateway.service.sinks.base import DeliveryResult, Row, RowFailure, Sink, group_uplinks, isoformat_utc
from gateway.service.sinks.ngsild_models import (
    CITYNODE_CONTEXT_PATH,
    CORE_CONTEXT,
    ENTITIES,
    controlled_properties,
)

__all__ = [
    "CORE_CONTEXT",
    "DEFAULT_CITYNODE_CONTEXT_URL",
    "SDM_CONTEXT",
    "MappingError",
    "NgsiLdConfig",
    "NgsiLdSink",
    "battery_level",
    "build_entity",
]

#: The Smart Data Models umbrella context: obsolete (smart-data-models/data-models README), no longer
#: sent by default; kept for configurations that name it.
SDM_CONTEXT = "https://smartdatamodels.org/context.jsonld"
#: Where brokers fetch the citynode context when the gateway cannot tell its own address.
DEFAULT_CITYNODE_CONTEXT_URL = "http://127.0.0.1:8090" + CITYNODE_CONTEXT_PATH

UPSERT_PATH = "/ngsi-ld/v1/entityOperations/upsert"

# HTTP statuses after which sending the same request again can succeed.
_RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 425, 429})


class MappingError(Exception):
    """A group of readings has no model-valid NGSI-LD form (unknown message type, no location...)."""


@dataclass(frozen=True)
class NgsiLdConfig:
    """``[sinks.ngsild]`` in the gateway's TOML file."""

    url: str  # broker base URL, e.g. http://orion-ld:1026
    name: str = "ngsild"
    context: tuple[str, ...] | None = None  # None: subject context + citynode context + core, per type
    citynode_context_url: str = DEFAULT_CITYNODE_CONTEXT_URL  # must be reachable by the broker
    tenant: str | None = None  # NGSILD-Tenant header (clause 6.3.14)
    token: Secret = field(default_factory=Secret)  # bearer token
    timeout_s: float = 10.0
    id_prefix: str = "urn:ngsi-ld:"
    burning_temperature: float = 60.0  # °C: a bin at or above this is "burning"
    default_location: tuple[float, float] | None = None  # (longitude, latitude) for devices without one
    battery_empty_v: float = 3.0  # V: batteryLevel 0 (Device); a Li-ion cell at its cut-off
    battery_full_v: float = 4.2  # V: batteryLevel 1; a full Li-ion cell
    extra_headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Secrets are Secret values (never shown by repr); plain strings are taken too.
        for name in ("token",):
            object.__setattr__(self, name, Secret.of(getattr(self, name)))


_DOOR_FIELD = re.compile(r"^doors\.(\d+)\.(door|boardings|alightings)$")


def _camel(name: str) -> str:
    head, *rest = re.split(r"[_.\s]+", name)
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _date(t: datetime) -> dict[str, Any]:
    return {"type": "Property", "value": {"@type": "DateTime", "@value": isoformat_utc(t)}}


def _prop(value: Any, observed_at: str, unit_code: str | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"type": "Property", "value": value, "observedAt": observed_at}
    if unit_code:
        p["unitCode"] = unit_code
    return p


def _firmware(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ".".join(str(int(v)) for v in value)
    return str(value)


def battery_level(volts: float, config: NgsiLdConfig) -> float:
    """Device.batteryLevel (0 empty .. 1 full) from the battery voltage, linear between the configured
    ``battery_empty_v`` and ``battery_full_v`` and clamped (a coarse estimate: cells are not linear)."""
    span = config.battery_full_v - config.battery_empty_v
    return round(min(1.0, max(0.0, (volts - config.battery_empty_v) / span)), 3)


def _point(lat: Any, lon: Any) -> list[float] | None:
    try:
        point = [float(lon), float(lat)]  # GeoJSON order: lon, lat (RFC 7946 3.1.1)
    except (TypeError, ValueError):
        return None
    if not (-180 <= point[0] <= 180 and -90 <= point[1] <= 90):
        return None
    return point


def _location(readings: Sequence[Reading], observed_at: str,
              default: tuple[float, float] | None) -> dict[str, Any] | None:
    """A GeoJSON Point from GPS readings, else the device's position tags, else ``default``."""
    values = {r.field: r.value for r in readings}
    point = _point(values.get("latitude"), values.get("longitude"))
    if point is None:
        tags = readings[0].tags
        point = _point(tags.get("latitude", tags.get("lat")), tags.get("longitude", tags.get("lon")))
        observed_at = ""  # a fixed position, not observed by this uplink
    if point is None and default is not None:
        point = [float(default[0]), float(default[1])]
    if point is None:
        return None
    geo: dict[str, Any] = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": point}}
    if observed_at:
        geo["observedAt"] = observed_at
    return geo


def build_entity(group: Sequence[Reading], config: NgsiLdConfig) -> dict[str, Any]:
    """The NGSI-LD entity (normalised form) for the readings of one uplink and time.

    Raises :class:`MappingError` naming the message type, field or missing model attribute when there
    is no model-valid entity.
    """
    first = group[0]
    model = ENTITIES.get(first.message_type)
    if model is None:
        raise MappingError(f"no NGSI-LD mapping for message type {first.message_type!r}")
    entity_type, fields = model.entity_type, model.fields
    observed_at = isoformat_utc(first.time)
    entity_id = first.tags.get("ngsild_id") or f"{config.id_prefix}{entity_type}:{first.dev_eui}"
    entity: dict[str, Any] = {"id": entity_id, "type": entity_type, "dateObserved": _date(first.time)}
    device_id = f"{config.id_prefix}Device:{first.dev_eui}"
    if entity_type != "Device":
        # WasteContainer.refDevice is an array of ids (its schema); the other models take one id.
        target: str | list[str] = [device_id] if entity_type == "WasteContainer" else device_id
        entity["refDevice"] = {"type": "Relationship", "object": target, "observedAt": observed_at}
    values: dict[str, Any] = {}
    doors: dict[int, dict[str, int]] = {}
    for r in group:
        values[r.field] = r.value
        door = _DOOR_FIELD.match(r.field)
        if door:
            doors.setdefault(int(door.group(1)), {})[door.group(2)] = int(r.value)
            continue
        if r.field in ("latitude", "longitude", "interval"):
            continue  # become location and dateObservedFrom below
        if r.field == "faults":
            entity["faults"] = _prop(list(r.value) if isinstance(r.value, list | tuple) else [r.value],
                                     observed_at)
            continue
        attr = fields.get(r.field)
        name = attr.attribute if attr else _camel(r.field)
        value = r.value
        if r.field == "firmware":
            value = _firmware(value)
        elif attr is not None and attr.scale != 1.0:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise MappingError(f"{first.message_type}.{r.field}: expected a number, got {value!r}")
            value = round(value * attr.scale, 6)
        entity[name] = _prop(value, observed_at, (attr.unit_code if attr else None) or r.unit_code)

    if first.message_type == "bin_fill":
        temperature = values.get("temperature")
        if isinstance(temperature, int | float) and temperature >= config.burning_temperature:
            status = "burning"
        elif values.get("tilt") is True:
            status = "lidOpen"  # the tilt switch sits in the lid: open lid or a tipped bin
        else:
            status = "ok"
        entity["status"] = _prop(status, observed_at)
    if first.message_type == "crowd_count":
        counts = [values[k] for k in ("wifi_devices", "ble_devices") if isinstance(values.get(k), int | float)]
        if counts:
            entity["peopleCount"] = _prop(int(max(counts)), observed_at)
    if first.message_type == "passenger_count" and doors:
        items = [{"door": d.get("door", i), "boardings": d.get("boardings", 0), "alightings": d.get("alightings", 0)}
                 for i, d in sorted(doors.items())]
        entity["doors"] = _prop(items, observed_at)
        entity["boardings"] = _prop(sum(d["boardings"] for d in items), observed_at)
        entity["alightings"] = _prop(sum(d["alightings"] for d in items), observed_at)
    if first.message_type == "device_status":
        entity["controlledProperty"] = _prop(controlled_properties(first.tags.get("role")), observed_at)
        entity["category"] = _prop(["sensor"], observed_at)
        entity["supportedProtocol"] = _prop(["lora"], observed_at)
        battery = values.get("battery")
        if isinstance(battery, int | float) and not isinstance(battery, bool):
            entity["batteryLevel"] = _prop(battery_level(float(battery), config), observed_at, "C62")
    interval = values.get("interval")
    if isinstance(interval, int | float) and first.message_type in ("crowd_count", "passenger_count"):
        entity["dateObservedFrom"] = _date(first.time - timedelta(seconds=float(interval)))
        entity["dateObservedTo"] = _date(first.time)
    location = _location(group, observed_at, config.default_location)
    if location is not None:
        entity["location"] = location
    elif "location" in model.required and "ngsild_id" not in first.tags:
        raise MappingError(
            f"{entity_type}.location: required by the model but device {first.dev_eui} has no position "
            f"(set its lat/lon tags, or sinks.{config.name}.default_location)")
    entity["@context"] = list(config.context) if config.context else model.context(config.citynode_context_url)
    return entity


def _problem(body: Any) -> str:
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("type", "title", "detail") if body.get(k)]
        return ": ".join(parts) or json.dumps(body)[:200]
    return str(body)[:200]


class NgsiLdSink(Sink):
    """Upserts Smart Data Models entities into an NGSI-LD broker (Orion-LD, Scorpio, Stellio)."""

    def __init__(self, config: NgsiLdConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.name = config.name
        self._session = session
        self._own_session = session is None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/ld+json", "Accept": "application/json",
                   **self.config.extra_headers}
        if self.config.tenant:
            headers["NGSILD-Tenant"] = self.config.tenant
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token.get()}"
        return headers

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
            self._own_session = True
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()
        self._session = None if self._own_session else self._session

    async def deliver(self, batch: Sequence[Row]) -> DeliveryResult:
        failures: list[RowFailure] = []
        # One entity update per uplink and time; a broker applies a batch as a set, so two updates of
        # the same entity go in successive requests ("rounds") to keep their order and both in history.
        rounds: list[list[tuple[dict[str, Any], list[int]]]] = []
        for group in group_uplinks(batch):
            ids = [rid for rid, _ in group]
            try:
                entity = build_entity([r for _, r in group], self.config)
            except MappingError as exc:
                failures.extend(RowFailure(rid, str(exc)) for rid in ids)
                continue
            for round_ in rounds:
                if all(e["id"] != entity["id"] for e, _ in round_):
                    round_.append((entity, ids))
                    break
            else:
                rounds.append([(entity, ids)])
        for n, round_ in enumerate(rounds):
            try:
                failures.extend(await self._upsert(round_))
            except SinkError as exc:
                if n == 0:
                    raise
                # Earlier rounds arrived: report the rest as failed rows so only they are sent again.
                failures.extend(RowFailure(rid, str(exc), retryable=True)
                                for later in rounds[n:] for _, ids in later for rid in ids)
                break
        return DeliveryResult(tuple(failures))

    async def _upsert(self, entities: list[tuple[dict[str, Any], list[int]]]) -> list[RowFailure]:
        url = self.config.url.rstrip("/") + UPSERT_PATH
        body = json.dumps([e for e, _ in entities], ensure_ascii=False)
        client = await self._client()
        try:
            async with client.post(url, params={"options": "update"}, data=body.encode(),
                                   headers=self._headers()) as resp:
                status = resp.status
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SinkError(f"NGSI-LD upsert to {url} failed: {exc!r}", retryable=True) from exc
        if status in (200, 201, 204):
            return []
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = text
        if status == 207 and isinstance(payload, dict):
            return self._multi_status(payload, entities)
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        raise SinkError(f"NGSI-LD upsert to {url}: HTTP {status} {_problem(payload)}", retryable=retryable)

    @staticmethod
    def _multi_status(payload: dict[str, Any], entities: list[tuple[dict[str, Any], list[int]]]) -> list[RowFailure]:
        """BatchOperationResult (clause 5.2.16): fail the rows of each entity listed in ``errors``."""
        rows_of = {e["id"]: ids for e, ids in entities}
        failures: list[RowFailure] = []
        for err in payload.get("errors", []):
            problem = err.get("error", {}) if isinstance(err, dict) else {}
            entity_id = err.get("entityId") if isinstance(err, dict) else None
            status = problem.get("status") if isinstance(problem, dict) else None
            retryable = isinstance(status, int) and (status >= 500 or status in _RETRYABLE_STATUS)
            reason = f"NGSI-LD 207 for {entity_id}: {status} {_problem(problem)}"
            failures.extend(RowFailure(rid, reason, retryable) for rid in rows_of.get(entity_id, []))
        listed = {err.get("entityId") for err in payload.get("errors", []) if isinstance(err, dict)}
        unknown = [rid for eid, ids in rows_of.items()
                   if eid not in listed and eid not in set(payload.get("success", [])) for rid in ids]
        # An entity neither in success nor in errors: the broker said nothing, send it again.
        failures.extend(RowFailure(rid, "NGSI-LD 207 did not mention the entity", True) for rid in unknown)
        return failures
