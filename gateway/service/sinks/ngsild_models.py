"""Which Smart Data Models entity each citynode message becomes, as data, and the citynode JSON-LD context.

This table is the one place that says, per message, the NGSI-LD entity type, its Smart Data Models
subject (whose own ``context.jsonld`` defines the type and the model attributes), and for every codec
field of ``codecs/schema.json`` the attribute it becomes, the model that defines it (``citynode`` for the
attributes outside the models) and its scale. :mod:`gateway.service.sinks.ngsild` builds entities from it,
:func:`citynode_context` generates ``codecs/ngsi-ld/citynode.jsonld`` from it and the schema (a test fails
when the shipped file is stale), and docs/platforms.md carries the same table for people.

Facts from the published models (smart-data-models/dataModel.<Subject>/<Type>/schema.json, read for this
table; docs/platforms.md has the commits):

* AirQualityObserved (Environment): requires id, type, dateObserved, location; ``pressure`` in hPa
  (there is no ``atmosphericPressure``), ``relativeHumidity`` 0..1, ``pm1``/``pm25``/``pm10`` numbers,
  ``refDevice`` one entity id.
* WasteContainer (WasteManagement): requires id, type, location; ``fillingLevel`` 0..1, ``status`` from
  an enum, ``refDevice`` an array of entity ids (at least one). ``dateObserved`` is not in its schema
  but in its subject's context (WasteObserved), so it keeps that IRI.
* CrowdFlowObserved (Transportation): requires id, type, dateObserved; ``peopleCount`` an integer >= 0,
  ``occupancy`` a 0..1 share of time (not people), ``dateObservedFrom``/``To``. ``refDevice`` is not
  in its schema but in the Transportation context (TrafficFlowObserved).
* Device (Device): requires id, type, controlledProperty (an array from an enum); ``batteryLevel`` 0..1
  (or -1), ``firmwareVersion`` text, ``category``/``supportedProtocol`` arrays from enums.
* No published model fits passenger counts: CrowdFlowObserved counts people passing a walkway,
  FareCollectionSystem one ticket transaction, FleetVehicleStatus has no passenger attribute. citynode
  defines ``PassengerCountObserved`` in its own context and takes the shared observation attributes
  (dateObserved, dateObservedFrom/To, refDevice, location) from the Transportation context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.contract.schema import FieldSpec, Schema, load_schema

__all__ = [
    "CITYNODE_CONTEXT_PATH",
    "CITYNODE_VOCAB",
    "CORE_CONTEXT",
    "ENTITIES",
    "SUBJECT_CONTEXTS",
    "AttributeMap",
    "EntityMap",
    "citynode_context",
    "citynode_context_bytes",
    "citynode_context_path",
    "citynode_context_text",
    "context_stale",
    "controlled_properties",
    "write_context",
]

#: ETSI core context (GS CIM 009 V1.8, annex B); brokers add it implicitly, we send it last.
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
#: Each Smart Data Models subject's own context (the umbrella smartdatamodels.org/context.jsonld is
#: obsolete, says smart-data-models/data-models README "@context"); the models' examples use these URLs.
SUBJECT_CONTEXTS = {
    subject: f"https://raw.githubusercontent.com/smart-data-models/dataModel.{subject}/master/context.jsonld"
    for subject in ("Environment", "WasteManagement", "Transportation", "Device")
}
#: IRIs of the terms citynode defines (a URN: it names, it need not resolve).
CITYNODE_VOCAB = "urn:citynode:ngsi-ld:"
#: Where the gateway's HTTP API serves codecs/ngsi-ld/citynode.jsonld.
CITYNODE_CONTEXT_PATH = "/context/citynode.jsonld"

CITYNODE = "citynode"  # the "model" of attributes and types defined by citynode's own context


@dataclass(frozen=True)
class AttributeMap:
    """One NGSI-LD attribute: the codec field it comes from (``message.field``, or a description of how
    it is derived), the model that defines it (or ``citynode``), the value scale and unit code."""

    attribute: str
    model: str
    source: str  # codec field name, or how the value is derived
    scale: float = 1.0  # percent -> the models' 0..1
    unit_code: str | None = None  # overrides the field's UN/CEFACT code (C62 = "one", for fractions)
    kind: str = "Property"  # Property, GeoProperty or Relationship
    description: str = ""


@dataclass(frozen=True)
class EntityMap:
    """The entity one citynode message becomes."""

    message: str
    entity_type: str
    subject: str  # Smart Data Models subject whose context defines the type and model attributes
    model: str  # the model the type is defined by: the type itself, or "citynode"
    attributes: tuple[AttributeMap, ...]
    required: tuple[str, ...]  # attributes the model's schema requires (besides id and type)

    @property
    def fields(self) -> dict[str, AttributeMap]:
        """Codec field -> attribute, for the attributes that come straight from one field."""
        return {a.source: a for a in self.attributes if a.source.isidentifier()}

    def context(self, citynode_url: str) -> list[str]:
        return [SUBJECT_CONTEXTS[self.subject], citynode_url, CORE_CONTEXT]


def _a(attribute: str, model: str, source: str, **kw: Any) -> AttributeMap:
    return AttributeMap(attribute, model, source, **kw)


_OBSERVED = "uplink time (network receive time - offset_s)"
_BATTERY_V = "battery supply voltage of the node"
_REF_DEVICE = "urn:ngsi-ld:Device:<devEui> (the node's Device entity)"
_LOCATION = "GPS reading, else the device's lat/lon tags, else sinks.<name>.default_location"
_FAULTS_DOC = "fields the node could not measure in this reading (list of codec field names)"


def _faults() -> AttributeMap:
    return AttributeMap("faults", CITYNODE, "faults", description=_FAULTS_DOC)

ENTITIES: dict[str, EntityMap] = {m.message: m for m in (
    EntityMap("air_quality", "AirQualityObserved", "Environment", "AirQualityObserved", (
        _a("dateObserved", "AirQualityObserved", _OBSERVED),
        _a("location", "AirQualityObserved", _LOCATION, kind="GeoProperty"),
        _a("refDevice", "AirQualityObserved", _REF_DEVICE, kind="Relationship"),
        _a("temperature", "AirQualityObserved", "temperature"),
        _a("relativeHumidity", "AirQualityObserved", "relative_humidity", scale=0.01, unit_code="C62"),
        _a("pressure", "AirQualityObserved", "pressure"),
        _a("pm1", "AirQualityObserved", "pm1_0"),
        _a("pm25", "AirQualityObserved", "pm2_5"),
        _a("pm10", "AirQualityObserved", "pm10"),
        _a("gasResistance", CITYNODE, "gas_resistance",
           description="BME680 gas sensor heater-plate resistance; falls as VOC concentration rises"),
        _a("batteryVoltage", CITYNODE, "battery", description=_BATTERY_V),
        _faults(),
    ), required=("dateObserved", "location")),
    EntityMap("bin_fill", "WasteContainer", "WasteManagement", "WasteContainer", (
        _a("dateObserved", "WasteManagement context", _OBSERVED),
        _a("location", "WasteContainer", _LOCATION, kind="GeoProperty"),
        _a("refDevice", "WasteContainer", "[" + _REF_DEVICE + "]", kind="Relationship"),
        _a("fillingLevel", "WasteContainer", "fill_level", scale=0.01, unit_code="C62"),
        _a("temperature", "WasteContainer", "temperature"),
        _a("status", "WasteContainer", "burning if temperature >= burning_temperature, else lidOpen if tilt, else ok"),
        _a("distance", CITYNODE, "distance", description="ultrasonic distance from the sensor in the lid to the waste"),
        _a("tilt", CITYNODE, "tilt", description="true when the lid's tilt switch reports the lid open or the bin tipped"),
        _a("batteryVoltage", CITYNODE, "battery", description=_BATTERY_V),
        _faults(),
    ), required=("location",)),
    EntityMap("crowd_count", "CrowdFlowObserved", "Transportation", "CrowdFlowObserved", (
        _a("dateObserved", "CrowdFlowObserved", _OBSERVED),
        _a("dateObservedFrom", "CrowdFlowObserved", "dateObserved - interval"),
        _a("dateObservedTo", "CrowdFlowObserved", "dateObserved"),
        _a("location", "CrowdFlowObserved", _LOCATION, kind="GeoProperty"),
        _a("refDevice", "Transportation context", _REF_DEVICE, kind="Relationship"),
        _a("peopleCount", "CrowdFlowObserved", "max(wifi_devices, ble_devices)"),
        _a("wifiDeviceCount", CITYNODE, "wifi_devices",
           description="distinct WiFi devices (probe requests) seen in the counting window"),
        _a("bleDeviceCount", CITYNODE, "ble_devices",
           description="distinct BLE devices (advertisements) seen in the counting window"),
        _a("batteryVoltage", CITYNODE, "battery", description=_BATTERY_V),
        _faults(),
    ), required=("dateObserved",)),
    EntityMap("passenger_count", "PassengerCountObserved", "Transportation", CITYNODE, (
        _a("dateObserved", "Transportation context", _OBSERVED),
        _a("dateObservedFrom", "Transportation context", "dateObserved - interval"),
        _a("dateObservedTo", "Transportation context", "dateObserved"),
        _a("location", "Transportation context", _LOCATION, kind="GeoProperty"),
        _a("refDevice", "Transportation context", _REF_DEVICE, kind="Relationship"),
        _a("boardings", CITYNODE, "sum of doors[].boardings",
           description="passengers who boarded in the counting window, all doors"),
        _a("alightings", CITYNODE, "sum of doors[].alightings",
           description="passengers who alighted in the counting window, all doors"),
        _a("doors", CITYNODE, "doors[] {door, boardings, alightings}",
           description="boardings and alightings per door in the counting window"),
        _a("peopleOnBoard", CITYNODE, "occupancy", description="estimated passengers on board"),
        _a("batteryVoltage", CITYNODE, "battery", description=_BATTERY_V),
        _faults(),
    ), required=("dateObserved",)),
    EntityMap("device_status", "Device", "Device", "Device", (
        _a("dateObserved", "Device", _OBSERVED),
        _a("controlledProperty", "Device", "from the device's role tag"),
        _a("category", "Device", "[\"sensor\"]"),
        _a("supportedProtocol", "Device", "[\"lora\"]"),
        _a("firmwareVersion", "Device", "firmware"),
        _a("batteryLevel", "Device", "battery: (V - battery_empty_v) / (battery_full_v - battery_empty_v), 0..1",
           unit_code="C62"),
        _a("location", "Device", "the device's lat/lon tags (when known)", kind="GeoProperty"),
        _a("batteryVoltage", CITYNODE, "battery", description=_BATTERY_V),
        _a("uptime", CITYNODE, "uptime", description="seconds since the node last started"),
        _a("resetCause", CITYNODE, "reset_cause",
           description="why the node last started: power_on, watchdog, deep_sleep, soft, brownout or panic"),
        _a("firmwareUpdate", CITYNODE, "update",
           description="outcome of the last over-the-air update: installed, rolled_back_selftest, "
                       "rolled_back_crash, refused_base, refused_signature, refused_hash or refused_other"),
        _faults(),
    ), required=("controlledProperty",)),
)}

# Device.controlledProperty per role (values from the model's enum, dataModel.Device device-schema.json).
_CONTROLLED: dict[str, tuple[str, ...]] = {
    "air_quality": ("temperature", "humidity", "pressure", "airPollution"),
    "bin_fill": ("fillingLevel", "temperature"),
    "passenger_count": ("occupancy", "location"),
    "crowd_count": ("occupancy",),
}


def controlled_properties(role: str | None) -> list[str]:
    """Device.controlledProperty for a node's role; every node also reports its battery supply."""
    return [*_CONTROLLED.get(role or "", ()), "batterySupply"]


def _field_spec(schema: Schema, message: str, name: str) -> FieldSpec | None:
    spec = schema.messages.get(message)
    if spec is None:
        return None
    for f in spec.fields:
        if f.name == name:
            return f
        for item in f.items:
            if item.name == name:
                return item
    return None


def citynode_context(schema: Schema | None = None) -> dict[str, Any]:
    """The citynode JSON-LD context document (``codecs/ngsi-ld/citynode.jsonld``).

    ``@context`` maps each citynode type and attribute to an IRI under :data:`CITYNODE_VOCAB`. JSON-LD
    term definitions cannot carry units, so the document's ``attributes`` member (ignored by JSON-LD
    processors, which read only ``@context``) lists each attribute's unit code and unit from
    ``codecs/schema.json``, its source field and meaning.
    """
    schema = schema or load_schema()
    terms: dict[str, Any] = {"citynode": CITYNODE_VOCAB}
    docs: dict[str, Any] = {}
    for m in ENTITIES.values():
        if m.model == CITYNODE:
            terms[m.entity_type] = f"citynode:{m.entity_type}"
            docs[m.entity_type] = {"@id": CITYNODE_VOCAB + m.entity_type, "kind": "entity type",
                                   "message": m.message,
                                   "description": f"citynode {m.message} readings (no Smart Data Models type fits)"}
        for a in m.attributes:
            if a.model != CITYNODE:
                continue
            terms[a.attribute] = f"citynode:{a.attribute}"
            field_name = a.source if a.source.isidentifier() else ""
            spec = _field_spec(schema, m.message, field_name) if field_name else None
            entry = docs.setdefault(a.attribute, {"@id": CITYNODE_VOCAB + a.attribute, "kind": a.kind,
                                                  "unitCode": a.unit_code or (spec.unit_code if spec else None),
                                                  "unit": spec.unit if spec else None,
                                                  "description": a.description, "sources": []})
            entry["sources"].append(f"{m.message}.{a.source}" if field_name else f"{m.message}: {a.source}")
    return {
        "$comment": "GENERATED by `citynode codec generate` from codecs/schema.json and "
                    "gateway/service/sinks/ngsild_models.py: do not edit. Served by the gateway at "
                    f"{CITYNODE_CONTEXT_PATH}. Only @context is read by JSON-LD processors; "
                    "'attributes' documents each term's unit (UN/CEFACT code) and source field.",
        "@context": dict(sorted(terms.items(), key=lambda kv: (kv[0] != "citynode", kv[0]))),
        "attributes": dict(sorted(docs.items())),
    }


def citynode_context_text(schema: Schema | None = None) -> str:
    """The generated file's exact text (two-space JSON, a final newline)."""
    return json.dumps(citynode_context(schema), indent=2, ensure_ascii=False) + "\n"


def citynode_context_path() -> Path:
    """``codecs/ngsi-ld/citynode.jsonld``: the packaged copy in a wheel, else the checkout's file."""
    packaged = resources.files("gateway").joinpath("_codecs/ngsi-ld/citynode.jsonld")
    if packaged.is_file():
        return Path(str(packaged))
    from gateway.paths import codecs_dir

    return codecs_dir() / "ngsi-ld" / "citynode.jsonld"


@cache
def citynode_context_bytes() -> bytes:
    """The shipped context file, read once (what ``GET /context/citynode.jsonld`` answers)."""
    return citynode_context_path().read_bytes()


def context_stale() -> bool:
    """True when ``codecs/ngsi-ld/citynode.jsonld`` differs from what the schema and table produce now."""
    from gateway.paths import codecs_dir

    path = codecs_dir() / "ngsi-ld" / "citynode.jsonld"
    return not path.exists() or path.read_text(encoding="utf-8") != citynode_context_text()


def write_context() -> Path | None:
    """Rewrite ``codecs/ngsi-ld/citynode.jsonld`` when stale; returns its path if written."""
    from gateway.paths import codecs_dir

    if not context_stale():
        return None
    path = codecs_dir() / "ngsi-ld" / "citynode.jsonld"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(citynode_context_text(), encoding="utf-8")
    return path
