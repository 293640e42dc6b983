"""OGC SensorThings API v1.1 sink (FROST-Server, as in Hamburg's Urban Data Platform).

On the first reading of a device and field the sink creates what SensorThings needs (OGC 18-088
clause 8.2): a ``Thing`` per device (``properties``: devEui, role, tags; a ``Location`` when the device's
tags carry latitude/longitude), a ``FeatureOfInterest`` per device (from the tags, else the configured
``default_location``), a ``Sensor`` per message type, an ``ObservedProperty`` per field and a
``Datastream`` per device and field with its ``unitOfMeasurement`` (name, symbol, QUDT definition).
Before creating, it looks the entity up (``$filter`` on name or ``properties/devEui``) so a lost id
cache does not duplicate entities. The ids are cached in a small SQLite table
(``sensorthings_ids``, by default in the gateway's store file), so a restart creates nothing again.

Observations go in one ``POST {url}/CreateObservations`` per batch (clause 14.3, data array), with the
components ``phenomenonTime``, ``result``, ``FeatureOfInterest/id`` and ``parameters`` (devEui, fCnt,
deduplicationId, for tracing a value back to its uplink). The 201 answer is an array with one entry
per row, a self link or ``"error <message>"`` (FROST-Server); every row answered with ``error...`` is a
per-row failure, dead-lettered with FROST's message and never counted as delivered. 5xx,
401/403/404/408/429, timeouts and connection errors are retryable; other 4xx refuse the batch (the
outbox isolates the bad rows).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.contract.records import Reading
from gateway.errors import ConfigError, SinkError
from gateway.service.config import Secret
from gateway.service.sinks.base import DeliveryResult, Row, RowFailure, Sink, isoformat_utc

__all__ = ["IdCache", "SensorThingsConfig", "SensorThingsSink", "row_refusal", "unit_of_measurement"]

_OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
_RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 425, 429})
_LOCATION_ID = re.compile(r"/[A-Za-z]+\((.*)\)\s*$")  # .../Things(7) or .../Things('a''b')

# UN/CEFACT Common Code -> (name, symbol, QUDT unit). The codes are those of codecs/schema.json.
_UNITS: dict[str, tuple[str, str, str]] = {
    "CEL": ("degree Celsius", "°C", "http://qudt.org/vocab/unit/DEG_C"),
    "P1": ("percent", "%", "http://qudt.org/vocab/unit/PERCENT"),
    "A97": ("hectopascal", "hPa", "http://qudt.org/vocab/unit/HectoPA"),
    "OHM": ("ohm", "Ω", "http://qudt.org/vocab/unit/OHM"),
    "GQ": ("microgram per cubic metre", "µg/m³", "http://qudt.org/vocab/unit/MicroGM-PER-M3"),
    "MMT": ("millimetre", "mm", "http://qudt.org/vocab/unit/MilliM"),
    "VLT": ("volt", "V", "http://qudt.org/vocab/unit/V"),
    "SEC": ("second", "s", "http://qudt.org/vocab/unit/SEC"),
    "HUR": ("hour", "h", "http://qudt.org/vocab/unit/HR"),
    "DD": ("degree", "°", "http://qudt.org/vocab/unit/DEG"),
    "2N": ("decibel milliwatt", "dBm", "http://qudt.org/vocab/unit/DeciB_M"),
}
_COUNT = {"name": "count", "symbol": "{count}", "definition": "http://qudt.org/vocab/unit/NUM"}
_NO_UNIT = {"name": None, "symbol": None, "definition": None}  # truth and category observations

_SENSORS: dict[str, str] = {
    "air_quality": "BME680 climate and gas sensor with an SDS011 or PMS5003 particulate sensor",
    "bin_fill": "Ultrasonic distance sensor with tilt switch in a waste-bin lid",
    "passenger_count": "Infrared break-beam door counters with GPS in a bus or tram",
    "crowd_count": "Anonymous WiFi probe-request and BLE advertisement counter (no identifiers kept)",
    "device_status": "citynode node self-diagnostics",
}


def unit_of_measurement(reading: Reading) -> dict[str, Any]:
    """The Datastream's unitOfMeasurement for a reading (clause 8.2.4, table 7)."""
    if isinstance(reading.value, (bool, str, list)):
        return dict(_NO_UNIT)
    if reading.unit_code in _UNITS:
        name, symbol, definition = _UNITS[reading.unit_code]
        return {"name": name, "symbol": symbol, "definition": definition}
    if reading.unit_code:
        return {"name": reading.unit or reading.unit_code, "symbol": reading.unit or reading.unit_code,
                "definition": f"urn:un:unece:uncefact:rec20:{reading.unit_code}"}
    return dict(_COUNT)


def _observation_type(value: Any) -> str:
    if isinstance(value, bool):
        return _OM + "OM_TruthObservation"
    if isinstance(value, int):
        return _OM + "OM_CountObservation"
    if isinstance(value, float):
        return _OM + "OM_Measurement"
    if isinstance(value, str):
        return _OM + "OM_CategoryObservation"
    return _OM + "OM_Observation"


def _result(reading: Reading) -> Any:
    if reading.field == "firmware" and isinstance(reading.value, list | tuple):
        return ".".join(str(v) for v in reading.value)
    if isinstance(reading.value, int) and not isinstance(reading.value, bool) and reading.unit_code in _UNITS:
        return float(reading.value)  # a measurement with a unit that happened to be whole
    if isinstance(reading.value, float) and not reading.unit_code and reading.value.is_integer():
        return int(reading.value)  # a count
    return reading.value


def _field_kind(field: str) -> str:
    """``doors.1.boardings`` -> ``boardings``: list items share the ObservedProperty of their item field."""
    return field.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class SensorThingsConfig:
    """``[sinks.sensorthings]`` in the gateway's TOML file."""

    url: str  # service root with version, e.g. http://frost:8080/FROST-Server/v1.1
    name: str = "sensorthings"
    id_cache: str | None = None  # SQLite file for the id mapping (default: the gateway's store)
    username: Secret = field(default_factory=Secret)  # HTTP basic auth (FROST's BasicAuthProvider)
    password: Secret = field(default_factory=Secret)
    token: Secret = field(default_factory=Secret)  # bearer token (e.g. Keycloak in front of FROST)
    timeout_s: float = 10.0
    default_location: tuple[float, float] | None = None  # (longitude, latitude) for untagged devices

    def __post_init__(self) -> None:
        # Secrets are Secret values (never shown by repr); plain strings are taken too.
        for name in ("username", "password", "token"):
            object.__setattr__(self, name, Secret.of(getattr(self, name)))


class IdCache:
    """The sink's ``(kind, key) -> @iot.id`` mapping, persisted in SQLite so restarts reuse entities."""

    def __init__(self, path: str | Path, sink: str) -> None:
        self.path, self.sink = str(path), sink
        self._db: sqlite3.Connection | None = None
        self._ids: dict[tuple[str, str], Any] = {
            (kind, key): json.loads(iot_id)
            for kind, key, iot_id in self._conn().execute(
                "SELECT kind, key, iot_id FROM sensorthings_ids WHERE sink = ?", (sink,))
        }

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS sensorthings_ids (sink TEXT NOT NULL, kind TEXT NOT NULL, "
                "key TEXT NOT NULL, iot_id TEXT NOT NULL, PRIMARY KEY (sink, kind, key))"
            )
        return self._db

    def get(self, kind: str, key: str) -> Any:
        return self._ids.get((kind, key))

    def put(self, kind: str, key: str, iot_id: Any) -> None:
        self._conn().execute(
            "INSERT OR REPLACE INTO sensorthings_ids (sink, kind, key, iot_id) VALUES (?, ?, ?, ?)",
            (self.sink, kind, key, json.dumps(iot_id)),
        )
        self._ids[(kind, key)] = iot_id

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        """Close the connection; the next :meth:`put` reopens it."""
        if self._db is not None:
            self._db.close()
            self._db = None


class _Refused(Exception):
    """The server refused to create an entity for good (4xx): the rows that need it fail."""


class SensorThingsSink(Sink):
    """Sends readings to a SensorThings API v1.1 server as Observations in Datastreams."""

    def __init__(self, config: SensorThingsConfig, *, session: aiohttp.ClientSession | None = None) -> None:
        if not config.id_cache:
            raise ConfigError("sinks.sensorthings.id_cache: a file for the entity id mapping is required")
        self.config = config
        self.name = config.name
        self.ids = IdCache(config.id_cache, config.name)
        self._session = session
        self._own_session = session is None

    # -- HTTP ---------------------------------------------------------------------------------------

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            auth = None
            if self.config.username:
                auth = aiohttp.BasicAuth(self.config.username.get(), self.config.password.get())
            headers = {"Authorization": f"Bearer {self.config.token.get()}"} if self.config.token else None
            self._session = aiohttp.ClientSession(
                auth=auth, headers=headers, timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
            self._own_session = True
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()
        self._session = None if self._own_session else self._session
        self.ids.close()

    async def _request(self, method: str, path: str, body: Any = None,
                       params: dict[str, str] | None = None) -> tuple[int, Any, str | None]:
        url = self.config.url.rstrip("/") + path
        client = await self._client()
        try:
            async with client.request(method, url, json=body, params=params) as resp:
                text = await resp.text()
                status, location = resp.status, resp.headers.get("Location")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SinkError(f"SensorThings {method} {url} failed: {exc!r}", retryable=True) from exc
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = text
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise SinkError(f"SensorThings {method} {url}: HTTP {status} {_message(payload)}", retryable=True)
        return status, payload, location

    # -- entities -----------------------------------------------------------------------------------

    async def _ensure(self, kind: str, key: str, collection: str, body: dict[str, Any],
                      lookup: tuple[str, str] | None) -> Any:
        """The @iot.id of an entity: from the cache, else found on the server, else created."""
        iot_id = self.ids.get(kind, key)
        if iot_id is not None:
            return iot_id
        if lookup is not None:
            path, flt = lookup
            status, payload, _ = await self._request("GET", path, params={"$filter": flt})
            if status == 200 and isinstance(payload, dict) and payload.get("value"):
                iot_id = payload["value"][0]["@iot.id"]
        if iot_id is None:
            status, payload, location = await self._request("POST", f"/{collection}", body)
            if status != 201:
                raise _Refused(f"SensorThings refused to create {collection} {key!r}: HTTP {status} "
                               f"{_message(payload)}")
            iot_id = _id_from(location, payload)
        self.ids.put(kind, key, iot_id)
        return iot_id

    def _point(self, reading: Reading) -> list[float] | None:
        tags = reading.tags
        lat, lon = tags.get("latitude", tags.get("lat")), tags.get("longitude", tags.get("lon"))
        try:
            return [float(lon), float(lat)]  # type: ignore[arg-type]  # GeoJSON order (RFC 7946 3.1.1)
        except (TypeError, ValueError):
            return None

    async def _datastream(self, r: Reading) -> tuple[Any, Any]:
        """(Datastream id, FeatureOfInterest id) for a reading, creating what is missing."""
        point = self._point(r)
        thing: dict[str, Any] = {
            "name": r.device_name or r.dev_eui,
            "description": f"citynode {r.message_type} node {r.dev_eui}",
            "properties": {"devEui": r.dev_eui, "role": r.message_type, "tags": dict(r.tags)},
        }
        if point is not None:
            thing["Locations"] = [{"name": f"{r.device_name or r.dev_eui} location",
                                   "description": "from the device's tags", "encodingType": "application/geo+json",
                                   "location": {"type": "Point", "coordinates": point}}]
        thing_id = await self._ensure("thing", r.dev_eui, "Things", thing,
                                      ("/Things", f"properties/devEui eq {_quote(r.dev_eui)}"))
        foi_point = point or (list(self.config.default_location) if self.config.default_location else None)
        if foi_point is None:
            raise _Refused(f"device {r.dev_eui} has no location for its FeatureOfInterest: set latitude/"
                           "longitude tags or sinks.sensorthings.default_location")
        foi_id = await self._ensure("foi", r.dev_eui, "FeaturesOfInterest", {
            "name": f"{r.device_name or r.dev_eui} site", "description": f"where {r.dev_eui} measures",
            "encodingType": "application/geo+json", "feature": {"type": "Point", "coordinates": foi_point},
            "properties": {"devEui": r.dev_eui},
        }, ("/FeaturesOfInterest", f"properties/devEui eq {_quote(r.dev_eui)}"))
        sensor_name = f"citynode {r.message_type}"
        sensor_id = await self._ensure("sensor", r.message_type, "Sensors", {
            "name": sensor_name, "description": _SENSORS.get(r.message_type, r.message_type),
            "encodingType": "text/plain", "metadata": _SENSORS.get(r.message_type, r.message_type),
        }, ("/Sensors", f"name eq {_quote(sensor_name)}"))
        kind = _field_kind(r.field)
        op_id = await self._ensure("observed_property", kind, "ObservedProperties", {
            "name": kind, "definition": f"urn:citynode:observed-property:{kind}",
            "description": f"{kind} as measured by citynode nodes (see codecs/schema.json)",
        }, ("/ObservedProperties", f"name eq {_quote(kind)}"))
        ds_name = f"{r.dev_eui} {r.field}"
        ds_id = await self._ensure("datastream", f"{r.dev_eui}/{r.field}", "Datastreams", {
            "name": ds_name, "description": f"{r.field} of {r.device_name or r.dev_eui}",
            "observationType": _observation_type(_result(r)), "unitOfMeasurement": unit_of_measurement(r),
            "Thing": {"@iot.id": thing_id}, "Sensor": {"@iot.id": sensor_id},
            "ObservedProperty": {"@iot.id": op_id},
        }, (f"/Things({_literal(thing_id)})/Datastreams", f"name eq {_quote(ds_name)}"))
        return ds_id, foi_id

    # -- delivery -----------------------------------------------------------------------------------

    async def deliver(self, batch: Sequence[Row]) -> DeliveryResult:
        failures: list[RowFailure] = []
        streams: dict[Any, list[tuple[int, list[Any]]]] = {}
        for rid, r in batch:
            try:
                ds_id, foi_id = await self._datastream(r)
            except _Refused as exc:
                failures.append(RowFailure(rid, str(exc)))
                continue
            params = {"devEui": r.dev_eui, "fCnt": r.f_cnt, "deduplicationId": r.deduplication_id}
            streams.setdefault(ds_id, []).append((rid, [isoformat_utc(r.time), _result(r), foi_id, params]))
        if not streams:
            return DeliveryResult(tuple(failures))
        body = [
            {"Datastream": {"@iot.id": ds_id},
             "components": ["phenomenonTime", "result", "FeatureOfInterest/id", "parameters"],
             "dataArray@iot.count": len(rows), "dataArray": [values for _, values in rows]}
            for ds_id, rows in streams.items()
        ]
        order = [rid for rows in streams.values() for rid, _ in rows]
        status, payload, _ = await self._request("POST", "/CreateObservations", body)
        if status not in (200, 201):
            raise SinkError(f"SensorThings CreateObservations: HTTP {status} {_message(payload)}", retryable=False)
        if not isinstance(payload, list) or len(payload) != len(order):
            raise SinkError(f"SensorThings CreateObservations answered {len(payload) if isinstance(payload, list) else payload!r}"
                            f" entries for {len(order)} rows", retryable=False)
        for rid, answer in zip(order, payload, strict=True):
            refusal = row_refusal(answer)
            if refusal is not None:
                failures.append(RowFailure(rid, refusal))
        return DeliveryResult(tuple(failures))


def row_refusal(answer: Any) -> str | None:
    """The dead-letter reason for one ``CreateObservations`` row answer, or None when the row was created.

    FROST-Server answers a created row with its self link (``""`` with ``$resultMetadata=off``) and a
    refused row with ``"error " + message`` (``ServiceDataArray``; its own tests check
    ``startsWith("error")`` case-insensitively). Anything else is not a created entity either.
    """
    if isinstance(answer, str):
        if answer[:5].lower() != "error":
            return None
        message = answer[5:].strip() or "no reason given"
        return f'SensorThings refused the observation ("error" row in CreateObservations): {message}'
    return f"SensorThings CreateObservations answered {json.dumps(answer)[:100]} for the row, not a self link"


def _literal(iot_id: Any) -> str:
    """An @iot.id in a URL path: numbers as is, strings quoted (OData)."""
    return str(iot_id) if isinstance(iot_id, int) else _quote(str(iot_id))


def _quote(text: str) -> str:
    """An OData string literal: in single quotes, a quote doubled."""
    return "'" + text.replace("'", "''") + "'"


def _id_from(location: str | None, payload: Any) -> Any:
    if isinstance(payload, dict) and "@iot.id" in payload:
        return payload["@iot.id"]
    m = _LOCATION_ID.search(location or "")
    if m is None:
        raise SinkError(f"SensorThings created an entity without a usable Location header ({location!r})",
                        retryable=False)
    raw = m.group(1).strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":  # a string id, quoted as FROST's UrlHelper.quoteForUrl
        return raw[1:-1].replace("''", "'")
    return int(raw) if raw.lstrip("-").isdigit() else raw


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        return str(payload.get("message") or json.dumps(payload))[:300]
    return str(payload)[:300]
