"""MQTT republish sink against a real mosquitto started on a free port (marked ``mqtt``)."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.contract.records import Reading, Uplink
from gateway.errors import SinkError
from gateway.service.outbox import Backoff, DeliveryWorker
from gateway.service.sinks.mqtt import MqttSink, MqttSinkConfig, uplink_message
from gateway.service.store import Store

pytestmark = pytest.mark.mqtt

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


class Broker:
    """One mosquitto process on a fixed free port; ``stop``/``start`` simulate an outage."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.fail("mosquitto is not installed (make sysdeps installs it)", pytrace=False)
        self.exe = exe
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log, stderr=log)
        for _ in range(500):  # until the port accepts connections
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    pytest.fail(f"mosquitto exited; see {self.log}", pytrace=False)
                time.sleep(0.01)
        pytest.fail(f"mosquitto did not listen on {self.port}; see {self.log}", pytrace=False)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def uplink(f_cnt: int, dev: str = "70b3d57ed0000001") -> list[Reading]:
    t = T0 + timedelta(minutes=f_cnt)
    return [Reading(dev, "aq-1", "air_quality", t, f, v, u, c, f"dedup-{dev}-{f_cnt}", f_cnt, {"district": "altstadt"})
            for f, v, u, c in (("temperature", 20.0 + f_cnt, "°C", "CEL"), ("pm2_5", 7.4, "µg/m³", "GQ"))]


def add(store: Store, readings: list[Reading]) -> None:
    f = readings[0]
    assert store.record_uplink(Uplink(f.dev_eui, f.device_name, "app", 10, f.f_cnt, b"", f.time,
                                      f.deduplication_id, dict(f.tags)), readings)


async def collect(port: int, ready: asyncio.Event, out: list[tuple[str, dict[str, Any]]], want: int) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as sub:
        await sub.subscribe("citynode/#", qos=1)
        ready.set()
        async for msg in sub.messages:
            out.append((str(msg.topic), json.loads(msg.payload)))
            if len(out) >= want:
                return


def test_uplink_message_groups_the_fields_with_units() -> None:
    msg = uplink_message(uplink(3))
    assert msg == {
        "devEui": "70b3d57ed0000001", "deviceName": "aq-1", "type": "air_quality",
        "time": "2026-05-04T12:03:00.000Z", "deduplicationId": "dedup-70b3d57ed0000001-3", "fCnt": 3,
        "tags": {"district": "altstadt"},
        "readings": {"temperature": {"value": 23.0, "unit": "°C", "unitCode": "CEL"},
                     "pm2_5": {"value": 7.4, "unit": "µg/m³", "unitCode": "GQ"}},
    }


def test_every_uplink_is_republished_once_with_qos_1(broker: Broker, store: Store) -> None:
    for i in range(1, 21):
        add(store, uplink(i, dev=f"70b3d57ed000000{i % 3}"))

    async def main() -> list[tuple[str, dict[str, Any]]]:
        got: list[tuple[str, dict[str, Any]]] = []
        ready = asyncio.Event()
        listener = asyncio.create_task(collect(broker.port, ready, got, 20))
        await ready.wait()
        sink = MqttSink(MqttSinkConfig(host="127.0.0.1", port=broker.port))
        w = DeliveryWorker(sink, store, batch_size=7)
        await w.drain()
        await sink.aclose()
        await asyncio.wait_for(listener, 10)
        return got

    got = asyncio.run(main())
    assert len(got) == 20
    assert len({m["deduplicationId"] for _, m in got}) == 20
    topic, first = got[0]
    assert topic == "citynode/readings/70b3d57ed0000001/air_quality" and first["fCnt"] == 1
    assert store.pending("mqtt") == 0


def test_broker_outage_is_retryable_and_the_outbox_catches_up(broker: Broker, store: Store) -> None:
    for i in range(1, 6):
        add(store, uplink(i))

    async def main() -> list[tuple[str, dict[str, Any]]]:
        sink = MqttSink(MqttSinkConfig(host="127.0.0.1", port=broker.port, timeout_s=2.0))
        w = DeliveryWorker(sink, store, batch_size=4, backoff=Backoff(jitter=0.0), rng=random.Random(1))
        await w.step()  # the first 2 uplinks (4 readings) arrive
        broker.stop()
        with pytest.raises(SinkError) as info:
            await sink.deliver(store.readings_after(store.get_cursor("mqtt"), 4))
        assert info.value.retryable
        broker.start()
        got: list[tuple[str, dict[str, Any]]] = []
        ready = asyncio.Event()
        listener = asyncio.create_task(collect(broker.port, ready, got, 3))
        await ready.wait()
        await w.drain()  # reconnects
        await sink.aclose()
        await asyncio.wait_for(listener, 10)
        return got

    got = asyncio.run(main())
    assert [m["fCnt"] for _, m in got] == [3, 4, 5]
    assert store.pending("mqtt") == 0 and store.dead_letters() == []


def test_unreachable_broker_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed

    async def main() -> SinkError:
        sink = MqttSink(MqttSinkConfig(host="127.0.0.1", port=port, timeout_s=2.0))
        with pytest.raises(SinkError) as info:
            await sink.deliver([(1, uplink(1)[0])])
        return info.value

    assert asyncio.run(main()).retryable


def test_republish_over_tls_with_username_and_password(mosquitto: Any, store: Store) -> None:
    """The shared broker's TLS listener (throw-away CA, password file); the subscriber uses plain MQTT."""
    add(store, uplink(1, dev="70b3d57ed00000f1"))

    async def main() -> list[tuple[str, dict[str, Any]]]:
        got: list[tuple[str, dict[str, Any]]] = []
        ready = asyncio.Event()
        listener = asyncio.create_task(collect(mosquitto.port, ready, got, 1))
        await ready.wait()
        sink = MqttSink(MqttSinkConfig(host="localhost", port=mosquitto.tls_port, tls=True,
                                   ca_file=str(mosquitto.tls["ca"]), username=mosquitto.username,
                                   password=mosquitto.password, topic_prefix="citynode/tls"))
        await DeliveryWorker(sink, store).drain()
        await sink.aclose()
        await asyncio.wait_for(listener, 10)
        return got

    (topic, msg), = asyncio.run(main())
    assert topic == "citynode/tls/70b3d57ed00000f1/air_quality" and msg["fCnt"] == 1


def test_a_wrong_password_is_retryable_not_a_reason_to_drop_readings(mosquitto: Any) -> None:
    async def main() -> SinkError:
        sink = MqttSink(MqttSinkConfig(host="localhost", port=mosquitto.tls_port, tls=True,
                                   ca_file=str(mosquitto.tls["ca"]), username=mosquitto.username,
                                   password="wrong", timeout_s=5.0))
        with pytest.raises(SinkError) as info:
            await sink.deliver([(1, uplink(1)[0])])
        return info.value

    error = asyncio.run(main())
    assert error.retryable and "wrong" not in str(error)  # the password never appears in a message
