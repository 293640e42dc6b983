"""/api/overview: one request per status-page refresh, with search, filters, sort, paging and the page's
sparklines; the configured interval decides "silent"; every API request leaves one access-log line."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from gateway.service.api.overview import OverviewQuery, configured_interval, overview
from gateway.service.app import GatewayService
from gateway.service.config import parse_config
from gateway.service.store import Store
from gateway.sim.sample import SAMPLE_DEVICES, SampleDevice, city_device, fill_city_fleet, fill_sample_fleet

NOW = datetime(2026, 5, 4, 18, 0, 0, tzinfo=UTC)
AQ, BIN_FAR = "70b3d57ed0060001", "70b3d57ed0060012"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Store]:
    with Store.open(tmp_path_factory.mktemp("overview") / "gateway.sqlite") as store:
        fill_sample_fleet(store, now=NOW)
        fill_city_fleet(store, 400, now=NOW)
        yield store


def page(store: Store, now: datetime = NOW, **params: str) -> dict:
    return overview(store, OverviewQuery.from_params(params), now)


def test_one_answer_holds_totals_one_page_with_its_sparklines_and_the_filter_choices(fleet):
    body = page(fleet)
    assert body["totals"]["devices"] == 406 and body["matched"] == 406
    assert len(body["devices"]) == 25  # the default page
    for device in body["devices"]:
        assert device["history"]["fields"], device["dev_eui"]  # sparklines for the rows shown
    assert {"air_quality", "bin_fill", "passenger_count", "crowd_count"} <= set(body["roles"])
    assert "altstadt" in body["districts"] and "buer" in body["districts"]
    assert body["dead_letters"] and "reason" in body["dead_letters"][0]


def test_search_looks_in_names_deveuis_and_tags(fleet):
    wanted = city_device(123)
    assert [d["dev_eui"] for d in page(fleet, q=wanted.name)["devices"]] == [wanted.dev_eui]
    assert [d["dev_eui"] for d in page(fleet, q=wanted.dev_eui.upper())["devices"]] == [wanted.dev_eui]
    by_tag = page(fleet, q="district:horst", limit="100")
    assert by_tag["matched"] > 0
    assert all(d["tags"]["district"] == "horst" for d in by_tag["devices"])
    assert page(fleet, q="no-such-device")["matched"] == 0


def test_filters_by_role_tag_and_flags(fleet):
    bins = page(fleet, role="bin_fill", limit="100")
    assert bins["matched"] == 100 + 2 and all(d["role"] == "bin_fill" for d in bins["devices"])
    buer = page(fleet, tag="district:buer", limit="100")
    assert buer["matched"] > 0 and all(d["tags"]["district"] == "buer" for d in buer["devices"])
    lost = page(fleet, flag="lost")
    assert [d["dev_eui"] for d in lost["devices"]] == [BIN_FAR]
    low = page(fleet, flag="low_battery", limit="100")
    assert low["matched"] == low["totals"]["low_battery_devices"] > 0
    assert all(d["battery"] < 3.3 for d in low["devices"])
    dead = page(fleet, flag="dead_letters")
    assert dead["matched"] == dead["totals"]["dead_letters_devices"] > 0
    both = page(fleet, flag="low_battery,silent", limit="100")
    assert all(d["flags"]["low_battery"] and d["flags"]["silent"] for d in both["devices"])


def test_sort_and_paging_walk_the_whole_fleet_once(fleet):
    seen: list[str] = []
    offset = 0
    while True:
        body = page(fleet, sort="battery", limit="100", offset=str(offset), points="1")
        seen += [d["dev_eui"] for d in body["devices"]]
        batteries = [d["battery"] for d in body["devices"] if d["battery"] is not None]
        assert batteries == sorted(batteries)
        offset += 100
        if offset >= body["matched"]:
            break
    assert len(seen) == len(set(seen)) == 406
    weakest = page(fleet, sort="rssi", order="asc", limit="1")["devices"][0]
    strongest = page(fleet, sort="rssi", order="desc", limit="1")["devices"][0]
    assert weakest["last_rssi"] <= strongest["last_rssi"]


def test_silent_counts_from_the_configured_interval_not_from_observed_gaps(tmp_path):
    # A sped-up demo: uplinks 10 s apart from nodes configured for one hour. A minute later none is
    # silent; four hours later every one is.
    with Store.open(tmp_path / "demo.sqlite") as store:
        demo = SampleDevice("70b3d57ed00a0001", "demo-aq", "air_quality", "demo", -90, 5.0, 7)
        fill_sample_fleet(
            store,
            now=NOW,
            uplinks=6,
            interval=timedelta(seconds=10),
            devices=(demo,),
            dead_letter=False,
            configured_interval_s=3600,
        )
        minute_later = page(store, NOW + timedelta(minutes=1))["devices"][0]
        assert minute_later["interval_s"] == 3600 and not minute_later["flags"]["silent"]
        hours_later = page(store, NOW + timedelta(hours=4))["devices"][0]
        assert hours_later["flags"]["silent"]


def test_a_device_without_a_configured_interval_is_never_silent():
    assert configured_interval({}) is None
    assert configured_interval({"uplink_interval_s": "1800"}) == 1800
    assert configured_interval({"interval": "900"}) == 900
    assert configured_interval({"uplink_interval_s": "soon"}) is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be an integer 1..100"),
        ("limit=5000", "limit must be an integer 1..100"),
        ("offset=-1", "offset must be an integer"),
        ("flag=broken", "flag must be one or more of silent, low_battery, lost, dead_letters"),
        ("sort=secret", "sort must be one of"),
        ("order=up", "order must be asc or desc"),
        ("tag=district", "tag must be key:value"),
        ("points=x", "points must be an integer 1..120"),
    ],
)
def test_bad_parameters_are_named(query, message):
    params = dict(item.split("=", 1) for item in query.split("&"))
    with pytest.raises(ValueError, match=message):
        OverviewQuery.from_params(params)


def test_over_http_with_an_access_log_line_per_request_and_no_secret(tmp_path, caplog):
    config = parse_config(
        {
            "store": {"path": str(tmp_path / "gateway.sqlite")},
            "http": {"host": "127.0.0.1", "port": 0, "api_token": "tok-abcdef-123"},
        }
    )

    async def main() -> None:
        async with GatewayService(config) as svc:
            fill_sample_fleet(svc.store, now=datetime.now(UTC))
            base = f"http://127.0.0.1:{svc.http_port}"
            auth = {"Authorization": "Bearer tok-abcdef-123"}
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/api/overview?q=bin&limit=1", headers=auth) as resp:
                    assert resp.status == 200
                    body = await resp.json()
                    assert body["matched"] == 2 and len(body["devices"]) == 1
                async with http.get(f"{base}/api/overview?limit=0", headers=auth) as resp:
                    assert resp.status == 400
                    assert (await resp.json())["error"] == "limit must be an integer 1..100"
                async with http.get(f"{base}/api/overview") as resp:
                    assert resp.status == 401
                async with http.get(f"{base}/static/app.js") as resp:
                    assert resp.status == 200

    with caplog.at_level(logging.INFO, logger="citynode.access"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "citynode.access"]
    assert len(lines) == 3, lines  # API requests only, not the page's files
    assert lines[0].startswith("GET /api/overview 200 ") and lines[0].endswith(" ms")
    assert lines[1].startswith("GET /api/overview 400 ")
    assert lines[2].startswith("GET /api/overview 401 ")
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "citynode.access")
    text = json.dumps(lines)
    assert "tok-abcdef" not in text and "q=bin" not in text and "127.0.0.1" not in text
    assert SAMPLE_DEVICES  # the fleet above is the sample's


def test_each_row_carries_the_app_version_of_the_devices_newest_device_status(fleet):
    body = page(fleet, q=AQ)
    [row] = body["devices"]
    sent = [r.reading.value for r in fleet.readings(AQ, "firmware", limit=1000)]
    assert sent and row["firmware"] == sent[-1]
    assert fleet.firmware_versions([AQ]) == {AQ: sent[-1]} == {AQ: fleet.firmware_versions()[AQ]}
    # a device that never sent a device_status has no version (not a guess)
    never = [d.dev_eui for d in fleet.devices() if not fleet.readings(d.dev_eui, "firmware", limit=1)]
    assert never and not set(never) & set(fleet.firmware_versions())
