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
device's ``ngsild_id`` tag; every Property carries ``observedAt`` and, where it has a unit, ``unitCode``
(UN/CEFACT Common Code); every entity gets ``dateObserved`` and ``refDevice``):

=================  ======================  ==================================================
citynode message   entity type             attributes
=================  ======================  ==================================================
air_quality        AirQualityObserved      temperature (CEL), relativeHumidity (0..1, C62),
                                           atmosphericPressure (A97 hPa), pm1, pm25, pm10 (GQ);
                                           extras: gasResistance (OHM, BME680 heater plate),
                                           batteryVoltage (VLT)
bin_fill           WasteContainer          fillingLevel (0..1, C62), temperature (CEL), status
                                           (burning >= burning_temperature, else lidOpen when
                                           the tilt switch fired, else ok); extras: distance
                                           (MMT), tilt, batteryVoltage
crowd_count        CrowdFlowObserved       peopleCount = max(wifi, ble) devices (one phone usually
                                           shows up in both, so the larger count is the lower
                                           bound of distinct people), dateObservedFrom/To from the
                                           counting window; extras: wifiDeviceCount,
                                           bleDeviceCount, batteryVoltage
passenger_count    PassengerCountObserved  custom type (CrowdFlowObserved describes people passing a
                                           place; its occupancy is a 0..1 share of time, not people
                                           on board): boardings, alightings (sum of doors), doors
                                           [{door, boardings, alightings}], peopleOnBoard,
                                           dateObservedFrom/To, location (GPS), batteryVoltage
device_status      Device                  firmwareVersion, uptime (SEC), resetCause,
                                           batteryVoltage, faults
=================  ======================  ==================================================

Fields not in the table become a Property named in lowerCamelCase with the reading's unit code, so a
new firmware field reaches the platform instead of being dropped. ``faults`` (fields the node could not
measure) is a list Property. Readings of an unknown message type are refused (dead-lettered).
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

__all__ = ["CORE_CONTEXT", "SDM_CONTEXT", "MappingError", "NgsiLdConfig", "NgsiLdSink", "build_entity"]

#: ETSI core context (GS CIM 009 V1.8, annex B); brokers also add it implicitly.
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
#: The Smart Data Models umbrella context (all subjects' attribute names).
SDM_CONTEXT = "https://smartdatamodels.org/context.jsonld"

UPSERT_PATH = "/ngsi-ld/v1/entityOperations/upsert"

# HTTP statuses after which sending the same request again can succeed.
_RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 425, 429})


class MappingError(Exception):
    """A group of readings has no NGSI-LD form (unknown message type, unusable value)."""


@dataclass(frozen=True)
class NgsiLdConfig:
    """``[sinks.ngsild]`` in the gateway's TOML file."""

    url: str  # broker base URL, e.g. http://orion-ld:1026
    name: str = "ngsild"
    context: tuple[str, ...] = (SDM_CONTEXT, CORE_CONTEXT)
    tenant: str | None = None  # NGSILD-Tenant header (clause 6.3.14)
    token: Secret = field(default_factory=Secret)  # bearer token
    timeout_s: float = 10.0
    id_prefix: str = "urn:ngsi-ld:"
    burning_temperature: float = 60.0  # °C: a bin at or above this is "burning"
    extra_headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Secrets are Secret values (never shown by repr); plain strings are taken too.
        for name in ("token",):
            object.__setattr__(self, name, Secret.of(getattr(self, name)))


# field -> (attribute, scale, unitCode override). scale converts percent to the models' 0..1.
_Attr = tuple[str, float, str | None]
_AIR: dict[str, _Attr] = {
    "temperature": ("temperature", 1.0, None),
    "relative_humidity": ("relativeHumidity", 0.01, "C62"),
    "pressure": ("atmosphericPressure", 1.0, None),
    "gas_resistance": ("gasResistance", 1.0, None),
    "pm1_0": ("pm1", 1.0, None),
    "pm2_5": ("pm25", 1.0, None),
    "pm10": ("pm10", 1.0, None),
    "battery": ("batteryVoltage", 1.0, None),
}
_BIN: dict[str, _Attr] = {
    "fill_level": ("fillingLevel", 0.01, "C62"),
    "temperature": ("temperature", 1.0, None),
    "distance": ("distance", 1.0, None),
    "tilt": ("tilt", 1.0, None),
    "battery": ("batteryVoltage", 1.0, None),
}
_CROWD: dict[str, _Attr] = {
    "wifi_devices": ("wifiDeviceCount", 1.0, None),
    "ble_devices": ("bleDeviceCount", 1.0, None),
    "battery": ("batteryVoltage", 1.0, None),
}
_PASSENGER: dict[str, _Attr] = {
    "occupancy": ("peopleOnBoard", 1.0, None),
    "battery": ("batteryVoltage", 1.0, None),
}
_STATUS: dict[str, _Attr] = {
    "firmware": ("firmwareVersion", 1.0, None),
    "uptime": ("uptime", 1.0, None),
    "reset_cause": ("resetCause", 1.0, None),
    "battery": ("batteryVoltage", 1.0, None),
}
_TYPES: dict[str, tuple[str, dict[str, _Attr]]] = {
    "air_quality": ("AirQualityObserved", _AIR),
    "bin_fill": ("WasteContainer", _BIN),
    "crowd_count": ("CrowdFlowObserved", _CROWD),
    "passenger_count": ("PassengerCountObserved", _PASSENGER),
    "device_status": ("Device", _STATUS),
}
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


def _location(readings: Sequence[Reading], observed_at: str) -> dict[str, Any] | None:
    """A GeoJSON Point from GPS readings, else from the device's ``latitude``/``longitude`` tags."""
    values = {r.field: r.value for r in readings}
    lat, lon = values.get("latitude"), values.get("longitude")
    if lat is None or lon is None:
        tags = readings[0].tags
        lat, lon = tags.get("latitude", tags.get("lat")), tags.get("longitude", tags.get("lon"))
        observed_at = ""
    try:
        point = [float(lon), float(lat)]  # type: ignore[arg-type]  # GeoJSON order: lon, lat (RFC 7946 3.1.1)
    except (TypeError, ValueError):
        return None
    geo: dict[str, Any] = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": point}}
    if observed_at:
        geo["observedAt"] = observed_at
    return geo


def build_entity(group: Sequence[Reading], config: NgsiLdConfig) -> dict[str, Any]:
    """The NGSI-LD entity (normalised form) for the readings of one uplink and time.

    Raises :class:`MappingError` naming the message type or field when there is no mapping.
    """
    first = group[0]
    if first.message_type not in _TYPES:
        raise MappingError(f"no NGSI-LD mapping for message type {first.message_type!r}")
    entity_type, table = _TYPES[first.message_type]
    observed_at = isoformat_utc(first.time)
    entity_id = first.tags.get("ngsild_id") or f"{config.id_prefix}{entity_type}:{first.dev_eui}"
    entity: dict[str, Any] = {"id": entity_id, "type": entity_type, "dateObserved": _date(first.time)}
    if entity_type != "Device":
        entity["refDevice"] = {"type": "Relationship", "object": f"{config.id_prefix}Device:{first.dev_eui}",
                               "observedAt": observed_at}
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
        attr, scale, unit_code = table.get(r.field, (_camel(r.field), 1.0, None))
        value = r.value
        if r.field == "firmware":
            value = _firmware(value)
        elif scale != 1.0:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise MappingError(f"{first.message_type}.{r.field}: expected a number, got {value!r}")
            value = round(value * scale, 6)
        entity[attr] = _prop(value, observed_at, unit_code or r.unit_code)

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
    interval = values.get("interval")
    if isinstance(interval, int | float) and first.message_type in ("crowd_count", "passenger_count"):
        entity["dateObservedFrom"] = _date(first.time - timedelta(seconds=float(interval)))
        entity["dateObservedTo"] = _date(first.time)
    location = _location(group, observed_at)
    if location is not None:
        entity["location"] = location
    entity["@context"] = list(config.context)
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
