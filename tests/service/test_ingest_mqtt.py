"""MQTT ingest against a real mosquitto: JSON and protobuf events, TLS+password, persistent session,
shared subscriptions, broker restart -- counted end to end by deduplication id."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import aiomqtt
import pytest

from gateway.service.config import MqttConfig, Secret, TlsConfig
from gateway.service.ingest.mqtt import MqttIngest, mqtt_client
from gateway.service.pipeline import Pipeline
from gateway.service.store import Store

pytestmark = pytest.mark.mqtt


async def until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Await ``predicate`` (a deadlock guard: fails after ``timeout`` s, asserts nothing about speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def config_for(broker, app: str, **changes) -> MqttConfig:
    base = MqttConfig(
        enabled=True,
        host=broker.host,
        port=broker.port,
        client_id=f"gw-{uuid.uuid4().hex[:8]}",
        topic=f"application/{app}/device/+/event/+",
    )
    return replace(base, **changes)


async def publish(broker, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"pub-{uuid.uuid4().hex[:8]}") as pub:
        for topic, body in messages:
            await pub.publish(topic, body, qos=qos)


def uplinks(
    events, app: str, n: int, encoding: str, aq_payload, start: int = 1, dev_eui: str = "0004a30b001c0530"
):
    out = []
    for fcnt in range(start, start + n):
        msg = events.up(
            f_cnt=fcnt, data=aq_payload(20 + fcnt / 100), dev_eui=dev_eui, dedup=f"{app}-{dev_eui}-{fcnt}"
        )
        msg.device_info.application_id = app
        out.append((events.topic(msg, "up"), events.body(msg, encoding)))
    return out


async def run_ingest(ingest: MqttIngest):
    task = asyncio.create_task(ingest.run())
    await asyncio.wait_for(ingest.connected.wait(), 15)
    return task


async def stop_ingest(ingest: MqttIngest, task) -> None:
    ingest.stop()
    await asyncio.wait_for(task, 15)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_events_arrive_decoded_in_sqlite(mosquitto, store, events, aq_payload, encoding):
    app = uuid.uuid4().hex

    async def main():
        ingest = MqttIngest(config_for(mosquitto, app, encoding=encoding), Pipeline(store))
        task = await run_ingest(ingest)
        msgs = uplinks(events, app, 20, encoding, aq_payload)
        status = events.status()
        status.device_info.application_id = app
        msgs.append((events.topic(status, "status"), events.body(status, encoding)))
        msgs.append((f"application/{app}/device/0004a30b001c0530/event/up", b"\x00garbage"))
        await publish(mosquitto, msgs)
        await until(lambda: ingest.handled == 22, what="22 messages handled")
        await stop_ingest(ingest, task)

    asyncio.run(main())
    assert store.event_count("up") == 20 and store.event_count("status") == 1
    assert len(store.readings(field="temperature")) == 20
    [dl] = store.dead_letters()
    assert dl.source == "mqtt" and dl.raw == b"\x00garbage"


def test_tls_with_password_and_the_ca(mosquitto, store, events, aq_payload):
    app = uuid.uuid4().hex
    tls = TlsConfig(ca=str(mosquitto.tls["ca"]))
    cfg = config_for(
        mosquitto,
        app,
        port=mosquitto.tls_port,
        tls=tls,
        username=Secret(mosquitto.username),
        password=Secret(mosquitto.password),
    )

    async def main():
        ingest = MqttIngest(cfg, Pipeline(store))
        task = await run_ingest(ingest)
        await publish(mosquitto, uplinks(events, app, 3, "json", aq_payload))
        await until(lambda: store.event_count("up") == 3, what="3 uplinks over TLS")
        await stop_ingest(ingest, task)

    asyncio.run(main())
    assert repr(cfg).count(mosquitto.password) == 0


def test_tls_rejects_a_wrong_password(mosquitto):
    cfg = MqttConfig(
        host=mosquitto.host,
        port=mosquitto.tls_port,
        tls=TlsConfig(ca=str(mosquitto.tls["ca"])),
        username=Secret(mosquitto.username),
        password=Secret("wrong"),
        client_id="bad-pw",
    )

    async def main():
        async with mqtt_client(cfg):
            pass

    with pytest.raises(aiomqtt.MqttError):
        asyncio.run(main())


def test_persistent_session_receives_what_was_published_while_down(mosquitto, tmp_path, events, aq_payload):
    app = uuid.uuid4().hex
    cfg = config_for(mosquitto, app)
    with Store.open(tmp_path / "g.sqlite") as store:

        async def first():
            ingest = MqttIngest(cfg, Pipeline(store))
            task = await run_ingest(ingest)
            await publish(mosquitto, uplinks(events, app, 5, "json", aq_payload))
            await until(lambda: store.event_count("up") == 5, what="first 5")
            await stop_ingest(ingest, task)
            # gateway down: ChirpStack keeps publishing
            await publish(mosquitto, uplinks(events, app, 10, "json", aq_payload, start=6))
            ingest = MqttIngest(cfg, Pipeline(store))  # same client id: the broker kept the session
            task = await run_ingest(ingest)
            await until(lambda: store.event_count("up") == 15, what="15 after restart")
            await stop_ingest(ingest, task)

        asyncio.run(first())
        assert sorted(store.dedup_ids()) == sorted(f"{app}-0004a30b001c0530-{i}" for i in range(1, 16))
        assert store.device("0004a30b001c0530").fcnt_gaps == 0


def test_shared_subscription_splits_the_load_between_instances(mosquitto, tmp_path, events, aq_payload):
    app = uuid.uuid4().hex
    group = f"g{uuid.uuid4().hex[:6]}"
    with Store.open(tmp_path / "g.sqlite") as store:

        async def main():
            a = MqttIngest(config_for(mosquitto, app, shared_group=group), Pipeline(store))
            b = MqttIngest(config_for(mosquitto, app, shared_group=group), Pipeline(store))
            tasks = [await run_ingest(a), await run_ingest(b)]
            await publish(mosquitto, uplinks(events, app, 40, "json", aq_payload))
            await until(lambda: a.handled + b.handled == 40, what="40 messages across the group")
            await stop_ingest(a, tasks[0])
            await stop_ingest(b, tasks[1])
            return a.handled, b.handled

        handled = asyncio.run(main())
        assert sum(handled) == 40 and all(handled)  # each message once, both members got some
        assert store.event_count("up") == 40


def test_broker_restart_loses_and_duplicates_nothing(own_mosquitto, store, events, aq_payload):
    broker = own_mosquitto
    app = uuid.uuid4().hex

    async def main():
        ingest = MqttIngest(config_for(broker, app, encoding="protobuf"), Pipeline(store))
        task = await run_ingest(ingest)
        await publish(broker, uplinks(events, app, 10, "protobuf", aq_payload))
        await until(lambda: store.event_count("up") == 10, what="10 before the restart")
        broker.restart()  # SIGTERM + start: sessions survive in mosquitto's persistence file
        await until(lambda: not ingest.connected.is_set(), what="disconnect noticed")
        await asyncio.wait_for(ingest.connected.wait(), 40)  # reconnected with back-off
        await publish(broker, uplinks(events, app, 10, "protobuf", aq_payload, start=11))
        await until(lambda: store.event_count("up") == 20, what="20 after the restart")
        await stop_ingest(ingest, task)

    asyncio.run(main())
    assert sorted(store.dedup_ids()) == sorted(f"{app}-0004a30b001c0530-{i}" for i in range(1, 21))


@pytest.mark.postgres
def test_mqtt_into_the_postgresql_store(mosquitto, events, aq_payload):
    """The same ingest on the PostgreSQL backend (one throw-away schema)."""
    import psycopg

    from gateway.service.store import Store

    schema = f"citynode_test_{uuid.uuid4().hex[:10]}"
    dsn = "host=127.0.0.1 port=5432 dbname=test user=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    app = uuid.uuid4().hex
    try:
        store = Store.open(f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}")

        async def main():
            ingest = MqttIngest(config_for(mosquitto, app), Pipeline(store))
            task = await run_ingest(ingest)
            await publish(mosquitto, uplinks(events, app, 10, "json", aq_payload) * 2)  # each one twice
            await until(lambda: ingest.handled == 20, what="20 messages")
            await stop_ingest(ingest, task)

        asyncio.run(main())
        assert store.event_count("up") == 10 and len(store.readings()) == 80
        store.close()
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
