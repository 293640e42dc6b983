"""What the status page reads and is served from: /api/history, /api/summary, / and /static/*."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources

import aiohttp
import pytest

from gateway.service.api import device_history, uplinks_since
from gateway.service.api.page import CONTENT_SECURITY_POLICY, STATIC_FILES
from gateway.service.app import GatewayService
from gateway.service.config import parse_config
from gateway.service.store import Store
from gateway.sim.sample import SAMPLE_DEVICES, fill_sample_fleet

NOW = datetime(2026, 5, 4, 18, 0, 0, tzinfo=UTC)
AQ, BIN_FAR, BUS = "70b3d57ed0060001", "70b3d57ed0060012", "70b3d57ed0060021"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Store]:
    """One filled store for the module's read-only tests (filling takes about a second)."""
    with Store.open(tmp_path_factory.mktemp("fleet") / "gateway.sqlite") as store:
        fill_sample_fleet(store, now=NOW)
        yield store


def test_history_gives_the_newest_values_of_each_field_oldest_first(fleet):
    history = device_history(fleet, AQ.upper(), points=5)
    temperature = history.field("temperature")
    all_temps = [r.reading.value for r in fleet.readings(AQ, "temperature", limit=100)]
    assert [v for _, v in temperature.points] == all_temps[-5:]
    assert temperature.unit == "°C" and temperature.message_type == "air_quality"
    times = [t for t, _ in temperature.points]
    assert times == sorted(times) and times[-1] == NOW


def test_history_orders_fields_as_the_payload_contract_with_the_role_first(fleet):
    history = device_history(fleet, AQ)
    assert history.role == "air_quality"  # although its last uplink was a device_status message
    assert [f.field for f in history.fields] == [
        "temperature", "relative_humidity", "pressure", "gas_resistance", "pm1_0", "pm2_5", "pm10", "battery",
        "firmware", "uptime", "reset_cause",
    ]  # fmt: skip
    bus = device_history(fleet, BUS)
    assert [f.field for f in bus.fields][:8] == [
        "interval", "doors.0.door", "doors.0.boardings", "doors.0.alightings",
        "doors.1.door", "doors.1.boardings", "doors.1.alightings", "occupancy",
    ]  # fmt: skip
    assert bus.field("occupancy").unit is None and bus.field("latitude").unit == "°"


def test_history_link_quality_is_one_point_per_uplink(fleet):
    history = device_history(fleet, BIN_FAR, points=10)
    assert len(history.link) == 10
    newest = fleet.device(BIN_FAR)
    assert (history.link[-1].rssi, history.link[-1].snr) == (newest.last_rssi, newest.last_snr)
    assert history.link[-1].spreading_factor == 12 and history.link[-1].gateway_count == 1
    assert all(p.rssi is not None and -130 < p.rssi < -100 for p in history.link)


def test_history_of_an_unknown_device_is_empty(fleet):
    history = device_history(fleet, "ffffffffffffffff")
    assert (history.role, history.fields, history.link) == (None, (), ())


def test_uplinks_since_counts_received_uplinks_including_undecodable_ones(fleet):
    # 6 devices x 24 uplinks every 5 min ending at NOW (7 s apart), a status uplink, a dead letter.
    assert uplinks_since(fleet, NOW - timedelta(seconds=60)) == 6 + 1 + 1
    assert uplinks_since(fleet, NOW - timedelta(hours=3)) == 6 * 24 + 2


def config(tmp_path, **http):
    return parse_config(
        {"store": {"path": str(tmp_path / "g.sqlite")}, "http": {"host": "127.0.0.1", "port": 0, **http}}
    )


async def get(svc, path, headers=None):
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{svc.http_port}{path}", headers=headers) as r,
    ):
        return r.status, r.headers, await r.read()


def test_the_page_and_its_files_are_served_with_a_strict_policy(tmp_path):
    async def main():
        async with GatewayService(config(tmp_path)) as svc:
            status, headers, body = await get(svc, "/")
            assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
            assert b'<script src="/static/app.js" defer></script>' in body
            assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
            assert headers["X-Content-Type-Options"] == "nosniff"
            for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
                status, headers, body = await get(svc, f"/static/{name}")
                assert (status, headers["Content-Type"].split(";")[0]) == (200, kind)
                assert body == (resources.files("gateway.service.api") / "static" / name).read_bytes()
            for path in ("/static/index.html", "/static/../api.py", "/static/sample.py", "/static/"):
                status, _, _ = await get(svc, path)
                assert status == 404, path

    asyncio.run(main())


def test_the_page_has_no_external_resources_and_never_writes_html_from_data():
    root = resources.files("gateway.service.api") / "static"
    assert set(STATIC_FILES) == {p.name for p in root.iterdir()}
    text = "\n".join((root / name).read_text() for name in STATIC_FILES)
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text and "//cdn" not in text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in text, f"{sink} in the page's code"


def test_history_and_summary_over_http(tmp_path):
    async def main():
        async with GatewayService(config(tmp_path)) as svc:
            fill_sample_fleet(svc.store, now=datetime.now(UTC))
            status, _, body = await get(svc, f"/api/history?device={AQ}&points=3")
            doc = json.loads(body)
            assert status == 200 and doc["dev_eui"] == AQ and doc["role"] == "air_quality"
            temperature = doc["fields"][0]
            assert temperature["field"] == "temperature" and temperature["unit"] == "°C"
            assert len(temperature["points"]) == 3 and len(doc["link"]) == 3
            assert set(doc["link"][0]) == {"time", "rssi", "snr", "spreading_factor", "gateway_count"}
            status, _, body = await get(svc, "/api/summary")
            summary = json.loads(body)
            assert status == 200
            totals = (summary["devices"], summary["dead_letters"], summary["fcnt_gaps"])
            assert totals == (len(SAMPLE_DEVICES), 1, 2)
            assert summary["uplinks_last_minute"] == 8
            for query in ("", "?device=nothex0000000000", "?device=0011", f"?device={AQ}&points=x",
                          f"?device={AQ}&points=501"):  # fmt: skip
                status, _, body = await get(svc, f"/api/history{query}")
                assert status == 400, query
                assert "error" in json.loads(body)

    asyncio.run(main())


def test_the_api_token_guards_history_and_summary_but_not_the_page(tmp_path):
    async def main():
        async with GatewayService(config(tmp_path, api_token="page-token-123")) as svc:
            for path in (f"/api/history?device={AQ}", "/api/summary"):
                status, _, _ = await get(svc, path)
                assert status == 401, path
                status, _, _ = await get(svc, path, {"Authorization": "Bearer page-token-123"})
                assert status == 200, path
            status, _, _ = await get(svc, "/")
            assert status == 200  # the page holds no data; it asks for the token

    asyncio.run(main())


PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.mark.postgres
def test_history_reads_the_same_from_postgresql(fleet):
    """The page's queries are plain SQL: PostgreSQL gives what SQLite gives."""
    import uuid

    import psycopg

    schema = f"citynode_page_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        with Store.open(f"{PG_DSN}?options=-csearch_path%3D{schema}") as pg:
            fill_sample_fleet(pg, now=NOW)
            for dev_eui in (AQ, BIN_FAR, BUS):
                assert device_history(pg, dev_eui, 7) == device_history(fleet, dev_eui, 7)
            since = NOW - timedelta(seconds=60)
            assert uplinks_since(pg, since) == uplinks_since(fleet, since) == 8
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
