"""Reliability of the MQTT ingest against a real mosquitto restarted mid-stream (docs/reliability.md).

* A shared subscription (``$share/<group>/...``) loses, on this broker, everything published while every
  member was offline: the test shows it on mosquitto itself, and the gateway refuses ``shared_group``
  unless the operator accepts the loss (then it says so at start-up and in ``/health``).
* One subscriber with a persistent session (QoS 1) loses and duplicates nothing through a broker
  restart, a gateway ``kill -9`` and both at once.
* A broker restarted without persistence has forgotten the session: what it received before the
  gateway re-subscribed is gone, and the gateway says so in ``/health``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import replace

import paho.mqtt.client as paho
import pytest

from gateway.errors import ConfigError
from gateway.service.app import GatewayService
from gateway.service.config import MqttConfig, parse_config
from gateway.service.ingest.mqtt import MqttIngest
from gateway.service.pipeline import Pipeline
from gateway.service.store import Store

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

APP_EVENTS = 100  # published while the gateway cannot receive them


def publish(broker, bodies: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1, each confirmed by the broker (PUBACK) before the next."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, body in bodies:
            client.publish(topic, body, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def uplinks(events, aq_payload, app: str, first: int, n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(first, first + n):
        dev = f"00000000000000{i % 4:02x}"
        msg = events.up(f_cnt=i, data=aq_payload(), dev_eui=dev, dedup=f"{app}-{i}")
        out.append((f"application/{app}/device/{dev}/event/up", msg.SerializeToString()))
    return out


def config_for(broker, app: str, **changes) -> MqttConfig:
    return replace(
        MqttConfig(
            enabled=True,
            host=broker.host,
            port=broker.port,
            client_id=f"rel-{uuid.uuid4().hex[:8]}",
            topic=f"application/{app}/device/+/event/+",
            encoding="protobuf",
        ),
        **changes,
    )


async def until(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    """A deadlock guard: fails after ``timeout`` s, asserts nothing about speed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def offline_then_back(own_mosquitto, store, events, aq_payload, **changes) -> tuple[int, list[str]]:
    """Subscribe, go offline, restart the broker, publish APP_EVENTS, come back, publish a marker.

    Returns how many of the APP_EVENTS were stored once the marker (published after the gateway was
    back) was, and the dedup ids stored. mosquitto delivers a session's queued messages before new ones.
    """
    app = uuid.uuid4().hex
    config = config_for(own_mosquitto, app, **changes)

    async def main() -> None:
        ingest = MqttIngest(config, Pipeline(store))
        task = asyncio.create_task(ingest.run())
        await asyncio.wait_for(ingest.connected.wait(), 30)
        ingest.stop()
        await asyncio.wait_for(task, 30)

        own_mosquitto.restart()  # persistence true: the sessions and their subscriptions survive
        publish(own_mosquitto, uplinks(events, aq_payload, app, 1, APP_EVENTS))

        ingest = MqttIngest(config, Pipeline(store))
        task = asyncio.create_task(ingest.run())
        await asyncio.wait_for(ingest.connected.wait(), 60)
        publish(own_mosquitto, uplinks(events, aq_payload, app, 10_000, 1))  # the marker
        await until(lambda: f"{app}-10000" in store.dedup_ids("up"), what="the marker stored")
        ingest.stop()
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
    ids = store.dedup_ids("up")
    return sum(1 for i in range(1, APP_EVENTS + 1) if f"{app}-{i}" in ids), ids


def test_this_broker_delivers_nothing_published_while_a_shared_subscription_was_offline(
    own_mosquitto, store, events, aq_payload
):
    """mosquitto 2.0.x itself: the reason a shared_group is refused (0 of 100 here, 100 without $share)."""
    received, _ = offline_then_back(
        own_mosquitto, store, events, aq_payload, shared_group=f"g{uuid.uuid4().hex[:8]}"
    )
    assert received < APP_EVENTS, received


def test_one_persistent_subscriber_receives_everything_published_across_a_broker_restart(
    own_mosquitto, store, events, aq_payload
):
    received, ids = offline_then_back(own_mosquitto, store, events, aq_payload)
    assert received == APP_EVENTS
    assert len(ids) == len(set(ids)) == APP_EVENTS + 1  # and nothing twice


def test_a_shared_group_is_refused_naming_the_loss_and_the_safe_alternatives():
    with pytest.raises(ConfigError) as refused:
        parse_config({"mqtt": {"enabled": True, "shared_group": "citynode"}})
    message = str(refused.value)
    assert "loses events" in message and "broker restart" in message
    assert "without shared_group" in message and "[amqp]" in message
    assert "mqtt.allow_shared_subscription_loss = true" in message


def test_mqtt_processes_are_removed_with_the_reason():
    with pytest.raises(ConfigError, match=r"mqtt.processes was removed: .* shared a subscription"):
        parse_config({"mqtt": {"enabled": True, "processes": 2}})


def test_an_accepted_shared_group_is_announced_at_start_up_and_in_health(tmp_path, caplog):
    cfg = parse_config(
        {
            "store": {"path": str(tmp_path / "g.sqlite")},
            "http": {"port": 0, "ingest": False},
            "mqtt": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": 1,
                "shared_group": "citynode",
                "allow_shared_subscription_loss": True,
            },
        }
    )

    async def main():
        async with GatewayService(cfg) as svc:
            return svc.warnings, await health(svc.http_port)

    with caplog.at_level(logging.WARNING, logger="citynode.service"):
        warnings, (status, doc) = asyncio.run(main())
    assert "loses events" in warnings["mqtt"]
    assert doc["warnings"]["mqtt"] == warnings["mqtt"]
    assert any(getattr(r, "warning", "") == warnings["mqtt"] for r in caplog.records)


async def health(port: int) -> tuple[int, dict]:
    def get() -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    return await asyncio.to_thread(get)


def test_a_broker_that_forgot_the_session_is_reported_in_health(own_mosquitto, tmp_path):
    conf = own_mosquitto.conf.read_text()
    own_mosquitto.conf.write_text(conf.replace("persistence true", "persistence false"))
    own_mosquitto.restart()
    app = uuid.uuid4().hex
    cfg = parse_config(
        {
            "store": {"path": str(tmp_path / "g.sqlite")},
            "http": {"port": 0, "ingest": False},
            "mqtt": {
                "enabled": True,
                "host": own_mosquitto.host,
                "port": own_mosquitto.port,
                "client_id": f"rel-{app[:8]}",
                "topic": f"application/{app}/device/+/event/+",
            },
        }
    )

    async def main():
        async with GatewayService(cfg) as svc:
            [mqtt] = svc.ingests
            await asyncio.wait_for(mqtt.connected.wait(), 30)
            status, doc = await health(svc.http_port)
            assert status == 200 and "warnings" not in doc
            await asyncio.to_thread(own_mosquitto.restart)  # no persistence: the session is gone
            await until(lambda: "mqtt session" in svc.warnings and mqtt.connected.is_set(), what="re-subscribed")
            return await health(svc.http_port)

    status, doc = asyncio.run(main())
    assert status == 200
    assert "lost this gateway's session" in doc["warnings"]["mqtt session"]
    assert "persistence true" in doc["warnings"]["mqtt session"]


# ------------------------------------------------------------- kill -9 and broker restart, together


def write_config(tmp_path, broker, app, http_port):
    path = tmp_path / "gw.toml"
    path.write_text(f"""
[store]
path = "{tmp_path / "gw.sqlite"}"

[mqtt]
enabled = true
host = "{broker.host}"
port = {broker.port}
client_id = "rel-{app[:8]}"
topic = "application/{app}/device/+/event/+"
encoding = "protobuf"

[http]
port = {http_port}
ingest = false
""")
    return path


def start_gateway(config, log):
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "gateway", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for(predicate, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stored(path) -> list[str]:
    with Store.open(path) as s:
        return s.dedup_ids("up")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return json.load(r)["status"] == "ok"
    except OSError:
        return False


KILLS = 3  # rounds of: stream, kill -9 the gateway mid-stream, restart the broker, publish, restart
PER_ROUND = 120


def test_kill_9_and_broker_restarts_together_lose_and_duplicate_nothing(
    own_mosquitto, tmp_path, events, aq_payload, free_port
):
    app = uuid.uuid4().hex
    port = free_port()
    config = write_config(tmp_path, own_mosquitto, app, port)
    db = tmp_path / "gw.sqlite"
    log = open(tmp_path / "gateway.log", "wb")
    gw = start_gateway(config, log)
    published = 0
    try:
        wait_for(lambda: healthy(port), "the gateway healthy")
        for _ in range(KILLS):
            batch = uplinks(events, aq_payload, app, published + 1, PER_ROUND)
            publish(own_mosquitto, batch[: PER_ROUND // 2])
            published += PER_ROUND // 2
            gw.send_signal(signal.SIGKILL)  # whatever it had not acknowledged, the broker keeps
            gw.wait(10)
            own_mosquitto.restart()  # with persistence: the gateway's session survives
            publish(own_mosquitto, batch[PER_ROUND // 2 :])  # while the gateway is down
            published += PER_ROUND - PER_ROUND // 2
            gw = start_gateway(config, log)
            wait_for(lambda: healthy(port), "the restarted gateway healthy")
        wait_for(lambda: len(stored(db)) >= published, f"all {published} stored")
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(30) == 0
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait()
        log.close()
    ids = stored(db)
    assert sorted(ids) == sorted(f"{app}-{i}" for i in range(1, published + 1))  # lost 0, duplicated 0
