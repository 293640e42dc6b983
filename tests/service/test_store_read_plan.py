"""The read API's readings query pages along indexes: its plan never sorts a device's history
(SQLite: no ``USE TEMP B-TREE``; PostgreSQL: no Sort node), with and without ``field=``; with a
device and ``field=`` it walks only the uplinks whose message shape carries the field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.service.store import Store, UplinkRecord
from gateway.service.store.queries import readings_statements

from ..conftest import T0, make_reading, make_uplink

DEVICES = [f"0004a30b001c{i:04x}" for i in range(4)]


def fill(store: Store, uplinks_per_device: int) -> None:
    records = []
    for n in range(uplinks_per_device):
        for dev in DEVICES:
            up = make_uplink(n + 1, dev_eui=dev, received_at=T0 + timedelta(minutes=15 * n))
            readings = [make_reading(up), make_reading(up, "pm10", 9.5, "µg/m³", "GQ")]
            if n % 10 == 0:
                readings.append(make_reading(up, "battery", 3.6, "V", "VLT"))
            if n % 100 == 7:
                readings.append(make_reading(up, "tilt", True))
            records.append(UplinkRecord(up, readings))
    with store.batch():
        store.record_uplinks(records)


QUERIES = [  # (device, field): the API's four kinds of page; tilt is in 1 uplink of 100, pm10 in all
    (DEVICES[1], None),
    (DEVICES[1], "battery"),
    (DEVICES[1], "tilt"),
    (DEVICES[1], "pm10"),
    (None, "battery"),
    (None, None),
]


def test_sqlite_plans_use_the_indexes_and_no_temporary_b_tree(tmp_path) -> None:
    with Store.open(tmp_path / "g.sqlite") as store:
        fill(store, 300)
        store.query("ANALYZE")
        for device, field in QUERIES:
            statements = readings_statements(store.backend, device, field, None, 1000, 700)
            assert len(statements) == (3 if (device, field) == (DEVICES[1], "pm10") else 1)  # all three shapes
            for sql, params in statements:
                plan = [row[3] for row in store.query("EXPLAIN QUERY PLAN " + sql, params)]
                assert not [step for step in plan if "TEMP B-TREE" in step], (device, field, plan)
                assert not [step for step in plan if step.startswith("SCAN") and "PRIMARY KEY" not in step
                            and "v" != step.split()[1]], (device, field, plan)  # fmt: skip
                if device:
                    index = "events_device_shape" if field else "events_device_id"
                    assert any(index in step for step in plan), plan
                    assert any("reading_log_event" in step for step in plan), plan
            # and the page is what the view, sorted, would give
            got = [r.id for r in store.readings(device, field, None, 50, after_id=700)]
            where = " AND ".join(
                ["id > 700"] + ([f"dev_eui = '{device}'"] if device else []) + ([f"field = '{field}'"] if field else [])
            )
            assert got == [r[0] for r in store.query(f"SELECT id FROM readings WHERE {where} ORDER BY id LIMIT 50")]


@pytest.mark.postgres
def test_postgres_plans_use_the_indexes_and_no_sort(pg_schema) -> None:
    with Store.open(pg_schema) as store:
        fill(store, 300)
        store.backend.connection.execute("ANALYZE")
        # On a table this small PostgreSQL may sort a handful of rows rather than walk an index;
        # ruling sorts out shows that an index-ordered plan exists (the bench reads 200,000 readings
        # per device with the planner left alone, bench/store_reads.py).
        store.backend.connection.execute("SET enable_sort = off")
        store.backend.connection.execute("SET enable_incremental_sort = off")
        for device, field in QUERIES:
            for sql, params in readings_statements(store.backend, device, field, None, 100, 700):
                plan = "\n".join(row[0] for row in store.backend.query("EXPLAIN " + sql, params))
                assert "Sort" not in plan, (device, field, plan)
                assert "Seq Scan" not in plan, (device, field, plan)  # index scans (the planner picks which)
            got = [r.id for r in store.readings(device, field, None, 50, after_id=700)]
            where = " AND ".join(
                ["id > 700"] + ([f"dev_eui = '{device}'"] if device else []) + ([f"field = '{field}'"] if field else [])
            )
            assert got == [r[0] for r in store.query(f"SELECT id FROM readings WHERE {where} ORDER BY id LIMIT 50")]


def test_a_field_the_device_never_sends_is_answered_without_reading_its_history(tmp_path) -> None:
    with Store.open(tmp_path / "g.sqlite") as store:
        fill(store, 30)
        up = make_uplink(999, dev_eui=DEVICES[0])
        store.record_uplink(up, [make_reading(up, "co2", 420.0, "ppm", "59")])
        assert readings_statements(store.backend, DEVICES[1], "co2", None, 1000, 0) == []
        assert store.readings(DEVICES[1], "co2") == [] and len(store.readings(DEVICES[0], "co2")) == 1
        assert store.readings(DEVICES[1], "no_such_field") == []


def test_a_device_with_more_shapes_than_the_index_walk_takes_is_read_by_its_uplinks(tmp_path) -> None:
    from gateway.service.store.shapes import MOST_PER_DEVICE

    with Store.open(tmp_path / "g.sqlite") as store:
        records = []
        for n in range(MOST_PER_DEVICE + 5):  # a codec whose object keys change with every uplink
            up = make_uplink(n + 1, dev_eui=DEVICES[3], received_at=T0 + timedelta(minutes=n))
            records.append(UplinkRecord(up, [make_reading(up, f"k{n}", 1.0), make_reading(up, "x", float(n))]))
        store.record_uplinks(records)
        statements = readings_statements(store.backend, DEVICES[3], "x", None, 1000, 0)
        assert len(statements) == 1 and "e.shape" not in statements[0][0]
        assert [r.reading.value for r in store.readings(DEVICES[3], "x", limit=20, after_id=10)] == [
            float(n) for n in range(5, 25)
        ]


def test_the_api_pages_with_next_until_null(tmp_path) -> None:
    import asyncio
    import json

    import aiohttp

    from gateway.service.app import GatewayService
    from gateway.service.config import parse_config

    cfg = parse_config({"store": {"path": str(tmp_path / "g.sqlite")}, "http": {"host": "127.0.0.1", "port": 0}})

    async def main() -> tuple[list[int], list[int | None], list[int]]:
        async with GatewayService(cfg) as svc, aiohttp.ClientSession() as session:
            fill(svc.store, 40)
            ids, nexts, after = [], [], 0
            while True:
                url = f"http://127.0.0.1:{svc.http_port}/api/readings?device={DEVICES[2]}&limit=25&after={after}"
                async with session.get(url) as r:
                    doc = json.loads(await r.text())
                ids += [x["id"] for x in doc["readings"]]
                nexts.append(doc["next"])
                if doc["next"] is None:
                    break
                after = doc["next"]
            return ids, nexts, [s.id for s in svc.store.readings(DEVICES[2], limit=10_000)]

    ids, nexts, expected = asyncio.run(main())
    assert ids == expected and len(ids) == 85  # 40 x 2 readings + 4 batteries + 1 tilt
    assert nexts[:-1] == [ids[24], ids[49], ids[74]] and nexts[-1] is None
