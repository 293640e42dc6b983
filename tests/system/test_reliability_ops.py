"""Safe by default and honest about failures (docs/reliability.md).

* Listening beyond loopback without tokens: every open route (ingest, API, metrics) is named at start-up
  and in ``/health``; ``/metrics`` honours ``http.api_token``.
* A private key readable by group or others is refused with the ``chmod`` that fixes it.
* ``/health`` names the failing component with its reason: the store when writing fails (not "the
  broker"), the broker with its address and error when it is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import aiohttp
import pytest

from gateway.errors import ConfigError
from gateway.service.app import GatewayService, open_routes
from gateway.service.config import parse_config


async def get(svc, path, headers=None):
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{svc.http_port}{path}", headers=headers) as r,
    ):
        return r.status, await r.text()


def config(tmp_path, mqtt=None, **http):
    doc = {"store": {"path": str(tmp_path / "g.sqlite")}, "http": {"port": 0, **http}}
    if mqtt:
        doc["mqtt"] = mqtt
    return parse_config(doc)


def test_every_open_route_is_named_at_start_up_and_in_health_when_listening_beyond_loopback(tmp_path, caplog):
    cfg = config(tmp_path, host="0.0.0.0")

    async def main():
        async with GatewayService(cfg) as svc:
            return await get(svc, "/health")

    with caplog.at_level(logging.WARNING, logger="citynode.service"):
        status, body = asyncio.run(main())
    warning = json.loads(body)["warnings"]["http"]
    assert status == 200
    for route in ("POST /chirpstack", "/api/*", "/metrics"):
        assert route in warning
    assert any(getattr(r, "warning", None) == warning for r in caplog.records)


@pytest.mark.parametrize(
    ("http", "open_"),
    [
        ({"host": "127.0.0.1"}, []),
        ({"host": "::1"}, []),
        ({"host": "localhost"}, []),
        ({"host": "0.0.0.0", "token": "t", "api_token": "a"}, []),
        ({"host": "0.0.0.0", "secret": "s"}, ["/api/*", "/metrics"]),
        ({"host": "192.0.2.10", "api_token": "a"}, ["POST /chirpstack"]),
    ],
)
def test_open_routes_by_host_and_tokens(tmp_path, http, open_):
    routes = open_routes(config(tmp_path, **http).http)
    assert [r.split(" (")[0] for r in routes] == open_


def test_metrics_honours_the_api_token(tmp_path):
    cfg = config(tmp_path, api_token="metrics-secret")

    async def main():
        async with GatewayService(cfg) as svc:
            return (
                await get(svc, "/metrics"),
                await get(svc, "/metrics", {"Authorization": "Bearer metrics-secret"}),
                await get(svc, "/health"),
            )

    (no_token, _), (with_token, text), (health, _) = asyncio.run(main())
    assert (no_token, with_token, health) == (401, 200, 200)
    assert "citynode_" in text


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_private_key_readable_by_others_is_refused_with_the_chmod_that_fixes_it(tmp_path, mode):
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("cert")
    key.write_text("key")
    key.chmod(mode)
    with pytest.raises(ConfigError, match=rf"mqtt.tls.key: .* \(mode {mode:04o}\); fix it with: chmod 600 {key}"):
        parse_config({"mqtt": {"enabled": True, "tls": {"cert": str(cert), "key": str(key)}}})
    key.chmod(0o600)
    parse_config({"mqtt": {"enabled": True, "tls": {"cert": str(cert), "key": str(key)}}})


@pytest.mark.mqtt
def test_health_names_the_store_when_writing_fails_not_the_broker(tmp_path, mosquitto, events, aq_payload):
    """A full store (SQLite's max_page_count: "database or disk is full") on the MQTT path."""
    import aiomqtt

    app = uuid.uuid4().hex
    cfg = config(
        tmp_path,
        mqtt={
            "enabled": True,
            "host": mosquitto.host,
            "port": mosquitto.port,
            "client_id": f"rel-{app[:8]}",
            "topic": f"application/{app}/device/+/event/+",
            "encoding": "protobuf",
        },
        ingest=False,
    )

    async def main():
        async with GatewayService(cfg) as svc:
            [mqtt] = svc.ingests
            await asyncio.wait_for(mqtt.connected.wait(), 15)
            pages = svc.store.backend.connection.execute("PRAGMA page_count").fetchone()[0]
            svc.store.backend.connection.execute(f"PRAGMA max_page_count = {pages}")  # no page more: full
            async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=f"pub-{app[:8]}") as pub:
                for i in range(1, 200):
                    msg = events.up(f_cnt=i, data=aq_payload(), dedup=f"{app}-{i}")
                    await pub.publish(f"application/{app}/device/0004a30b001c0530/event/up",
                                      msg.SerializeToString(), qos=1)
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                status, body = await get(svc, "/health")
                doc = json.loads(body)
                if status == 503 and "store" in doc["problems"]:
                    return doc
                assert asyncio.get_running_loop().time() < deadline, f"never reported: {doc}"
                await asyncio.sleep(0.05)

    doc = asyncio.run(main())
    assert doc["problems"]["store"].startswith("writing failed: ")
    assert "mqtt" not in doc["problems"]  # the broker is fine; nothing says it is not


def test_health_names_a_failing_sink_with_its_reason_and_clears_when_it_delivers(tmp_path, events, aq_payload):
    from gateway.service.sinks import worker_factories
    from gateway.sim.platforms.ngsild import NgsiLdSimulator

    async def main():
        async with NgsiLdSimulator() as platform:
            platform.fail_next.extend([503] * 5)
            cfg = parse_config(
                {
                    "store": {"path": str(tmp_path / "g.sqlite")},
                    "http": {"port": 0},
                    "sinks": {"ngsild": {"url": platform.url, "retry_initial_s": 0.05, "retry_max_s": 0.5,
                                          "default_location": [7.0857, 51.5177]}},
                }
            )
            async with GatewayService(cfg, worker_factories=worker_factories(cfg)) as svc:
                svc.pipeline.handle("up", events.body(events.up(f_cnt=1, data=aq_payload())), "json", "http")
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while (answer := await get(svc, "/health"))[0] != 503:
                    assert loop.time() < deadline, "the failing sink was never reported"
                    await asyncio.sleep(0.02)
                while svc.store.pending("ngsild"):
                    assert loop.time() < deadline, "never delivered"
                    await asyncio.sleep(0.02)
                return answer, await get(svc, "/health")

    (status, body), (after, _) = asyncio.run(main())
    problem = json.loads(body)["problems"]["sink ngsild"]
    assert status == 503 and problem.startswith("failing, retrying: ") and "503" in problem
    assert after == 200


def test_a_token_file_readable_by_others_is_refused_with_the_chmod_that_fixes_it(tmp_path):
    from gateway.field.chirpstack_client import resolve_token

    token = tmp_path / "chirpstack.token"
    token.write_text("secret-token\n")
    token.chmod(0o644)
    with pytest.raises(ConfigError, match=rf"\(mode 0644\); fix it with: chmod 600 {token}"):
        resolve_token(token_file=token, env={})
    token.chmod(0o600)
    assert resolve_token(token_file=token, env={}) == "secret-token"
