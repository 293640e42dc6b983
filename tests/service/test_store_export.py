"""``citynode gateway export``: the database formats the rows; what comes out is what the store's
values say (StoredReading.to_json for JSON lines; the same fields as text for CSV), on both backends;
and ``export | head`` ends quietly."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.service.store import Store
from gateway.service.store.export import CSV_COLUMNS, ExportFilter, export

T1 = datetime(2026, 5, 4, 12, 2, tzinfo=UTC)  # the second of the three uplinks below
PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


@pytest.fixture
def pg_schema():
    import uuid

    import psycopg

    name = f"citynode_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{name}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    s = Store.open(tmp_path / "g.sqlite" if request.param == "sqlite" else request.getfixturevalue("pg_schema"))
    yield s
    s.close()


def fill(store, make_uplink, make_reading) -> None:
    for n in range(1, 4):
        up = make_uplink(n, dev_eui="0004a30b001c0530" if n != 2 else "0004a30b001c0531",
                         received_at=make_uplink().received_at + timedelta(minutes=n))  # fmt: skip
        up.tags = {"district": "Alt, \"stadt\"", "ü": "ß\\n"}
        store.record_uplink(
            up,
            [
                make_reading(up, "temperature", 21.5 + n),
                make_reading(up, "tilt", n == 2, None, None),
                make_reading(up, "reset_cause", 'watch, "dog"\nline', None, None),
                make_reading(up, "uptime", 3600 * n, "s", "SEC"),
                make_reading(up, "pm10", 1e-07, "µg/m³", "GQ"),
            ],
        )


def csv_text(value) -> str:
    """A value as the CSV export has always written it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def exported_csv(store, filters: ExportFilter, expected: list[dict]) -> tuple[list[list[str]], str]:
    """Export as JSON lines (checked against ``expected``, the store's own readings) and as CSV; the
    CSV's rows (header first) and its text."""
    out = io.BytesIO()
    assert export(store, "jsonl", filters, out) == len(expected)
    assert [json.loads(line) for line in out.getvalue().decode().splitlines()] == expected
    out = io.BytesIO()
    assert export(store, "csv", filters, out) == len(expected)
    text = out.getvalue().decode()
    return list(csv.reader(io.StringIO(text, newline=""))), text


@pytest.mark.parametrize("filters", [ExportFilter(), ExportFilter(device="0004A30B001C0530", field="tilt"),
                                     ExportFilter(field="temperature", since=T1)])
def test_jsonl_and_csv_say_what_the_store_holds(store, make_uplink, make_reading, filters) -> None:
    fill(store, make_uplink, make_reading)
    expected = [
        r.to_json() for r in store.readings(filters.device, filters.field, filters.since, 10_000)
    ]
    rows, written = exported_csv(store, filters, expected)
    assert tuple(rows[0]) == CSV_COLUMNS and "frequency" in CSV_COLUMNS and "gateway_count" in CSV_COLUMNS
    assert rows[1:] == [[csv_text(doc[c]) for c in CSV_COLUMNS] for doc in expected]


def test_export_into_head_ends_without_a_traceback(tmp_path: Path, make_uplink, make_reading) -> None:
    path = tmp_path / "g.sqlite"
    with Store.open(path) as s:
        for n in range(3000):  # well over a pipe's 64 KiB
            up = make_uplink(n, received_at=make_uplink().received_at + timedelta(seconds=n))
            s.record_uplink(up, [make_reading(up), make_reading(up, "pm10", 3.0)])
    for fmt in ("csv", "jsonl"):
        cli = f"{sys.executable} -c 'import sys; from gateway.cli import main; sys.exit(main(sys.argv[1:]))'"
        result = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {cli} gateway export --store {path} --format {fmt} | head -2"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.stderr == "" and result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 2


def fill_free_text(store, make_uplink, make_reading) -> None:
    """Uplinks of three devices, some with names and ids that CSV must quote or JSON escape, some
    without gateway metadata, among plain ones: pages of an export mix both kinds."""
    from dataclasses import replace

    odd = ['Bus stop, "Nord"', "line\nbreak", "tab\there \\ back"]
    for n in range(1, 31):
        dev = f"0004a30b001c053{n % 3}"
        up = make_uplink(n, dev_eui=dev, received_at=make_uplink().received_at + timedelta(minutes=n))
        if n % 7 == 0:
            up.device_name = odd[n % 3]
        if n % 11 == 0:
            up.radio = replace(up.radio, gateway_id='gw,"x"')
        if n % 13 == 0:
            up.radio = replace(up.radio, gateway_id=None, rssi=None, snr=None)
        field = 'door,"1"' if n % 9 == 0 else "temperature"
        store.record_uplink(up, [make_reading(up, field, 20.0 + n), make_reading(up, "reset_cause", "a,b", None, None)])


@pytest.mark.parametrize("units_plain", [True, False])
@pytest.mark.parametrize("filters", [ExportFilter(), ExportFilter(device="0004a30b001c0531"),
                                     ExportFilter(field="temperature", since=T1)])
def test_pages_with_text_to_quote_say_what_the_store_holds(
    store, make_uplink, make_reading, filters, units_plain, monkeypatch
) -> None:
    """Pages of 3, 6, 12 ... rows: those holding a name, id or field to quote are built with the
    quoting line, the others with the plain one; together they are the store's readings, in order.
    (``units_plain=False``: as if the payload contract had a unit to quote; every line quotes units.)"""
    import gateway.service.store.export as export_module

    monkeypatch.setattr(export_module, "_FIRST_PAGE", 3)
    monkeypatch.setattr(export_module, "_CHUNK", 12)
    if not units_plain:
        monkeypatch.setattr(export_module, "_contract_plain", lambda special: False)
    fill_free_text(store, make_uplink, make_reading)
    expected = [r.to_json() for r in store.readings(filters.device, filters.field, filters.since, 10_000)]
    assert len(expected) > 12
    rows, written = exported_csv(store, filters, expected)
    assert rows[1:] == [[csv_text(doc[c]) for c in CSV_COLUMNS] for doc in expected]
    # and byte for byte what Python's csv module writes for those values
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\n").writerows([CSV_COLUMNS, *rows[1:]])
    assert written == text.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("filters", [ExportFilter(), ExportFilter(device="0004a30b001c0531"),
                                     ExportFilter(field="temperature", since=T1)])
def test_sqlite_export_pages_and_their_check_walk_indexes(tmp_path, make_uplink, make_reading, fmt, filters) -> None:
    """A page reads the log along an index, never sorting; the page's check reads the page's range
    of event ids (of the device's, with a device filter), not every uplink of the store."""
    from gateway.service.store.export import sqlite_statements

    with Store.open(tmp_path / "g.sqlite") as store:
        fill_free_text(store, make_uplink, make_reading)  # no ANALYZE: a store as the gateway leaves it
        pages, check = sqlite_statements(fmt, filters)
        for sql in pages.values():
            plan = [row[3] for row in store.query("EXPLAIN QUERY PLAN " + sql, [0] * sql.count("?"))]
            assert not [step for step in plan if "TEMP B-TREE" in step], plan
            assert not [step for step in plan if step.startswith("SCAN") and " e" in step], plan
        plan = [row[3] for row in store.query("EXPLAIN QUERY PLAN " + check, [0] * check.count("?"))]
        ranges = ["SEARCH events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"]
        if filters.device:  # the planner's pick of two ranges, both the page's
            ranges.append("SEARCH events USING COVERING INDEX events_device_id (dev_eui=? AND id>? AND id<?)")
            ranges.append("SEARCH events USING INDEX events_device_id (dev_eui=? AND id>? AND id<?)")
        searches = [step for step in plan if step.startswith(("SEARCH", "SCAN events"))]
        assert len(searches) == 1 and searches[0] in ranges, plan
