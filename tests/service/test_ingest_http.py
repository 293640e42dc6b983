"""HTTP ingest (ChirpStack's HTTP integration) on a real port: auth, size limit, encodings, stored before 200."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.service.app import GatewayService
from gateway.service.config import HttpConfig, Secret, parse_config
from gateway.service.store import Store

TOKEN = "tok-123"
SECRET = "shh"


def service_config(tmp_path, **http):
    doc = {
        "store": {"path": str(tmp_path / "g.sqlite")},
        "http": {"host": "127.0.0.1", "port": 0, "max_body": 4096, **http},
    }
    return parse_config(doc)


async def post(service, kind, body, content_type="application/json", headers=None, path="/chirpstack"):
    url = f"http://127.0.0.1:{service.http_port}{path}"
    params = {"event": kind} if kind is not None else {}
    hdrs = {"Content-Type": content_type, **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, params=params, data=body, headers=hdrs) as r,
    ):
        return r.status, await r.json(content_type=None)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("encoding", "content_type"), [("json", "application/json"), ("protobuf", "application/octet-stream")]
)
def test_events_are_stored_before_the_200(tmp_path, events, aq_payload, encoding, content_type):
    cfg = service_config(tmp_path, token=TOKEN)

    async def main():
        async with GatewayService(cfg) as svc:
            up = events.body(events.up(f_cnt=1, data=aq_payload()), encoding)
            status, doc = await post(svc, "up", up, content_type, AUTH)
            # the store answers from another connection: the commit happened before the answer
            with Store.open(cfg.store.path) as other:
                assert other.event_count("up") == 1 and len(other.readings()) == 8
            assert (status, doc["outcome"], doc["readings"]) == (200, "stored", 8)
            status, doc = await post(svc, "up", up, content_type, AUTH)
            assert (status, doc["outcome"]) == (200, "duplicate")
            status, doc = await post(svc, "join", events.body(events.join(), encoding), content_type, AUTH)
            assert (status, doc["outcome"]) == (200, "stored")

    asyncio.run(main())


@pytest.mark.parametrize(
    ("headers", "http", "status"),
    [
        ({}, {"token": TOKEN}, 401),
        ({"Authorization": "Bearer wrong"}, {"token": TOKEN}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, {"token": TOKEN}, 401),
        (AUTH, {"token": TOKEN}, 200),
        ({"X-Citynode-Secret": SECRET}, {"secret": SECRET}, 200),
        ({"X-Citynode-Secret": "nope"}, {"secret": SECRET}, 401),
        (
            {"X-Citynode-Secret": SECRET},
            {"secret": SECRET, "token": TOKEN},
            401,
        ),  # both configured: both needed
        ({"X-Citynode-Secret": SECRET, **AUTH}, {"secret": SECRET, "token": TOKEN}, 200),
    ],
)
def test_bearer_token_and_shared_secret(tmp_path, events, headers, http, status):
    cfg = service_config(tmp_path, **http)

    async def main():
        async with GatewayService(cfg) as svc:
            got, _ = await post(svc, "status", events.body(events.status()), headers=headers)
            return got, svc.store.event_count()

    got, stored = asyncio.run(main())
    assert got == status
    assert stored == (1 if status == 200 else 0)  # nothing from an unauthenticated sender is kept


def test_size_limit_bad_event_and_content_type(tmp_path, events):
    cfg = service_config(tmp_path)

    async def main():
        async with GatewayService(cfg) as svc:
            big = b"{" + b" " * 5000 + b"}"
            assert (await post(svc, "up", big))[0] == 413

            async def chunked():  # no Content-Length: the limit still holds
                for _ in range(10):
                    yield b" " * 1000

            assert (await post(svc, "up", chunked()))[0] == 413
            status, doc = await post(svc, "bogus", b"{}")
            assert status == 400 and "bogus" in doc["reason"]
            status, doc = await post(svc, None, b"{}")
            assert status == 400
            status, doc = await post(svc, "up", b"<xml/>", "text/xml")
            assert status == 415 and "text/xml" in doc["reason"]
            status, doc = await post(svc, "up", b"{broken")
            assert (status, doc["outcome"]) == (200, "dead_letter") and "invalid JSON" in doc["reason"]
            return svc.store.dead_letters(10)

    letters = asyncio.run(main())
    assert [dl.source for dl in letters] == ["http"] * 4
    assert letters[-1].raw == b"{}"


def test_secrets_never_appear_in_the_config_repr(tmp_path):
    cfg = service_config(tmp_path, token="very-secret-token", secret="other-secret")
    text = repr(cfg)
    assert "very-secret-token" not in text and "other-secret" not in text
    assert cfg.http.token.get() == "very-secret-token"
    assert HttpConfig(token=Secret("x")).token == Secret("x")


def test_random_bytes_for_every_event_type_end_in_dead_letters_and_the_service_lives(
    tmp_path, events, aq_payload
):
    import random

    rnd = random.Random(5)
    cfg = service_config(tmp_path)
    kinds = ["up", "join", "status", "ack", "txack", "log"]
    bodies = [(k, rnd.randbytes(rnd.randint(1, 300))) for k in kinds for _ in range(8)]

    async def main():
        async with GatewayService(cfg) as svc:
            outcomes = []
            for kind, body in bodies:
                status, doc = await post(svc, kind, body, "application/octet-stream")
                outcomes.append((status, doc["outcome"]))
            # and it still works afterwards
            status, doc = await post(svc, "up", events.body(events.up(data=aq_payload())))
            assert (status, doc["outcome"]) == (200, "stored")
            return outcomes, svc.store.dead_letters(1000), svc.store.event_count()

    outcomes, letters, stored = asyncio.run(main())
    assert all(status == 200 for status, _ in outcomes)
    assert [o for _, o in outcomes] == ["dead_letter"] * len(bodies)
    assert len(letters) == len(bodies) and stored == 1
    assert all(dl.reason and dl.source in ("http", "decode") for dl in letters)
