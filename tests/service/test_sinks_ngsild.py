"""NGSI-LD sink: Smart Data Models mapping, and delivery through the outbox to a broker simulator.

No NGSI-LD broker can run here, so ``gateway.sim.platforms.ngsild`` stands in: it checks the request shapes
of ETSI GS CIM 009 (content type, ``@context`` per entity, attribute structure) and the Smart Data
Models constraints, and answers 201/204/207/4xx/5xx like Orion-LD.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.contract.records import Reading, Uplink
from gateway.errors import SinkError
from gateway.service.outbox import Backoff, Delivery, DeliveryWorker
from gateway.service.sinks.ngsild import (
    CORE_CONTEXT,
    DEFAULT_CITYNODE_CONTEXT_URL,
    MappingError,
    NgsiLdConfig,
    NgsiLdSink,
    build_entity,
)
from gateway.service.sinks.ngsild_models import SUBJECT_CONTEXTS
from gateway.service.store import Store
from gateway.sim.platforms.ngsild import NgsiLdSimulator, check_entity

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
GELSENKIRCHEN = (7.0857, 51.5177)  # lon, lat: AirQualityObserved and WasteContainer require a location
WHERE: dict[str, Any] = {"default_location": GELSENKIRCHEN}  # for devices without position tags
UNITS = {  # field -> (unit, UN/CEFACT code), as in codecs/schema.json
    "temperature": ("°C", "CEL"), "relative_humidity": ("%", "P1"), "pressure": ("hPa", "A97"),
    "gas_resistance": ("Ω", "OHM"), "pm1_0": ("µg/m³", "GQ"), "pm2_5": ("µg/m³", "GQ"),
    "pm10": ("µg/m³", "GQ"), "battery": ("V", "VLT"), "distance": ("mm", "MMT"), "fill_level": ("%", "P1"),
    "interval": ("s", "SEC"), "uptime": ("s", "SEC"), "latitude": ("°", "DD"), "longitude": ("°", "DD"),
}


def uplink(msg_type: str, fields: dict[str, Any], *, dev_eui: str = "70b3d57ed0000001", f_cnt: int = 1,
           time: datetime = T0, tags: dict[str, str] | None = None) -> list[Reading]:
    unit = UNITS.get
    return [
        Reading(dev_eui, f"node-{dev_eui[-4:]}", msg_type, time, name, value, (unit(name) or (None, None))[0],
                (unit(name) or (None, None))[1], f"dedup-{dev_eui}-{f_cnt}", f_cnt, tags or {})
        for name, value in fields.items()
    ]


AIR = {"temperature": 21.5, "relative_humidity": 45.5, "pressure": 1013.2, "gas_resistance": 120000,
       "pm1_0": 3.1, "pm2_5": 7.4, "pm10": 12.0, "battery": 3.71}


def add(store: Store, readings: list[Reading]) -> None:
    by_dedup: dict[str, list[Reading]] = {}
    for r in readings:
        by_dedup.setdefault(r.deduplication_id, []).append(r)
    for dedup, group in by_dedup.items():
        f = group[0]
        assert store.record_uplink(Uplink(f.dev_eui, f.device_name, "app", 10, f.f_cnt, b"", f.time, dedup,
                                          dict(f.tags)), group)


CONFIG = NgsiLdConfig(url="http://unused", **WHERE)


def entity(msg_type: str, fields: dict[str, Any], **kw: Any) -> dict[str, Any]:
    e = build_entity(uplink(msg_type, fields, **kw), CONFIG)
    assert check_entity(e, ld_json=True) is None, check_entity(e, ld_json=True)
    return e


# -- mapping ----------------------------------------------------------------------------------------

def test_air_quality_becomes_air_quality_observed_with_units_and_observed_at() -> None:
    e = entity("air_quality", AIR)
    assert e["id"] == "urn:ngsi-ld:AirQualityObserved:70b3d57ed0000001"
    assert e["type"] == "AirQualityObserved"
    assert e["@context"] == [SUBJECT_CONTEXTS["Environment"], DEFAULT_CITYNODE_CONTEXT_URL, CORE_CONTEXT]
    assert e["dateObserved"] == {"type": "Property", "value": {"@type": "DateTime",
                                                               "@value": "2026-05-04T12:00:00.000Z"}}
    assert e["refDevice"]["object"] == "urn:ngsi-ld:Device:70b3d57ed0000001"
    expected = {  # attribute: (value, unitCode)
        "temperature": (21.5, "CEL"), "relativeHumidity": (0.455, "C62"), "pressure": (1013.2, "A97"),
        "pm1": (3.1, "GQ"), "pm25": (7.4, "GQ"), "pm10": (12.0, "GQ"), "gasResistance": (120000, "OHM"),
        "batteryVoltage": (3.71, "VLT"),
    }
    for attr, (value, code) in expected.items():
        assert e[attr] == {"type": "Property", "value": value, "observedAt": "2026-05-04T12:00:00.000Z",
                           "unitCode": code}, attr


@pytest.mark.parametrize(
    ("temperature", "tilt", "status"),
    [(18.0, False, "ok"), (18.0, True, "lidOpen"), (65.0, False, "burning"), (65.0, True, "burning"),
     (59.9, False, "ok")],
)
def test_waste_container_fill_level_is_a_fraction_and_status_follows_tilt_and_heat(
        temperature: float, tilt: bool, status: str) -> None:
    e = entity("bin_fill", {"distance": 412, "fill_level": 73, "temperature": temperature, "tilt": tilt})
    assert e["type"] == "WasteContainer" and e["id"] == "urn:ngsi-ld:WasteContainer:70b3d57ed0000001"
    assert e["fillingLevel"]["value"] == 0.73 and e["fillingLevel"]["unitCode"] == "C62"
    assert e["status"]["value"] == status
    assert e["distance"]["unitCode"] == "MMT" and e["tilt"]["value"] is tilt


@pytest.mark.parametrize(("wifi", "ble", "people"), [(12, 30, 30), (40, 5, 40), (0, 0, 0)])
def test_crowd_count_people_count_is_the_larger_device_count(wifi: int, ble: int, people: int) -> None:
    e = entity("crowd_count", {"interval": 300, "wifi_devices": wifi, "ble_devices": ble})
    assert e["type"] == "CrowdFlowObserved"
    assert e["peopleCount"]["value"] == people
    assert (e["wifiDeviceCount"]["value"], e["bleDeviceCount"]["value"]) == (wifi, ble)
    assert e["dateObservedFrom"]["value"]["@value"] == "2026-05-04T11:55:00.000Z"
    assert e["dateObservedTo"]["value"]["@value"] == "2026-05-04T12:00:00.000Z"


def test_crowd_count_with_one_radio_faulty_counts_the_other() -> None:
    e = entity("crowd_count", {"interval": 60, "ble_devices": 9, "faults": ["wifi_devices"]})
    assert e["peopleCount"]["value"] == 9 and e["faults"]["value"] == ["wifi_devices"]


def test_passenger_count_sums_doors_and_places_the_vehicle() -> None:
    e = entity("passenger_count", {
        "interval": 120, "doors.0.door": 1, "doors.0.boardings": 4, "doors.0.alightings": 2,
        "doors.1.door": 2, "doors.1.boardings": 3, "doors.1.alightings": 0, "occupancy": 37,
        "latitude": 51.51773, "longitude": 7.08571})
    assert e["type"] == "PassengerCountObserved"
    assert e["doors"]["value"] == [{"door": 1, "boardings": 4, "alightings": 2},
                                   {"door": 2, "boardings": 3, "alightings": 0}]
    assert (e["boardings"]["value"], e["alightings"]["value"], e["peopleOnBoard"]["value"]) == (7, 2, 37)
    assert e["location"]["value"] == {"type": "Point", "coordinates": [7.08571, 51.51773]}
    assert e["dateObservedFrom"]["value"]["@value"] == "2026-05-04T11:58:00.000Z"


def test_device_status_becomes_device() -> None:
    e = entity("device_status", {"firmware": [1, 4, 2], "uptime": 86400, "reset_cause": "watchdog",
                                 "battery": 3.3, "update": "rolled_back_selftest"})
    assert e["id"] == "urn:ngsi-ld:Device:70b3d57ed0000001" and "refDevice" not in e
    assert e["firmwareVersion"]["value"] == "1.4.2" and e["resetCause"]["value"] == "watchdog"
    assert e["uptime"]["unitCode"] == "SEC"
    assert e["firmwareUpdate"]["value"] == "rolled_back_selftest"  # a term of the citynode context


def test_location_comes_from_device_tags_when_there_is_no_gps() -> None:
    e = entity("bin_fill", {"fill_level": 10}, tags={"latitude": "51.5", "longitude": "7.1"})
    assert e["location"]["value"]["coordinates"] == [7.1, 51.5]


def test_ngsild_id_tag_targets_an_entity_the_city_already_has() -> None:
    e = entity("bin_fill", {"fill_level": 10}, tags={"ngsild_id": "urn:ngsi-ld:WasteContainer:gek-0815"})
    assert e["id"] == "urn:ngsi-ld:WasteContainer:gek-0815"


def test_unknown_fields_are_kept_in_lower_camel_case() -> None:
    e = entity("air_quality", {"temperature": 20.0, "voc_index": 110})
    assert e["vocIndex"]["value"] == 110


def test_unknown_message_type_is_a_mapping_error_naming_it() -> None:
    with pytest.raises(MappingError, match="'soil_moisture'"):
        build_entity(uplink("soil_moisture", {"moisture": 3}), CONFIG)


# -- delivery against the simulator -----------------------------------------------------------------

class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def mixed_traffic(n: int) -> list[Reading]:
    """n uplinks from three devices of different roles, several uplinks per device."""
    out: list[Reading] = []
    for i in range(n):
        t = T0 + timedelta(minutes=i)
        if i % 3 == 0:
            out += uplink("air_quality", AIR, dev_eui="70b3d57ed0000001", f_cnt=i, time=t)
        elif i % 3 == 1:
            out += uplink("bin_fill", {"fill_level": i % 100, "temperature": 12.0, "tilt": False},
                          dev_eui="70b3d57ed0000002", f_cnt=i, time=t)
        else:
            out += uplink("crowd_count", {"interval": 60, "wifi_devices": i, "ble_devices": 2},
                          dev_eui="70b3d57ed0000003", f_cnt=i, time=t)
    return out


def worker(sim: NgsiLdSimulator, store: Store, **kw: Any) -> tuple[DeliveryWorker, RecordingSleep]:
    sleep = RecordingSleep()
    sink = NgsiLdSink(NgsiLdConfig(url=sim.url, tenant="gelsenkirchen", token="s3cret", **WHERE))
    return DeliveryWorker(sink, store, sleep=sleep, rng=random.Random(1),
                          backoff=Backoff(jitter=0.0), **kw), sleep


def observations(sim: NgsiLdSimulator) -> list[tuple[str, str]]:
    return [(u["id"], u["dateObserved"]["value"]["@value"]) for u in sim.updates]


def test_every_uplink_arrives_exactly_once_as_one_entity_update(store: Store) -> None:
    add(store, mixed_traffic(30))

    async def main() -> NgsiLdSimulator:
        async with NgsiLdSimulator() as sim:
            w, sleep = worker(sim, store, batch_size=25)
            await w.drain()
            await w.sink.aclose()
            assert sleep.delays == []
            return sim

    sim = asyncio.run(main())
    obs = observations(sim)
    assert len(obs) == 30 and len(set(obs)) == 30
    assert store.pending("ngsild") == 0 and store.dead_letters() == []
    first = sim.requests[0]
    assert first["headers"]["Content-Type"] == "application/ld+json"
    assert first["headers"]["NGSILD-Tenant"] == "gelsenkirchen"
    assert first["headers"]["Authorization"] == "Bearer s3cret"
    assert first["query"] == {"options": "update"}
    # the latest state of each entity is the newest uplink
    assert sim.entities["urn:ngsi-ld:CrowdFlowObserved:70b3d57ed0000003"]["wifiDeviceCount"]["value"] == 29


def test_broker_down_for_a_while_is_retried_with_backoff_then_catches_up(store: Store) -> None:
    add(store, mixed_traffic(12))

    async def main() -> tuple[NgsiLdSimulator, RecordingSleep]:
        async with NgsiLdSimulator() as sim:
            sim.fail_next.extend([503, 503, 500])
            w, sleep = worker(sim, store, batch_size=100)
            await w.drain()
            await w.sink.aclose()
            return sim, sleep

    sim, sleep = asyncio.run(main())
    assert sleep.delays == [1.0, 2.0, 4.0]
    obs = observations(sim)
    assert len(obs) == 12 and len(set(obs)) == 12
    assert store.dead_letters() == []


def test_207_partial_failure_dead_letters_only_the_rejected_entities(store: Store) -> None:
    add(store, mixed_traffic(9))
    bad = "urn:ngsi-ld:WasteContainer:70b3d57ed0000002"

    async def main() -> NgsiLdSimulator:
        async with NgsiLdSimulator() as sim:
            sim.reject = lambda e: 400 if e["id"] == bad else None
            w, _ = worker(sim, store)
            await w.drain()
            await w.sink.aclose()
            return sim

    sim = asyncio.run(main())
    delivered = observations(sim)
    assert len(delivered) == 6 and all(eid != bad for eid, _ in delivered)
    letters = store.dead_letters(limit=1000)
    assert len(letters) == 3 * 3  # three bin uplinks of three readings each
    assert {d.dev_eui for d in letters} == {"70b3d57ed0000002"}
    assert all(d.source == "sink:ngsild" and "207" in d.reason and "400" in d.reason for d in letters)
    assert store.pending("ngsild") == 0


def test_207_with_a_server_error_per_entity_is_retried_not_dead_lettered(store: Store) -> None:
    add(store, mixed_traffic(3))
    refusals = deque([503])

    async def main() -> NgsiLdSimulator:
        async with NgsiLdSimulator() as sim:
            sim.reject = lambda e: refusals.popleft() if "AirQuality" in e["id"] and refusals else None
            w, sleep = worker(sim, store)
            await w.drain()
            await w.sink.aclose()
            assert sleep.delays == [1.0]
            return sim

    sim = asyncio.run(main())
    assert sorted(eid.split(":")[2] for eid, _ in observations(sim)) == [
        "AirQualityObserved", "CrowdFlowObserved", "WasteContainer"]
    assert store.dead_letters() == []


def test_values_outside_the_model_are_refused_per_entity() -> None:
    bad = uplink("air_quality", {"relative_humidity": 150.0})  # a broken sensor: 1.5 as a fraction

    async def main() -> Any:
        async with NgsiLdSimulator() as sim, NgsiLdSink(NgsiLdConfig(url=sim.url, **WHERE)) as sink:
            return await sink.deliver(list(enumerate(bad, start=1)))

    result = asyncio.run(main())
    (failure,) = result.failures
    assert failure.reading_id == 1 and not failure.retryable and "relativeHumidity" in failure.reason


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (413, False), (415, False), (422, False),
     (401, True), (403, True), (404, True), (429, True), (500, True), (502, True), (503, True)],
)
def test_whole_request_failures_are_classified_by_status(status: int, retryable: bool) -> None:
    async def main() -> SinkError:
        async with NgsiLdSimulator() as sim:
            sim.fail_next.append(status)
            async with NgsiLdSink(NgsiLdConfig(url=sim.url, **WHERE)) as sink:
                with pytest.raises(SinkError) as info:
                    await sink.deliver(list(enumerate(uplink("air_quality", AIR), start=1)))
                return info.value

    error = asyncio.run(main())
    assert error.retryable is retryable and f"HTTP {status}" in str(error)


def test_slow_broker_times_out_as_retryable() -> None:
    async def main() -> SinkError:
        async with NgsiLdSimulator() as sim:
            sim.delay_s = 1.0
            async with NgsiLdSink(NgsiLdConfig(url=sim.url, timeout_s=0.2, **WHERE)) as sink:
                with pytest.raises(SinkError) as info:
                    await sink.deliver(list(enumerate(uplink("air_quality", AIR), start=1)))
                return info.value

    assert asyncio.run(main()).retryable


def test_unreachable_broker_is_retryable() -> None:
    async def main() -> SinkError:
        async with NgsiLdSimulator() as sim:
            url = sim.url
        async with NgsiLdSink(NgsiLdConfig(url=url, **WHERE)) as sink:  # the port is closed now
            with pytest.raises(SinkError) as info:
                await sink.deliver(list(enumerate(uplink("air_quality", AIR), start=1)))
            return info.value

    assert asyncio.run(main()).retryable


def test_two_uplinks_of_one_device_in_a_batch_are_sent_in_order_in_separate_requests() -> None:
    readings = (uplink("bin_fill", {"fill_level": 10}, f_cnt=1)
                + uplink("bin_fill", {"fill_level": 20}, f_cnt=2, time=T0 + timedelta(minutes=5))
                + uplink("air_quality", {"temperature": 20.0}, dev_eui="70b3d57ed0000009", f_cnt=7))

    async def main() -> NgsiLdSimulator:
        async with NgsiLdSimulator() as sim:
            async with NgsiLdSink(NgsiLdConfig(url=sim.url, **WHERE)) as sink:
                result = await sink.deliver(list(enumerate(readings, start=1)))
            assert result.failures == ()
            return sim

    sim = asyncio.run(main())
    assert len(sim.requests) == 2  # the simulator refuses duplicate ids in one batch, like a broker may
    wc = sim.entities["urn:ngsi-ld:WasteContainer:70b3d57ed0000001"]
    assert wc["fillingLevel"]["value"] == 0.2


def test_unknown_message_types_are_dead_lettered_and_the_rest_delivered(store: Store) -> None:
    add(store, uplink("soil_moisture", {"moisture": 3}, f_cnt=1) + uplink("air_quality", AIR, f_cnt=2))

    async def main() -> NgsiLdSimulator:
        async with NgsiLdSimulator() as sim:
            w, _ = worker(sim, store)
            await w.drain()
            await w.sink.aclose()
            return sim

    sim = asyncio.run(main())
    assert len(sim.updates) == 1
    (letter,) = store.dead_letters()
    assert "no NGSI-LD mapping for message type 'soil_moisture'" in letter.reason


def test_restart_resumes_from_the_cursor_without_resending(tmp_path: Any) -> None:
    path = tmp_path / "gw.sqlite"
    first = Store.open(path)
    add(first, mixed_traffic(20))

    async def main() -> NgsiLdSimulator:
        async with NgsiLdSimulator() as sim:
            w1, _ = worker(sim, first, batch_size=30)
            assert 0 < await w1.step() <= 30  # whole uplinks only
            await w1.sink.aclose()
            first.close()
            second = Store.open(path)  # the gateway restarts
            w2, _ = worker(sim, second, batch_size=30)
            await w2.drain()
            await w2.sink.aclose()
            assert second.pending("ngsild") == 0
            second.close()
            return sim

    obs = observations(asyncio.run(main()))
    assert len(obs) == 20 and len(set(obs)) == 20


def test_a_broker_that_stays_down_does_not_block_another_sink(store: Store) -> None:
    add(store, mixed_traffic(15))

    async def main() -> tuple[NgsiLdSimulator, NgsiLdSimulator]:
        async with NgsiLdSimulator() as down, NgsiLdSimulator() as up:
            down.fail_next.extend([503] * 1_000_000)
            sinks = [NgsiLdSink(NgsiLdConfig(url=down.url, name="city", **WHERE)),
                     NgsiLdSink(NgsiLdConfig(url=up.url, name="partner", **WHERE))]
            async with Delivery(store, sinks, batch_size=10, sleep=RecordingSleep(), poll_interval_s=0.05,
                                backoff=Backoff(jitter=0.0)):
                while store.pending("partner") or len(down.requests) < 3:
                    await asyncio.sleep(0.01)
            return down, up

    down, up = asyncio.run(main())
    assert len(observations(up)) == 15 and down.updates == []
    assert store.pending("city") == len(mixed_traffic(15))
    assert store.get_cursor("city") == 0
