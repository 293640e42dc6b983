"""From ChirpStack events to every sink: pipeline -> store -> outbox -> NGSI-LD and SensorThings simulators.

Events are built from ``chirpstack-api`` messages with real citynode payloads (gateway codec), in JSON and
protobuf, including a redelivered duplicate and an undecodable payload; the counts are checked end to end.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.contract import codec
from gateway.service.outbox import Backoff, Delivery
from gateway.service.pipeline import Pipeline
from gateway.service.sinks.ngsild import NgsiLdConfig, NgsiLdSink
from gateway.service.sinks.sensorthings import SensorThingsConfig, SensorThingsSink
from gateway.service.store import Store
from gateway.sim.platforms.frost import FrostSimulator
from gateway.sim.platforms.ngsild import NgsiLdSimulator

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
TRAFFIC: list[tuple[str, int, str, dict[str, Any]]] = [  # (type, fPort, devEui, reading)
    ("air_quality", 10, "70b3d57ed0000a01", {"temperature": 21.5, "relative_humidity": 45.2, "pressure": 1013.2,
                                             "gas_resistance": 120000, "pm1_0": 3.1, "pm2_5": 5.4, "pm10": 9.8,
                                             "battery": 3.71}),
    ("bin_fill", 11, "70b3d57ed0000b01", {"distance": 412, "fill_level": 73, "temperature": 18.5, "tilt": True,
                                          "battery": 3.6}),
    ("passenger_count", 12, "70b3d57ed0000c01", {
        "interval": 120, "doors": [{"door": 1, "boardings": 4, "alightings": 2},
                                   {"door": 2, "boardings": 3, "alightings": 0}],
        "occupancy": 37, "battery": 3.7, "latitude": 51.51773, "longitude": 7.08571}),
    ("crowd_count", 13, "70b3d57ed0000d01", {"interval": 300, "wifi_devices": 12, "ble_devices": 30, "battery": 3.6}),
    ("device_status", 1, "70b3d57ed0000a01", {"firmware": "1.4.2", "uptime": 86400, "reset_cause": "watchdog",
                                              "battery": 3.3, "faults": []}),
]


class NoWait:
    async def __call__(self, delay: float) -> None:
        await asyncio.sleep(0)


def test_every_uplink_reaches_every_sink_exactly_once(store: Store, events: Any) -> None:
    pipeline = Pipeline(store)
    uplinks = 0
    for round_ in range(4):
        for n, (msg_type, port, dev, reading) in enumerate(TRAFFIC):
            f_cnt = round_ * 10 + n
            ev = events.up(f_cnt=f_cnt, data=codec.encode_uplink(msg_type, reading), f_port=port, dev_eui=dev,
                           time=T0 + timedelta(minutes=f_cnt))
            encoding = "json" if f_cnt % 2 else "protobuf"
            pipeline.handle("up", events.body(ev, encoding), encoding, "mqtt")
            uplinks += 1
            if f_cnt == 3:  # QoS 1 redelivery of the same event: stored once, delivered once
                pipeline.handle("up", events.body(ev, encoding), encoding, "mqtt")
    bad = events.up(f_cnt=99, data=b"\xff\x00garbage", f_port=10, dev_eui="70b3d57ed0000a01")
    pipeline.handle("up", events.body(bad), "json", "mqtt")
    readings = store.last_reading_id()
    assert readings > uplinks

    async def main() -> tuple[NgsiLdSimulator, FrostSimulator]:
        async with NgsiLdSimulator() as broker, FrostSimulator() as frost:
            broker.fail_next.extend([503, 503])  # the broker is restarting when the gateway starts
            sinks = [NgsiLdSink(NgsiLdConfig(url=broker.url, default_location=(7.0857, 51.5177))),
                     SensorThingsSink(SensorThingsConfig(url=frost.url, id_cache=store.path,
                                                         default_location=(7.0857, 51.5177)))]
            async with Delivery(store, sinks, batch_size=16, sleep=NoWait(), poll_interval_s=0.05,
                                backoff=Backoff(jitter=0.0)) as delivery:
                delivery.notify()
                while store.pending("ngsild") or store.pending("sensorthings"):
                    await asyncio.sleep(0.01)
            return broker, frost

    broker, frost = asyncio.run(main())
    updates = [(u["id"], u["dateObserved"]["value"]["@value"]) for u in broker.updates]
    assert len(updates) == uplinks and len(set(updates)) == uplinks
    assert len(frost.observations) == readings
    assert {d.source for d in store.dead_letters()} <= {"decode"}  # only the garbage payload, not a sink
    bus = broker.entities["urn:ngsi-ld:PassengerCountObserved:70b3d57ed0000c01"]
    assert bus["boardings"]["value"] == 7 and bus["location"]["value"]["coordinates"] == [7.08571, 51.51773]
    assert broker.entities["urn:ngsi-ld:WasteContainer:70b3d57ed0000b01"]["status"]["value"] == "lidOpen"
    assert broker.entities["urn:ngsi-ld:Device:70b3d57ed0000a01"]["firmwareVersion"]["value"] == "1.4.2"
    assert len(frost.entities["Things"]) == 4
