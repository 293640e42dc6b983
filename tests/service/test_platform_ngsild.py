"""NGSI-LD conformance: every entity citynode sends for every codec vector validates against its model.

The facts are the published Smart Data Models schemas and subject contexts, encoded as data in
``fixtures/smart_data_models.json`` (extracted from smart-data-models/dataModel.<Subject>, commits
recorded there; $refs to the common schemas resolved). The checks below are written here: a small
JSON Schema subset (type, enum, minimum/maximum, items/minItems/uniqueItems, anyOf/oneOf, required,
format date-time and uri, pattern, length) applied to the key-values form of each entity, the form a
broker returns for ``options=keyValues`` and the form the models' schemas describe.

The broker side: the simulator refuses what Orion-LD refuses (FIWARE/context.Orion-LD, see
gateway/sim/platforms/ngsild.py) with the NGSI-LD API's status codes and ProblemDetails.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.contract import codec
from gateway.contract.normalize import normalize
from gateway.contract.records import Reading, Uplink
from gateway.contract.schema import load_schema
from gateway.contract.vectors import load_vectors
from gateway.service.outbox import DeliveryWorker
from gateway.service.sinks.base import group_uplinks
from gateway.service.sinks.ngsild import (
    CORE_CONTEXT,
    DEFAULT_CITYNODE_CONTEXT_URL,
    MappingError,
    NgsiLdConfig,
    NgsiLdSink,
    battery_level,
    build_entity,
)
from gateway.service.sinks.ngsild_models import (
    CITYNODE,
    CITYNODE_VOCAB,
    ENTITIES,
    SUBJECT_CONTEXTS,
    citynode_context,
    citynode_context_path,
    citynode_context_text,
)
from gateway.service.store import Store
from gateway.sim.platforms.ngsild import NgsiLdSimulator, broker_problem

FACTS = json.loads((Path(__file__).parent / "fixtures" / "smart_data_models.json").read_text(encoding="utf-8"))
MODELS: dict[str, Any] = FACTS["models"]
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
GELSENKIRCHEN = (7.0857, 51.5177)
CONFIG = NgsiLdConfig(url="http://unused")
CONTEXT_TERMS: dict[str, Any] = citynode_context()["@context"]
# The subject context terms of each subject, as recorded with the models of that subject.
SUBJECT_TERMS = {"Environment": MODELS["AirQualityObserved"]["context_terms"],
                 "WasteManagement": MODELS["WasteContainer"]["context_terms"],
                 "Transportation": MODELS["CrowdFlowObserved"]["context_terms"],
                 "Device": MODELS["Device"]["context_terms"]}


# -- a JSON Schema subset, written for these checks --------------------------------------------------

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_TYPES = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def violations(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """What in ``value`` breaks ``schema`` (the keywords the Smart Data Models schemas use)."""
    out: list[str] = []
    kind = schema.get("type")
    if kind is not None and not _TYPES[kind](value):
        return [f"{where}: {value!r} is not of type {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        out.append(f"{where}: {value!r} below minimum {schema['minimum']}")
    if "maximum" in schema and _TYPES["number"](value) and value > schema["maximum"]:
        out.append(f"{where}: {value!r} above maximum {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            out.append(f"{where}: {value!r} is not a date-time")
        if schema.get("format") == "uri" and not _URI.match(value):
            out.append(f"{where}: {value!r} is not a URI")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{where}: fewer than {schema['minItems']} items")
        if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            out.append(f"{where}: items not unique")
        if "items" in schema:
            for i, item in enumerate(value):
                out += violations(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict):
        out += [f"{where}: {key} required" for key in schema.get("required", []) if key not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                out += violations(value[key], sub, f"{where}.{key}")
    if "anyOf" in schema and all(violations(value, s, where) for s in schema["anyOf"]):
        out.append(f"{where}: {value!r} matches none of anyOf")
    if "oneOf" in schema and sum(not violations(value, s, where) for s in schema["oneOf"]) != 1:
        out.append(f"{where}: {value!r} does not match exactly one of oneOf")
    return out


def key_values(entity: dict[str, Any]) -> dict[str, Any]:
    """The simplified (key-values) form: a Property's value (a typed DateTime as its lexical value,
    which is what a ``format: date-time`` string describes), a Relationship's object, a GeoProperty's
    GeoJSON."""
    out: dict[str, Any] = {}
    for name, attr in entity.items():
        if name in ("id", "type"):
            out[name] = attr
        elif name == "@context":
            continue
        elif attr["type"] == "Relationship":
            out[name] = attr["object"]
        else:
            value = attr["value"]
            if isinstance(value, dict) and value.get("@type") == "DateTime":
                value = value["@value"]
            out[name] = value
    return out


def conformance(entity: dict[str, Any]) -> list[str]:
    """Everything in one entity that breaks its model, its contexts or the NGSI-LD entity form."""
    problems: list[str] = []
    problem = broker_problem(entity, ld_json=True)
    if problem:
        problems.append(f"NGSI-LD: {problem}")
    mapping = next(m for m in ENTITIES.values() if m.entity_type == entity["type"])
    kv = key_values(entity)
    facts = MODELS.get(entity["type"])
    if facts is not None:
        problems += [f"{entity['type']}: {a} required by the model" for a in facts["required"] if a not in kv]
    subject_terms = SUBJECT_TERMS[mapping.subject]
    for name, value in kv.items():
        if name in ("id", "type"):
            continue
        if facts is not None and name in facts["properties"]:
            problems += violations(value, facts["properties"][name], f"{entity['type']}.{name}")
            assert name not in CONTEXT_TERMS, f"the citynode context must not shadow the model attribute {name}"
        elif name in CONTEXT_TERMS:
            assert CONTEXT_TERMS[name] == f"citynode:{name}"
        elif name not in subject_terms:
            problems.append(f"{entity['type']}.{name}: in no context (would expand to the default vocabulary)")
    if entity["@context"] != [SUBJECT_CONTEXTS[mapping.subject], CONFIG.citynode_context_url, CORE_CONTEXT]:
        problems.append(f"@context {entity['@context']}")
    return problems


# -- every vector, every entity ---------------------------------------------------------------------

UPLINK_VECTORS = [v for v in load_vectors("uplink") if "data" in v["expected"]]
TAGS = {"tagged": {"role": "", "lat": "51.517700", "lon": "7.085700"}, "default position": {}}


def readings_of(vector: dict[str, Any], tags: dict[str, str]) -> list[Reading]:
    decoded = codec.decode(vector["input"]["fPort"], bytes(vector["input"]["bytes"]))
    tags = {**tags, "role": decoded["type"]} if tags.get("role") == "" else tags  # "": the message's role
    uplink = Uplink("70b3d57ed0000001", "node-0001", "app-1", vector["input"]["fPort"], 1,
                    bytes(vector["input"]["bytes"]), T0, "dedup-1", tags)
    return normalize(decoded, uplink)


@pytest.mark.parametrize("how", list(TAGS))
@pytest.mark.parametrize("vector", UPLINK_VECTORS, ids=lambda v: v["name"])
def test_every_vector_becomes_entities_that_validate_against_their_models(vector: dict[str, Any], how: str) -> None:
    config = NgsiLdConfig(url="http://unused", default_location=None if how == "tagged" else GELSENKIRCHEN)
    readings = readings_of(vector, TAGS[how])
    groups = group_uplinks(list(enumerate(readings, start=1)))
    assert groups, "a vector with data gives readings"
    for group in groups:
        entity = build_entity([r for _, r in group], config)
        assert conformance(entity) == [], json.dumps(entity, indent=1)


def test_the_vectors_cover_every_entity_type() -> None:
    types = {build_entity([r for _, r in group_uplinks(list(enumerate(readings_of(v, TAGS["tagged"]))))[0]],
                          CONFIG)["type"] for v in UPLINK_VECTORS}
    assert types == {m.entity_type for m in ENTITIES.values()}


def test_every_codec_field_has_an_attribute_and_every_attribute_a_model_or_the_citynode_context() -> None:
    schema = load_schema()
    for message, spec in schema.messages.items():
        if spec.direction != "uplink":
            continue
        mapped = ENTITIES[message].fields
        for f in spec.fields:
            if f.name in ("latitude", "longitude", "interval", "doors"):
                continue  # location, dateObservedFrom/To and the doors attributes (derived)
            assert f.name in mapped, f"{message}.{f.name} has no NGSI-LD attribute in gateway/service/sinks/ngsild_models.py"
    for m in ENTITIES.values():
        for a in m.attributes:
            if a.model == CITYNODE:
                assert a.attribute in CONTEXT_TERMS, a.attribute
            elif a.model in MODELS:
                assert a.attribute in MODELS[a.model]["properties"], f"{a.model} has no {a.attribute}"
            else:  # "<Subject> context": not in the type's schema, defined by its subject's context
                assert a.attribute in SUBJECT_TERMS[m.subject], f"{m.subject} context lacks {a.attribute}"


@pytest.mark.parametrize(("volts", "level"), [(4.2, 1.0), (3.0, 0.0), (3.6, 0.5), (4.5, 1.0), (2.5, 0.0)])
def test_battery_level_is_a_fraction_of_the_configured_range(volts: float, level: float) -> None:
    assert battery_level(volts, CONFIG) == level


def test_device_has_the_required_controlled_property_from_its_role() -> None:
    status = next(v for v in UPLINK_VECTORS if v["input"]["fPort"] == 1)
    e = build_entity(readings_of(status, {"role": "bin_fill"}), CONFIG)
    assert e["controlledProperty"]["value"] == ["fillingLevel", "temperature", "batterySupply"]
    assert 0 <= e["batteryLevel"]["value"] <= 1 and "batteryVoltage" in e


def test_waste_container_ref_device_is_an_array_and_air_quality_uses_pressure() -> None:
    bins = next(v for v in UPLINK_VECTORS if v["input"]["fPort"] == 11)
    air = next(v for v in UPLINK_VECTORS if v["input"]["fPort"] == 10)
    config = NgsiLdConfig(url="x", default_location=GELSENKIRCHEN)
    wc = build_entity(readings_of(bins, {})[:5], config)
    assert wc["refDevice"]["object"] == ["urn:ngsi-ld:Device:70b3d57ed0000001"]
    aq = build_entity(readings_of(air, {})[:8], config)
    assert "pressure" in aq and "atmosphericPressure" not in aq and aq["pressure"]["unitCode"] == "A97"


# -- location: required by AirQualityObserved and WasteContainer --------------------------------------

@pytest.mark.parametrize("port", [10, 11])
def test_without_a_position_the_entity_is_not_sent_and_the_reason_names_location(port: int) -> None:
    vector = next(v for v in UPLINK_VECTORS if v["input"]["fPort"] == port)
    with pytest.raises(MappingError, match=r"\.location: required by the model .*default_location"):
        build_entity(readings_of(vector, {}), CONFIG)


def test_an_entity_the_city_keeps_is_updated_without_a_location() -> None:
    vector = next(v for v in UPLINK_VECTORS if v["input"]["fPort"] == 11)
    e = build_entity(readings_of(vector, {"ngsild_id": "urn:ngsi-ld:WasteContainer:gek-0815"})[:5], CONFIG)
    assert e["id"] == "urn:ngsi-ld:WasteContainer:gek-0815" and "location" not in e


def test_missing_location_ends_as_a_dead_letter_naming_the_attribute(store: Store) -> None:
    vector = next(v for v in UPLINK_VECTORS if v["input"]["fPort"] == 10)
    readings = readings_of(vector, {})
    assert store.record_uplink(Uplink("70b3d57ed0000001", "node-0001", "app-1", 10, 1, b"", T0, "dedup-1", {}),
                               readings)

    async def main() -> NgsiLdSimulator:
        async with NgsiLdSimulator() as sim:
            sink = NgsiLdSink(NgsiLdConfig(url=sim.url))
            await DeliveryWorker(sink, store, sleep=lambda _: asyncio.sleep(0)).drain()
            await sink.aclose()
            return sim

    sim = asyncio.run(main())
    letters = store.dead_letters(limit=100)
    assert sim.requests == [] and len(letters) == len(readings)
    assert all("AirQualityObserved.location: required by the model" in d.reason for d in letters)


# -- the citynode context -----------------------------------------------------------------------------

def test_the_shipped_context_is_generated_from_the_schema_and_current() -> None:
    assert citynode_context_path().read_text(encoding="utf-8") == citynode_context_text(), (
        "codecs/ngsi-ld/citynode.jsonld is stale: run `make generate` and commit it")


def test_the_context_defines_each_citynode_term_with_a_citynode_iri_and_documents_its_unit() -> None:
    doc = json.loads(citynode_context_path().read_text(encoding="utf-8"))
    terms, docs = doc["@context"], doc["attributes"]
    assert terms["citynode"] == CITYNODE_VOCAB
    for term, iri in terms.items():
        if term == "citynode":
            continue
        assert iri == f"citynode:{term}" and docs[term]["@id"] == CITYNODE_VOCAB + term
    assert docs["gasResistance"]["unitCode"] == "OHM" and docs["batteryVoltage"]["unitCode"] == "VLT"
    assert docs["distance"]["unitCode"] == "MMT" and docs["uptime"]["unitCode"] == "SEC"
    assert "PassengerCountObserved" in terms


def test_the_gateway_serves_the_context_at_a_stable_url(tmp_path: Path) -> None:
    from gateway.service.api.routes import Api
    from gateway.service.metrics import Metrics

    store = Store.open(tmp_path / "g.sqlite")

    async def main() -> tuple[int, str, bytes]:
        app = aiohttp.web.Application()
        Api(store, Metrics(), api_token="secret").add_routes(app)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{port}/context/citynode.jsonld") as resp:
                return resp.status, resp.content_type, await resp.read()
        finally:
            await runner.cleanup()
            store.close()

    status, ctype, body = asyncio.run(main())
    assert status == 200 and ctype == "application/ld+json"  # open even with an API token: brokers fetch it
    assert body == citynode_context_path().read_bytes()
    assert DEFAULT_CITYNODE_CONTEXT_URL.endswith("/context/citynode.jsonld")


# -- the simulator refuses what a broker refuses -------------------------------------------------------

GOOD = {"id": "urn:ngsi-ld:AirQualityObserved:x", "type": "AirQualityObserved",
        "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-05-04T12:00:00.000Z"}},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [7.1, 51.5]}},
        "@context": [SUBJECT_CONTEXTS["Environment"], CORE_CONTEXT]}


async def _post(sim: NgsiLdSimulator, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as http, http.post(
            f"{sim.url}/ngsi-ld/v1/entityOperations/upsert", data=raw, headers=headers) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


def post(body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async def main() -> tuple[int, Any]:
        async with NgsiLdSimulator() as sim:
            return await _post(sim, body, headers or {"Content-Type": "application/ld+json"})

    return asyncio.run(main())


def _problem_details(body: Any, status: int, kind: str) -> None:
    assert body["type"] == f"https://uri.etsi.org/ngsi-ld/errors/{kind}"
    assert body["status"] == status and isinstance(body["title"], str)


LINK = '<https://example.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


@pytest.mark.parametrize(
    ("body", "headers", "status", "kind"),
    [
        ([GOOD], {"Content-Type": "text/plain"}, 415, "BadRequestData"),
        ([GOOD], {"Content-Type": "application/xml"}, 415, "BadRequestData"),
        ([GOOD], {"Content-Type": "application/ld+json", "Link": LINK}, 400, "BadRequestData"),
        (b"[{not json", {"Content-Type": "application/ld+json"}, 400, "InvalidRequest"),
        (GOOD, {"Content-Type": "application/ld+json"}, 400, "BadRequestData"),  # not an array
        ([], {"Content-Type": "application/ld+json"}, 400, "BadRequestData"),
    ],
)
def test_request_level_refusals_use_the_api_status_codes(body: Any, headers: dict[str, str], status: int,
                                                         kind: str) -> None:
    got, answer = post(body, headers)
    assert got == status
    _problem_details(answer, status, kind)


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("entity", "headers", "detail"),
    [
        ({**GOOD, "id": "AirQualityObserved-x"}, None, "not a URI"),
        ({**GOOD, "id": "urn:ngsi-ld:has space"}, None, "not a URI"),
        ({**GOOD, "id": 17}, None, "Entity id must be a String"),
        (_without("id"), None, "The 'id' field is mandatory"),
        (_without("type"), None, "no type in incoming payload"),
        (_without("@context"), None, "no @context in payload"),
        (GOOD, {"Content-Type": "application/json", "Link": LINK}, "an @context is present"),
        ({**GOOD, "pm10": {"type": "Property", "unitCode": "GQ"}}, None, "pm10: Property without value"),
        ({**GOOD, "pm10": {"type": "Propertee", "value": 3}}, None, "invalid attribute type"),
        ({**GOOD, "refDevice": {"type": "Relationship", "object": "not a uri"}}, None, "Relationship object"),
        ({**GOOD, "refDevice": {"type": "Relationship", "object": ["urn:a:b", 7]}}, None, "Relationship object"),
        ({**GOOD, "location": {"type": "GeoProperty", "value": {"lat": 1, "lon": 2}}}, None, "GeoJSON"),
        ({**GOOD, "pm10": {"type": "Property", "value": 3, "observedAt": "yesterday"}}, None, "observedAt"),
        ({**GOOD, "pm10": {"type": "Property", "value": 3, "unitCode": 17}}, None, "unitCode"),
    ],
)
def test_entity_level_refusals_are_400_in_a_207_batch_result(entity: dict[str, Any], headers: dict[str, str] | None,
                                                             detail: str) -> None:
    other = {**GOOD, "id": "urn:ngsi-ld:AirQualityObserved:ok"}
    if headers and headers["Content-Type"] == "application/json":
        other = {k: v for k, v in other.items() if k != "@context"}
    status, answer = post([entity, other], headers)
    assert status == 207 and answer["success"] == ["urn:ngsi-ld:AirQualityObserved:ok"]
    (error,) = answer["errors"]
    _problem_details(error["error"], 400, "BadRequestData")
    assert detail in error["error"]["detail"]


def test_concise_attributes_and_relationship_arrays_are_accepted_like_a_broker() -> None:
    entity = {**GOOD, "pm10": 12.5, "refDevice": {"type": "Relationship", "object": ["urn:ngsi-ld:Device:a"]}}
    status, answer = post([entity])
    assert status == 201 and answer == [GOOD["id"]]


def test_the_sink_sends_what_the_strict_simulator_accepts_for_every_vector() -> None:
    rows = []
    for n, v in enumerate(UPLINK_VECTORS):
        for r in readings_of(v, TAGS["tagged"]):
            r.deduplication_id = f"dedup-{n}"
            r.dev_eui = f"70b3d57ed00000{n:02x}"
            rows.append(r)

    async def main() -> tuple[Any, NgsiLdSimulator]:
        async with NgsiLdSimulator() as sim, NgsiLdSink(NgsiLdConfig(url=sim.url)) as sink:
            return await sink.deliver(list(enumerate(rows, start=1))), sim

    result, sim = asyncio.run(main())
    assert result.failures == ()
    assert {u["type"] for u in sim.updates} == {m.entity_type for m in ENTITIES.values()}
    assert all(conformance(u) == [] for u in sim.updates)
