"""SensorThings against FROST-Server's own answer forms: row errors, ids, Location headers, $filter.

The forms come from FROST-Server's source (FraunhoferIOSB/FROST-Server): ``ServiceDataArray`` answers a
refused CreateObservations row with ``"error " + message``, its ``DataArrayTests`` check rows with
``startsWith("error")``; ``PluginCoreService`` answers creates with an empty body and a ``Location``
header; ``UrlHelper.quoteForUrl`` quotes string ids; ``Service.jsonResponse`` writes
``{"type": "error", "code", "message"}``. docs/platforms.md cites the files.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.contract.records import Reading, Uplink
from gateway.service.outbox import Backoff, DeliveryWorker
from gateway.service.sinks.sensorthings import SensorThingsConfig, SensorThingsSink, row_refusal
from gateway.service.store import Store
from gateway.sim.platforms.frost import FilterError, FrostSimulator, parse_filter, quote_id

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
GELSENKIRCHEN = (7.0857, 51.5177)  # lon, lat


def r(field: str, value: Any, unit: str | None = None, code: str | None = None, *, f_cnt: int = 1,
      time: datetime = T0) -> Reading:
    dev = "70b3d57ed0000001"
    return Reading(dev, "node-0001", "air_quality", time, field, value, unit, code, f"dedup-{dev}-{f_cnt}", f_cnt, {})


def air(f_cnt: int) -> list[Reading]:
    """One air_quality uplink: temperature 21.5 + f_cnt, pm2_5 7.4, relative humidity 45 %."""
    t = T0 + timedelta(minutes=f_cnt)
    return [r("temperature", 21.5 + f_cnt, "°C", "CEL", f_cnt=f_cnt, time=t),
            r("pm2_5", 7.4, "µg/m³", "GQ", f_cnt=f_cnt, time=t),
            r("relative_humidity", 45.0, "%", "P1", f_cnt=f_cnt, time=t)]


def add(store: Store, readings: list[Reading]) -> None:
    by_dedup: dict[str, list[Reading]] = {}
    for x in readings:
        by_dedup.setdefault(x.deduplication_id, []).append(x)
    for dedup, group in by_dedup.items():
        f = group[0]
        assert store.record_uplink(Uplink(f.dev_eui, f.device_name, "app", 10, f.f_cnt, b"", f.time, dedup, {}), group)


async def no_sleep(delay: float) -> None:
    await asyncio.sleep(0)


# -- the sink reads FROST's row answers ------------------------------------------------------------

@pytest.mark.parametrize(
    ("answer", "refused", "message"),
    [
        ("http://frost:8080/FROST-Server/v1.1/Observations(42)", False, None),
        ("http://frost:8080/FROST-Server/v1.1/Observations('0f9a-4c')", False, None),
        ("", False, None),  # $resultMetadata=off: FROST adds "" for a created row
        ("error No FeatureOfInterest provided, and none can be generated.", True,
         "No FeatureOfInterest provided, and none can be generated."),
        ("error No such entity 'FeatureOfInterest' with id [99]", True, "No such entity 'FeatureOfInterest' with id [99]"),
        ("error phenomenonTime could not be parsed as time instant or time interval.", True,
         "phenomenonTime could not be parsed"),
        ("error null", True, "null"),  # an exception without a message
        ("error", True, "no reason given"),  # the bare form older simulators used
        ("Error Property 'result' must be non-NULL.", True, "must be non-NULL"),  # FROST's tests lower-case
        (None, True, "null"),
        ({"unexpected": 1}, True, "unexpected"),
    ],
)
def test_row_answers_in_frosts_forms(answer: Any, refused: bool, message: str | None) -> None:
    reason = row_refusal(answer)
    assert (reason is not None) is refused
    if message is not None:
        assert reason is not None and message in reason


def test_frost_error_rows_are_dead_lettered_with_frosts_message_and_none_marked_delivered(store: Store) -> None:
    add(store, air(1) + air(2) + air(3))
    refusal = "Observation rejected: result out of plausible range"

    async def main() -> FrostSimulator:
        async with FrostSimulator() as sim:
            sim.reject = lambda row: refusal if row["result"] in (23.5, 45.0) else None
            sink = SensorThingsSink(SensorThingsConfig(url=sim.url, id_cache=store.path,
                                                       default_location=GELSENKIRCHEN))
            w = DeliveryWorker(sink, store, sleep=no_sleep, rng=random.Random(1), backoff=Backoff(jitter=0.0))
            await w.drain()
            await sink.aclose()
            return sim

    sim = asyncio.run(main())
    letters = store.dead_letters(limit=100)
    # temperature 23.5 (uplink 2) and relative humidity 45.0 (every uplink): 4 refused rows
    assert len(letters) == 4 and len(sim.observations) == 5
    assert all(refusal in d.reason and d.source == "sink:sensorthings" for d in letters)
    delivered = {(o["Datastream"], o["phenomenonTime"]) for o in sim.observations}
    refused = {json.loads(d.raw)["value"] for d in letters}
    assert refused == {23.5, 45.0} and all(o["result"] not in refused for o in sim.observations)
    assert len(delivered) == 5 and store.pending("sensorthings") == 0


def test_a_row_without_a_feature_of_interest_is_an_error_row_like_frost(tmp_path: Path) -> None:
    async def main() -> tuple[Any, FrostSimulator]:
        async with FrostSimulator() as sim, SensorThingsSink(SensorThingsConfig(
                url=sim.url, id_cache=str(tmp_path / "ids.sqlite"), default_location=GELSENKIRCHEN)) as sink:
            assert (await sink.deliver(list(enumerate(air(1), start=1)))).failures == ()
            ds_id = next(iter(sim.entities["Datastreams"]))
            async with aiohttp.ClientSession() as http, http.post(f"{sim.url}/CreateObservations", json=[
                {"Datastream": {"@iot.id": ds_id}, "components": ["phenomenonTime", "result", "FeatureOfInterest/id"],
                 "dataArray": [["2026-05-04T12:00:00Z", 1.0, 999], ["2026-05-04T12:00:00Z", 2.0, None]]},
                {"Datastream": {"@iot.id": 12345}, "components": ["phenomenonTime", "result"],
                 "dataArray": [["2026-05-04T12:00:00Z", 3.0]]},
            ]) as resp:
                return (resp.status, await resp.json()), sim

    (status, answers), _ = asyncio.run(main())
    assert status == 201
    assert answers == ["error No such entity 'FeatureOfInterest' with id [999]",
                       "error No FeatureOfInterest provided, and none can be generated.",
                       "error No such entity 'Datastream' with id [12345]"]


# -- the simulator answers as FROST does ----------------------------------------------------------

def test_create_answers_201_with_a_location_header_and_no_body() -> None:
    async def main() -> tuple[int, str | None, str]:
        async with FrostSimulator() as sim, aiohttp.ClientSession() as http, http.post(
                f"{sim.url}/Things", json={"name": "n", "description": "d"}) as resp:
            return resp.status, resp.headers.get("Location"), await resp.text()

    status, location, body = asyncio.run(main())
    assert status == 201 and location is not None and location.endswith("/v1.1/Things(1)") and body == ""


@pytest.mark.parametrize("id_type", ["long", "string", "uuid"])
def test_the_sink_works_with_numeric_string_and_uuid_ids_and_a_lost_cache(tmp_path: Path, id_type: str) -> None:
    async def main() -> FrostSimulator:
        async with FrostSimulator(id_type=id_type) as sim:  # type: ignore[arg-type]
            async with SensorThingsSink(SensorThingsConfig(url=sim.url, id_cache=str(tmp_path / "a.sqlite"),
                                                           default_location=GELSENKIRCHEN)) as sink:
                assert (await sink.deliver(list(enumerate(air(1), start=1)))).failures == ()
            async with SensorThingsSink(SensorThingsConfig(url=sim.url, id_cache=str(tmp_path / "b.sqlite"),
                                                           default_location=GELSENKIRCHEN)) as fresh:
                assert (await fresh.deliver(list(enumerate(air(2), start=4)))).failures == ()
            return sim

    sim = asyncio.run(main())
    assert len(sim.entities["Things"]) == 1 and len(sim.entities["Datastreams"]) == 3  # found, not duplicated
    assert len(sim.observations) == 6
    ids = list(sim.entities["Things"])
    assert isinstance(ids[0], int) if id_type == "long" else isinstance(ids[0], str)
    # the lost-cache lookup went through Things(<quoted id>)/Datastreams
    assert any(p.startswith("/v1.1/Things(") and "/Datastreams" in p for m, p in sim.requests if m == "GET")


def test_observation_type_is_not_checked_against_results_for_datastreams(tmp_path: Path) -> None:
    # FROST checks observationType only for MultiDatastreams (OM_ComplexObservation).
    readings = [r("temperature", 21.5, "°C", "CEL"), r("temperature", "n/a", "°C", "CEL", f_cnt=2)]

    async def main() -> tuple[Any, FrostSimulator]:
        async with FrostSimulator() as sim, SensorThingsSink(SensorThingsConfig(
                url=sim.url, id_cache=str(tmp_path / "ids.sqlite"), default_location=GELSENKIRCHEN)) as sink:
            return await sink.deliver(list(enumerate(readings, start=1))), sim

    result, sim = asyncio.run(main())
    (ds,) = sim.entities["Datastreams"].values()
    assert ds["observationType"] == OM + "OM_Measurement"
    assert result.failures == () and [o["result"] for o in sim.observations] == [21.5, "n/a"]


@pytest.mark.parametrize(
    ("text", "entity", "match"),
    [
        ("name eq 'citynode air_quality'", {"name": "citynode air_quality"}, True),
        ("name  eq  'a''b'", {"name": "a'b"}, True),
        ("(name eq 'x')", {"name": "x"}, True),
        ("properties/devEui eq '70b3d57ed0000001'", {"properties": {"devEui": "70b3d57ed0000001"}}, True),
        ("properties/devEui eq '70b3d57ed0000001'", {"properties": {}}, False),
        ("name eq 'x' and properties/devEui eq 'y'", {"name": "x", "properties": {"devEui": "y"}}, True),
        ("name eq 'x' and properties/devEui eq 'y'", {"name": "x", "properties": {"devEui": "z"}}, False),
        ("@iot.id eq 7", {"@iot.id": 7}, True),
        ("id eq 'abc'", {"@iot.id": "abc"}, True),
        ("properties/active eq true", {"properties": {"active": True}}, True),
    ],
)
def test_filter_subset_is_parsed_as_odata(text: str, entity: dict[str, Any], match: bool) -> None:
    assert parse_filter(text)(entity) is match


@pytest.mark.parametrize("text", ["name eq", "name eq 'x", "name gt 'x'", "eq 'x'", "name eq 'x' or name eq 'y'",
                                  "(name eq 'x'", "name eq 'x')"])
def test_filters_outside_the_subset_are_refused(text: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(text)


def test_an_unparsable_filter_is_a_400_in_frosts_error_form() -> None:
    async def main() -> tuple[int, Any]:
        async with FrostSimulator() as sim, aiohttp.ClientSession() as http, http.get(
                f"{sim.url}/Things", params={"$filter": "name eq"}) as resp:
            return resp.status, await resp.json()

    status, body = asyncio.run(main())
    assert status == 400 and body["type"] == "error" and body["code"] == 400
    assert body["message"].startswith("Query is not valid: ")


@pytest.mark.parametrize(("iot_id", "quoted"), [(7, "7"), ("abc", "'abc'"), ("it's", "'it''s'")])
def test_ids_are_quoted_in_urls_as_frost_does(iot_id: Any, quoted: str) -> None:
    assert quote_id(iot_id) == quoted


def test_missing_mandatory_property_and_dangling_link_use_frosts_messages() -> None:
    async def main() -> list[tuple[int, Any]]:
        out = []
        async with FrostSimulator() as sim, aiohttp.ClientSession() as http:
            for coll, body in [("Sensors", {"name": "s", "description": "d", "encodingType": "text/plain"}),
                               ("Datastreams", {"name": "d", "description": "d", "observationType": OM + "OM_Measurement",
                                                "unitOfMeasurement": {}, "Thing": {"@iot.id": 5},
                                                "Sensor": {"@iot.id": 6}, "ObservedProperty": {"@iot.id": 7}})]:
                async with http.post(f"{sim.url}/{coll}", json=body) as resp:
                    out.append((resp.status, await resp.json()))
        return out

    (s_status, s_body), (d_status, d_body) = asyncio.run(main())
    assert s_status == 400 and s_body["message"] == "Missing required property 'metadata'"
    assert d_status == 400 and d_body["message"] == "No such entity 'Thing' with id [5]"



@pytest.mark.parametrize(("observation_type", "status"), [(OM + "OM_ComplexObservation", 201),
                                                          (OM + "OM_Measurement", 400), (None, 400)])
def test_multidatastreams_are_the_one_place_frost_checks_the_observation_type(observation_type: str | None,
                                                                               status: int) -> None:
    body = {"name": "m", "description": "d", "unitOfMeasurements": [], "multiObservationDataTypes": [],
            "Thing": {"@iot.id": 1}, "Sensor": {"@iot.id": 2}, "ObservedProperties": []}
    if observation_type:
        body["observationType"] = observation_type

    async def main() -> tuple[int, str]:
        async with FrostSimulator() as sim, aiohttp.ClientSession() as http, http.post(
                f"{sim.url}/MultiDatastreams", json=body) as resp:
            return resp.status, await resp.text()

    got, text = asyncio.run(main())
    assert got == status
    if status == 400:
        assert json.loads(text)["message"] == f"ObservationType must be {OM}OM_ComplexObservation."
