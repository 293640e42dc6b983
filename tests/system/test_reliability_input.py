"""What a bad publisher may cost (docs/reliability.md): bounded store, memory, descriptors and log.

* MQTT and AMQP messages over ``max_message`` become dead letters holding their size, first bytes and
  SHA-256, never the body.
* A body that does not fit its topic (another event type, another DevEUI) is a dead letter saying so.
* HTTP: partial, slow and idle connections are closed after ``http.request_timeout``; oversized headers
  are refused by limits that leave no memory behind; each refused request is one WARNING line without a
  traceback, at most 10 a minute.
Loopback only, bounded loops.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import uuid

import aio_pika
import aiohttp
import pytest

from gateway.service.app import GatewayService
from gateway.service.config import AmqpConfig, MqttConfig, Secret, parse_config
from gateway.service.ingest.amqp import AmqpIngest
from gateway.service.ingest.mqtt import MqttIngest
from gateway.service.ingest.mqtt_wire import Publish
from gateway.service.pipeline import Pipeline

MIB = 1024 * 1024


async def until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """A deadlock guard: fails after ``timeout`` s, asserts nothing about speed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def assert_oversized_dead_letter(dl, body: bytes, limit: int, source: str) -> None:
    assert dl.source == source
    assert f"message of {len(body)} bytes exceeds the limit of {limit} bytes" in dl.reason
    assert f"sha256 {hashlib.sha256(body).hexdigest()}" in dl.reason
    assert body[:64].hex() in dl.reason
    assert dl.raw == body[:64]  # the first bytes only, never the body


# ---------------------------------------------------------------------------------- message size


@pytest.mark.mqtt
def test_oversized_mqtt_messages_are_dead_lettered_by_size_head_and_hash(mosquitto, store, events, aq_payload):
    app = uuid.uuid4().hex
    config = MqttConfig(
        enabled=True,
        host=mosquitto.host,
        port=mosquitto.port,
        client_id=f"rel-{app[:8]}",
        topic=f"application/{app}/device/+/event/+",
        encoding="protobuf",
    )
    big = os.urandom(MIB)
    good = events.up(f_cnt=1, data=aq_payload(), dev_eui="0004a30b001c0530", dedup=f"{app}-1")
    topic = f"application/{app}/device/0004a30b001c0530/event/up"

    async def main():
        import aiomqtt

        ingest = MqttIngest(config, Pipeline(store))
        task = asyncio.create_task(ingest.run())
        await asyncio.wait_for(ingest.connected.wait(), 15)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=f"pub-{app[:8]}") as pub:
            for _ in range(20):
                await pub.publish(topic, big, qos=1)
            await pub.publish(topic, good.SerializeToString(), qos=1)
        await until(lambda: ingest.handled == 21, what="21 messages handled")
        ingest.stop()
        await asyncio.wait_for(task, 15)

    asyncio.run(main())
    dead = store.dead_letters(100)
    assert len(dead) == 20
    for dl in dead:
        assert_oversized_dead_letter(dl, big, 64 * 1024, "mqtt")
    assert store.dedup_ids("up") == [f"{app}-1"]
    size = sum(p.stat().st_size for p in store_files(store.path))
    assert size < 2 * MIB  # 20 MiB received, nothing like it kept


def store_files(path: str):
    from pathlib import Path

    base = Path(path)
    return [p for p in (base, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


@pytest.mark.amqp
def test_oversized_amqp_messages_are_dead_lettered_by_size_head_and_hash(store, events, aq_payload):
    url = "amqp://guest:guest@127.0.0.1:5672/"
    app = uuid.uuid4().hex
    config = AmqpConfig(
        enabled=True,
        url=Secret(url),
        queue=f"citynode-test-{app[:12]}",
        routing_key=f"application.{app}.device.*.event.*",
        encoding="protobuf",
        max_message=4096,
    )
    big = os.urandom(200_000)
    good = events.up(f_cnt=1, data=aq_payload(), dev_eui="0004a30b001c0530", dedup=f"{app}-1")

    async def main():
        ingest = AmqpIngest(config, Pipeline(store))
        task = asyncio.create_task(ingest.run())
        await asyncio.wait_for(ingest.connected.wait(), 15)
        conn = await aio_pika.connect(url)
        async with conn:
            channel = await conn.channel()
            exchange = await channel.get_exchange("amq.topic")
            for body in (big, big, good.SerializeToString()):
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=f"application.{app}.device.0004a30b001c0530.event.up",
                )
            await until(lambda: ingest.handled == 3, what="3 messages handled")
            ingest.stop()
            await asyncio.wait_for(task, 15)
            await channel.queue_delete(config.queue)

    asyncio.run(main())
    dead = store.dead_letters(100)
    assert len(dead) == 2
    for dl in dead:
        assert_oversized_dead_letter(dl, big, 4096, "amqp")
    assert store.dedup_ids("up") == [f"{app}-1"]


def test_max_message_is_configurable_and_defaults_like_http():
    cfg = parse_config({"mqtt": {"enabled": True, "max_message": 2048}, "amqp": {"max_message": 4096}})
    assert (cfg.mqtt.max_message, cfg.amqp.max_message) == (2048, 4096)
    default = parse_config({})
    assert default.mqtt.max_message == default.amqp.max_message == default.http.max_body == 64 * 1024


# ---------------------------------------------------------------------------------- topic and body


DEV = "0004a30b001c0530"
OTHER = "0004a30b001c0999"


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_an_uplink_body_on_a_join_topic_is_a_dead_letter_not_a_join(store, events, aq_payload, encoding):
    ingest = MqttIngest(MqttConfig(enabled=True, encoding=encoding), Pipeline(store))
    body = events.body(events.up(f_cnt=7, data=aq_payload(), dev_eui=DEV), encoding)
    result = ingest.pipeline.commit(ingest._prepare(Publish(f"application/a/device/{DEV}/event/join", body, 1, 1)))
    assert result.outcome == "dead_letter"
    assert "does not fit the topic's event type 'join'" in result.reason
    [dl] = store.dead_letters()
    assert dl.dev_eui == DEV and dl.raw == body
    assert [d.dev_eui for d in store.devices()] == []  # no join recorded, no FCnt tracking restarted


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_a_body_naming_another_device_than_its_topic_is_a_dead_letter(store, events, aq_payload, encoding):
    ingest = MqttIngest(MqttConfig(enabled=True, encoding=encoding), Pipeline(store))
    for kind, msg in (("up", events.up(f_cnt=3, data=aq_payload(), dev_eui=DEV)), ("join", events.join(DEV))):
        topic = f"application/a/device/{OTHER}/event/{kind}"
        result = ingest.pipeline.commit(ingest._prepare(Publish(topic, events.body(msg, encoding), 1, 1)))
        assert result.outcome == "dead_letter"
        assert f"the topic's DevEUI {OTHER} differs from the body's {DEV}" in result.reason
    assert store.dedup_ids("up") == [] and store.devices() == []


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_events_that_fit_their_topic_are_stored(store, events, aq_payload, encoding):
    ingest = MqttIngest(MqttConfig(enabled=True, encoding=encoding), Pipeline(store))
    for kind, msg in (
        ("join", events.join(DEV)),
        ("up", events.up(f_cnt=3, data=aq_payload(), dev_eui=DEV)),
        ("status", events.status()),
        ("ack", events.ack()),
        ("txack", events.txack()),
    ):
        topic = f"application/a/device/{DEV}/event/{kind}"
        result = ingest.pipeline.commit(ingest._prepare(Publish(topic, events.body(msg, encoding), 1, 1)))
        assert result.outcome == "stored", (kind, result.reason)


# ---------------------------------------------------------------------------------- HTTP


def http_config(tmp_path, **http):
    return parse_config(
        {"store": {"path": str(tmp_path / "g.sqlite")}, "http": {"port": 0, "request_timeout": 1, **http}}
    )


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def connect(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


def test_partial_slow_and_idle_http_connections_are_closed_after_the_request_timeout(tmp_path):
    async def main():
        async with GatewayService(http_config(tmp_path)) as svc:
            loop = asyncio.get_running_loop()
            server = svc._runner.server
            socks = []
            for i in range(100):
                sock = await connect(svc.http_port)
                # partial heads, a head without its body, and idle connections
                data = [b"GET /health HTTP/1.1\r\nHost: x\r\n", b"POST /chirpstack?event=up HTTP/1.1\r\n"
                        b"Host: x\r\nContent-Length: 1000\r\n\r\n{", b""][i % 3]
                if data:
                    await loop.sock_sendall(sock, data)
                socks.append(sock)
            await until(lambda: len(server.connections) == 0, timeout=20, what="all closed by the server")
            for sock in socks:  # and each client sees its end closed (or a 408 for the slow body)
                reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
                assert reply in (b"",) or reply.startswith(b"HTTP/1.1 408")
                sock.close()

    asyncio.run(main())


def test_oversized_headers_are_refused_with_one_rate_limited_warning_and_no_memory_left(tmp_path, caplog):
    async def main():
        async with GatewayService(http_config(tmp_path)) as svc:
            loop = asyncio.get_running_loop()
            fds = fd_count()
            before = rss_kib()
            head = b"POST /chirpstack?event=up HTTP/1.1\r\n" + b"".join(
                b"X-Pad-%d: %s\r\n" % (i, b"a" * 8000) for i in range(128)
            )  # 1 MiB of headers, as the report sent
            statuses = []
            for _ in range(200):
                sock = await connect(svc.http_port)
                try:
                    await loop.sock_sendall(sock, head + b"\r\n")
                except OSError:
                    pass  # the server may close while we still send
                try:
                    reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
                except OSError:
                    reply = b""
                statuses.append(reply[:12])
                sock.close()
            await until(lambda: len(svc._runner.server.connections) == 0, what="connections closed")
            return statuses, rss_kib() - before, fd_count() - fds

    with caplog.at_level(logging.DEBUG):
        statuses, grown_kib, fds = asyncio.run(main())
    assert all(s[9:12] in (b"400", b"431") or s == b"" for s in statuses), set(statuses)
    assert grown_kib < 64 * 1024  # 200 MiB of headers sent; the report saw +270 MiB for 1 MiB each
    assert fds <= 2
    refused = [r for r in caplog.records if r.getMessage() == "http: refused malformed request"]
    assert 1 <= len(refused) <= 10  # rate-limited: 10 a minute
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in refused)
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith(("aiohttp", "citynode"))]


def test_a_slow_http_body_is_answered_408(tmp_path):
    async def main():
        async with GatewayService(http_config(tmp_path)) as svc:
            loop = asyncio.get_running_loop()
            sock = await connect(svc.http_port)
            await loop.sock_sendall(
                sock, b"POST /chirpstack?event=up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
            )
            reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), 15)
            sock.close()
            return reply

    assert asyncio.run(main()).startswith(b"HTTP/1.1 408")


def test_http_limits_are_configurable(tmp_path):
    cfg = http_config(tmp_path, max_headers=16, max_header_size=2048)
    assert (cfg.http.request_timeout, cfg.http.max_headers, cfg.http.max_header_size) == (1, 16, 2048)
    default = parse_config({}).http
    assert (default.request_timeout, default.max_headers, default.max_header_size) == (15, 32, 4096)


def test_unauthorised_requests_are_logged_one_line_each_at_most_ten_a_minute(tmp_path, caplog):
    cfg = http_config(tmp_path, token="ingest-secret")

    async def main():
        async with GatewayService(cfg) as svc, aiohttp.ClientSession() as s:
            statuses = []
            for _ in range(50):
                async with s.post(f"http://127.0.0.1:{svc.http_port}/chirpstack?event=up", data=b"{}") as r:
                    statuses.append(r.status)
            return statuses

    with caplog.at_level(logging.DEBUG):
        statuses = asyncio.run(main())
    assert statuses == [401] * 50
    lines = [r for r in caplog.records if r.getMessage() == "http ingest: unauthorised request"]
    assert len(lines) == 10 and all(r.levelno == logging.WARNING and r.exc_info is None for r in lines)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_a_field_no_event_type_knows_is_tolerated_as_a_newer_chirpstack_s(store, events, encoding):
    ingest = MqttIngest(MqttConfig(enabled=True, encoding=encoding), Pipeline(store))
    body = events.body(events.join(DEV), encoding)
    if encoding == "json":
        body = body.rstrip().removesuffix(b"}") + b', "someFutureField": 1}'
    else:
        body += bytes([0x98, 0x06, 0x01])  # tag (99 << 3 | 0) as a varint, value 1: no event type has field 99
    result = ingest.pipeline.commit(ingest._prepare(Publish(f"application/a/device/{DEV}/event/join", body, 1, 1)))
    assert result.outcome == "stored", result.reason
