"""SensorThings sink: entities on first sight, cached ids, CreateObservations, row errors, retries.

No FROST-Server can run here; ``gateway.sim.platforms.frost`` checks the OGC 18-088 request shapes (mandatory
entity properties, links, dataArray components) and answers like FROST (201 + Location, "error" rows).
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.contract.records import Reading, Uplink
from gateway.errors import ConfigError, SinkError
from gateway.service.outbox import Backoff, DeliveryWorker
from gateway.service.sinks.sensorthings import SensorThingsConfig, SensorThingsSink, unit_of_measurement
from gateway.service.store import Store
from gateway.sim.platforms.frost import FrostSimulator

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
GELSENKIRCHEN = (7.0857, 51.5177)  # lon, lat
ENTITY_COLLECTIONS = ("Things", "Sensors", "ObservedProperties", "Datastreams", "FeaturesOfInterest")


def r(field: str, value: Any, unit: str | None = None, code: str | None = None, *, dev: str = "70b3d57ed0000001",
      msg: str = "air_quality", f_cnt: int = 1, tags: dict[str, str] | None = None,
      time: datetime = T0) -> Reading:
    return Reading(dev, f"node-{dev[-4:]}", msg, time, field, value, unit, code, f"dedup-{dev}-{f_cnt}", f_cnt,
                   tags or {})


def air(f_cnt: int, dev: str = "70b3d57ed0000001", **kw: Any) -> list[Reading]:
    t = T0 + timedelta(minutes=f_cnt)
    return [r("temperature", 21.5 + f_cnt, "°C", "CEL", dev=dev, f_cnt=f_cnt, time=t, **kw),
            r("pm2_5", 7.4, "µg/m³", "GQ", dev=dev, f_cnt=f_cnt, time=t, **kw),
            r("relative_humidity", 45.0, "%", "P1", dev=dev, f_cnt=f_cnt, time=t, **kw)]


def add(store: Store, readings: list[Reading]) -> None:
    by_dedup: dict[str, list[Reading]] = {}
    for x in readings:
        by_dedup.setdefault(x.deduplication_id, []).append(x)
    for dedup, group in by_dedup.items():
        f = group[0]
        assert store.record_uplink(Uplink(f.dev_eui, f.device_name, "app", 10, f.f_cnt, b"", f.time, dedup,
                                          dict(f.tags)), group)


def sink_for(sim: FrostSimulator, cache: Path, **kw: Any) -> SensorThingsSink:
    kw.setdefault("default_location", GELSENKIRCHEN)
    return SensorThingsSink(SensorThingsConfig(url=sim.url, id_cache=str(cache), **kw))


def posts(sim: FrostSimulator) -> dict[str, int]:
    return {c: sum(1 for m, p in sim.requests if m == "POST" and p == f"/v1.1/{c}") for c in ENTITY_COLLECTIONS}


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


# -- units ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (r("temperature", 21.5, "°C", "CEL"), {"name": "degree Celsius", "symbol": "°C",
                                               "definition": "http://qudt.org/vocab/unit/DEG_C"}),
        (r("pressure", 1013.2, "hPa", "A97"), {"name": "hectopascal", "symbol": "hPa",
                                               "definition": "http://qudt.org/vocab/unit/HectoPA"}),
        (r("pm10", 12.0, "µg/m³", "GQ"), {"name": "microgram per cubic metre", "symbol": "µg/m³",
                                          "definition": "http://qudt.org/vocab/unit/MicroGM-PER-M3"}),
        (r("fill_level", 73, "%", "P1"), {"name": "percent", "symbol": "%",
                                          "definition": "http://qudt.org/vocab/unit/PERCENT"}),
        (r("wifi_devices", 12), {"name": "count", "symbol": "{count}", "definition": "http://qudt.org/vocab/unit/NUM"}),
        (r("tilt", True), {"name": None, "symbol": None, "definition": None}),
        (r("reset_cause", "watchdog"), {"name": None, "symbol": None, "definition": None}),
    ],
)
def test_unit_of_measurement_from_the_un_cefact_code(reading: Reading, expected: dict[str, Any]) -> None:
    assert unit_of_measurement(reading) == expected


def test_an_id_cache_file_is_required() -> None:
    with pytest.raises(ConfigError, match="id_cache"):
        SensorThingsSink(SensorThingsConfig(url="http://frost/v1.1"))


# -- first sight, cache, restart --------------------------------------------------------------------

def test_first_sight_creates_each_entity_once_and_observations_carry_the_uplink(tmp_path: Path) -> None:
    readings = air(1) + air(2) + air(3, dev="70b3d57ed0000002")

    async def main() -> FrostSimulator:
        async with FrostSimulator() as sim:
            async with sink_for(sim, tmp_path / "ids.sqlite") as sink:
                result = await sink.deliver(list(enumerate(readings, start=1)))
            assert result.failures == ()
            return sim

    sim = asyncio.run(main())
    assert {c: len(sim.entities[c]) for c in ENTITY_COLLECTIONS} == {
        "Things": 2, "FeaturesOfInterest": 2, "Sensors": 1, "ObservedProperties": 3, "Datastreams": 6}
    assert posts(sim) == {c: len(sim.entities[c]) for c in ENTITY_COLLECTIONS}  # nothing created twice
    thing = next(iter(sim.entities["Things"].values()))
    assert thing["properties"] == {"devEui": "70b3d57ed0000001", "role": "air_quality", "tags": {}}
    ds = next(d for d in sim.entities["Datastreams"].values() if d["name"] == "70b3d57ed0000001 temperature")
    assert ds["observationType"].endswith("OM_Measurement") and ds["unitOfMeasurement"]["symbol"] == "°C"
    assert len(sim.observations) == 9
    first = sim.observations[0]
    assert first["phenomenonTime"] == "2026-05-04T12:01:00.000Z" and first["result"] == 22.5
    assert first["parameters"] == {"devEui": "70b3d57ed0000001", "fCnt": 1,
                                   "deduplicationId": "dedup-70b3d57ed0000001-1"}
    assert sim.requests.count(("POST", "/v1.1/CreateObservations")) == 1


def test_a_restart_reuses_the_cached_ids_and_creates_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "ids.sqlite"

    async def main() -> FrostSimulator:
        async with FrostSimulator() as sim:
            async with sink_for(sim, cache) as sink:
                await sink.deliver(list(enumerate(air(1), start=1)))
            before, seen = dict(posts(sim)), len(sim.requests)
            async with sink_for(sim, cache) as again:  # a new process with the same store file
                assert len(again.ids) == 9  # Thing, FoI, Sensor, 3 ObservedProperties, 3 Datastreams
                result = await again.deliver(list(enumerate(air(2), start=4)))
            assert result.failures == () and posts(sim) == before
            assert sim.requests[seen:] == [("POST", "/v1.1/CreateObservations")]  # not even a lookup
            return sim

    assert len(asyncio.run(main()).observations) == 6


def test_a_lost_id_cache_finds_the_existing_entities_instead_of_duplicating(tmp_path: Path) -> None:
    async def main() -> FrostSimulator:
        async with FrostSimulator() as sim:
            async with sink_for(sim, tmp_path / "first.sqlite") as sink:
                await sink.deliver(list(enumerate(air(1), start=1)))
            async with sink_for(sim, tmp_path / "fresh.sqlite") as fresh:
                result = await fresh.deliver(list(enumerate(air(2), start=4)))
            assert result.failures == ()
            return sim

    sim = asyncio.run(main())
    assert {c: len(sim.entities[c]) for c in ENTITY_COLLECTIONS} == {
        "Things": 1, "FeaturesOfInterest": 1, "Sensors": 1, "ObservedProperties": 3, "Datastreams": 3}


def test_device_tags_give_the_thing_a_location_and_the_feature_of_interest(tmp_path: Path) -> None:
    tags = {"latitude": "51.5", "longitude": "7.1", "district": "altstadt"}

    async def main() -> FrostSimulator:
        async with FrostSimulator() as sim:
            async with sink_for(sim, tmp_path / "ids.sqlite", default_location=None) as sink:
                assert (await sink.deliver(list(enumerate(air(1, tags=tags), start=1)))).failures == ()
            return sim

    sim = asyncio.run(main())
    (thing,) = sim.entities["Things"].values()
    assert thing["Locations"][0]["location"] == {"type": "Point", "coordinates": [7.1, 51.5]}
    (foi,) = sim.entities["FeaturesOfInterest"].values()
    assert foi["feature"]["coordinates"] == [7.1, 51.5]


def test_value_types_choose_the_observation_type(tmp_path: Path) -> None:
    readings = [r("tilt", True, msg="bin_fill"), r("wifi_devices", 12, msg="crowd_count"),
                r("reset_cause", "watchdog", msg="device_status"), r("firmware", [1, 4, 2], msg="device_status"),
                r("distance", 412, "mm", "MMT", msg="bin_fill")]

    async def main() -> FrostSimulator:
        async with FrostSimulator() as sim:
            async with sink_for(sim, tmp_path / "ids.sqlite") as sink:
                assert (await sink.deliver(list(enumerate(readings, start=1)))).failures == ()
            return sim

    sim = asyncio.run(main())
    types = {d["name"].split()[1]: d["observationType"].rsplit("/", 1)[1] for d in sim.entities["Datastreams"].values()}
    assert types == {"tilt": "OM_TruthObservation", "wifi_devices": "OM_CountObservation",
                     "reset_cause": "OM_CategoryObservation", "firmware": "OM_CategoryObservation",
                     "distance": "OM_Measurement"}
    assert [o["result"] for o in sim.observations] == [True, 12, "watchdog", "1.4.2", 412.0]


# -- failures through the outbox --------------------------------------------------------------------

def worker(sim: FrostSimulator, store: Store, **kw: Any) -> tuple[DeliveryWorker, RecordingSleep]:
    sleep = RecordingSleep()
    sink = sink_for(sim, Path(store.path))  # the id table lives in the store file, as in production
    return DeliveryWorker(sink, store, sleep=sleep, rng=random.Random(2), backoff=Backoff(jitter=0.0), **kw), sleep


def test_error_rows_are_dead_lettered_and_the_rest_delivered_exactly_once(store: Store) -> None:
    add(store, air(1) + air(2) + air(3))

    async def main() -> FrostSimulator:
        async with FrostSimulator() as sim:
            sim.reject = lambda row: row["result"] == 23.5  # temperature of uplink 2
            w, sleep = worker(sim, store)
            await w.drain()
            await w.sink.aclose()
            assert sleep.delays == []
            return sim

    sim = asyncio.run(main())
    assert len(sim.observations) == 8
    (letter,) = store.dead_letters()
    assert letter.source == "sink:sensorthings" and '"error"' in letter.reason
    assert '"value": 23.5' in letter.raw and store.pending("sensorthings") == 0


def test_server_errors_are_retried_with_backoff_then_everything_arrives_once(store: Store) -> None:
    add(store, air(1) + air(2))

    async def main() -> FrostSimulator:
        async with FrostSimulator() as sim:
            sim.fail_next.extend([503, 500, 502])
            w, sleep = worker(sim, store)
            await w.drain()
            await w.sink.aclose()
            assert sleep.delays == [1.0, 2.0, 4.0]
            return sim

    sim = asyncio.run(main())
    keys = [(o["Datastream"], o["phenomenonTime"]) for o in sim.observations]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert len(sim.entities["Things"]) == 1 and store.dead_letters() == []


def test_device_without_location_is_dead_lettered_with_the_reason(store: Store) -> None:
    add(store, air(1))

    async def main() -> FrostSimulator:
        async with FrostSimulator() as sim:
            sink = SensorThingsSink(SensorThingsConfig(url=sim.url, id_cache=store.path))
            w = DeliveryWorker(sink, store, sleep=RecordingSleep())
            await w.drain()
            await sink.aclose()
            return sim

    sim = asyncio.run(main())
    letters = store.dead_letters()
    assert len(letters) == 3 and "default_location" in letters[0].reason and sim.observations == []


def test_resumes_after_restart_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite"
    first = Store.open(path)
    add(first, [x for i in range(1, 11) for x in air(i)])

    async def main() -> FrostSimulator:
        async with FrostSimulator() as sim:
            w1, _ = worker(sim, first, batch_size=9)
            assert await w1.step() == 9
            await w1.sink.aclose()
            first.close()
            second = Store.open(path)
            w2, _ = worker(sim, second, batch_size=9)
            await w2.drain()
            await w2.sink.aclose()
            second.close()
            return sim

    sim = asyncio.run(main())
    assert len(sim.observations) == 30 and len(sim.entities["Datastreams"]) == 3


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (500, True), (503, True), (429, True)])
def test_create_observations_failures_are_classified(tmp_path: Path, status: int, retryable: bool) -> None:
    async def main() -> SinkError:
        async with FrostSimulator() as sim, sink_for(sim, tmp_path / "ids.sqlite") as sink:
            await sink.deliver(list(enumerate(air(1), start=1)))  # entities exist now
            sim.fail_next.append(status)
            with pytest.raises(SinkError) as info:
                await sink.deliver(list(enumerate(air(2), start=4)))
            return info.value

    assert asyncio.run(main()).retryable is retryable


def test_slow_server_times_out_as_retryable(tmp_path: Path) -> None:
    async def main() -> SinkError:
        async with FrostSimulator() as sim:
            sim.delay_s = 1.0
            async with sink_for(sim, tmp_path / "ids.sqlite", timeout_s=0.2) as sink:
                with pytest.raises(SinkError) as info:
                    await sink.deliver(list(enumerate(air(1), start=1)))
                return info.value

    assert asyncio.run(main()).retryable
