"""Read API, /health and /metrics of a running service; the export and deadletters commands."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import aiohttp

from gateway.cli import main as cli
from gateway.service.app import GatewayService
from gateway.service.config import parse_config


def config(tmp_path, **http):
    return parse_config(
        {"store": {"path": str(tmp_path / "g.sqlite")}, "http": {"host": "127.0.0.1", "port": 0, **http}}
    )


async def get(svc, path, headers=None):
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{svc.http_port}{path}", headers=headers) as r,
    ):
        return r.status, r.headers.get("Content-Type", ""), await r.text()


def _feed(svc, events, aq_payload):
    for fcnt in (1, 2, 5):  # 3 and 4 lost
        svc.pipeline.handle(
            "up", events.body(events.up(f_cnt=fcnt, data=aq_payload(20 + fcnt))), "json", "http"
        )
    svc.pipeline.handle("up", b"{broken", "json", "http")


def test_devices_readings_health_and_metrics(tmp_path, events, aq_payload):
    async def main():
        async with GatewayService(config(tmp_path)) as svc:
            _feed(svc, events, aq_payload)
            svc.store.set_cursor("ngsi-ld", 8)
            status, _, body = await get(svc, "/api/devices")
            [dev] = json.loads(body)["devices"]
            assert dev["firmware"] is None  # no device_status yet: no app version
            assert (status, dev["dev_eui"], dev["fcnt_gaps"], dev["role"], dev["last_rssi"]) == (
                200,
                "0004a30b001c0530",
                2,
                "air_quality",
                -87,
            )
            _, _, body = await get(svc, "/api/readings?device=0004a30b001c0530&field=temperature")
            temps = json.loads(body)["readings"]
            assert [r["value"] for r in temps] == [21.0, 22.0, 25.0]
            assert temps[0]["unit"] == "°C" and temps[0]["unit_code"] == "CEL"
            assert temps[0]["time"] == "2026-05-04T12:00:00.000000Z"
            _, _, body = await get(svc, "/api/readings?since=2027-01-01T00:00:00Z")
            assert json.loads(body)["readings"] == []
            status, _, body = await get(svc, "/api/readings?since=yesterday")
            assert status == 400 and "since" in body
            status, _, body = await get(svc, "/api/readings?limit=-4")
            assert status == 400
            _, _, body = await get(svc, "/api/deadletters")
            [dl] = json.loads(body)["dead_letters"]
            assert dl["raw_hex"] == b"{broken".hex() and "invalid JSON" in dl["reason"]
            status, _, body = await get(svc, "/health")
            assert (status, json.loads(body)) == (200, {"status": "ok"})
            status, ctype, text = await get(svc, "/metrics")
            assert status == 200 and ctype.startswith("text/plain")
            lines = set(text.splitlines())
            assert 'citynode_events_total{ingest="http",type="up"} 4' in lines
            assert "citynode_uplinks_decoded_total 3" in lines
            assert 'citynode_dead_letters_total{source="http"} 1' in lines
            assert "citynode_fcnt_gaps 2" in lines
            assert 'citynode_sink_pending{sink="ngsi-ld"} 16' in lines
            assert "# TYPE citynode_events_total counter" in lines

    asyncio.run(main())


def test_api_token_protects_api_but_not_health(tmp_path):
    async def main():
        async with GatewayService(config(tmp_path, api_token="api-tok")) as svc:
            assert (await get(svc, "/api/devices"))[0] == 401
            assert (await get(svc, "/api/devices", {"Authorization": "Bearer api-tok"}))[0] == 200
            assert (await get(svc, "/health"))[0] == 200

    asyncio.run(main())


def test_health_reports_a_disconnected_mqtt_ingest(tmp_path):
    cfg = parse_config(
        {
            "store": {"path": str(tmp_path / "g.sqlite")},
            "http": {"port": 0, "ingest": False},
            "mqtt": {"enabled": True, "host": "127.0.0.1", "port": 1},
        }
    )  # nothing listens on port 1

    async def main():
        async with GatewayService(cfg) as svc:
            status, _, body = await get(svc, "/health")
            return status, json.loads(body)

    status, doc = asyncio.run(main())
    # The component, and which broker (with the connection's error once the first attempt failed).
    assert status == 503 and set(doc["problems"]) == {"mqtt"}
    assert "broker 127.0.0.1:1" in doc["problems"]["mqtt"]


def test_export_csv_and_jsonl_and_deadletters_commands(tmp_path, events, aq_payload, capsys):
    cfg = config(tmp_path)

    async def fill():
        async with GatewayService(cfg) as svc:
            _feed(svc, events, aq_payload)

    asyncio.run(fill())
    store = str(tmp_path / "g.sqlite")
    assert cli(["gateway", "export", "--store", store, "--format", "csv", "--field", "pm10"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["value"] for r in rows] == ["9.8"] * 3 and rows[0]["unit"] == "µg/m³"
    assert (
        cli(["gateway", "export", "--store", store, "--format", "jsonl", "--since", "2026-05-04T12:00:00Z"])
        == 0
    )
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(docs) == 24 and docs[0]["field"] == "temperature"
    assert cli(["gateway", "deadletters", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "http" in out and "invalid JSON" in out and b"{broken".hex() in out
    assert cli(["gateway", "export", "--store", str(tmp_path / "missing.sqlite")]) == 2
    assert "no such file" in capsys.readouterr().err
