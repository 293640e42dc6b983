"""A store written at an earlier schema (3, the narrow reading log; 4; 5) migrates to the current one keeping
all its data, on SQLite and PostgreSQL; reads and paging work on the migrated rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.service.store import SCHEMA_VERSION, Store
from gateway.service.store.migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, statements

PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"

EVENT = (
    "INSERT INTO events (id, kind, dev_eui, received_at, dedup_id, encoding, raw, device_name, message_type, f_cnt, "
    "tags, rssi, snr, gateway_id, spreading_factor, frequency, gateway_count) VALUES "
    "({id}, 'up', '{dev}', '2026-05-04T12:0{id}:00.000000Z', 'd{id}', 'json', NULL, 'node', 'air_quality', {id}, "
    "'{{\"district\": \"buer\"}}', -90, 7.5, '0016c001ff10a235', 7, 868100000, 2)"
)
READING = (
    "INSERT INTO reading_log (id, event_id, time, field, value, value_num, unit, unit_code) VALUES "
    "({id}, {event}, '2026-05-04T12:0{event}:00.000000Z', '{field}', '{value}', NULL, NULL, NULL)"
)
ROWS = [  # (event id, device, [(reading id, field, value JSON)])
    (1, "00000000000000aa", [(1, "temperature", "21.5"), (2, "tilt", "true")]),
    (2, "00000000000000bb", [(3, "temperature", "19.0")]),
    (3, "00000000000000aa", [(4, "temperature", "22.0"), (5, "reset_cause", '"watchdog"')]),
]
OTHER = [
    "INSERT INTO devices (dev_eui, name, last_fcnt, fcnt_gaps, uplinks) VALUES ('00000000000000aa', 'node', 3, 1, 2)",
    "INSERT INTO dead_letters (received_at, source, reason, raw, raw_is_text) "
    "VALUES ('2026-05-04T12:00:00.000000Z', 'mqtt', 'bad', NULL, 0)",
    "INSERT INTO sink_cursors VALUES ('ngsi', 2, '2026-05-04T12:00:01.000000Z')",
]


def data_statements() -> list[str]:
    out = []
    for event, dev, readings in ROWS:
        out.append(EVENT.format(id=event, dev=dev))
        out += [READING.format(id=i, event=event, field=f, value=v) for i, f, v in readings]
    return out + OTHER


def check(s: Store) -> None:
    assert s.schema_version == SCHEMA_VERSION
    assert [(r.id, r.reading.field, r.reading.value) for r in s.readings("00000000000000aa")] == [
        (1, "temperature", 21.5), (2, "tilt", True), (4, "temperature", 22.0), (5, "reset_cause", "watchdog")
    ]  # fmt: skip
    assert [r.id for r in s.readings("00000000000000aa", after_id=2)] == [4, 5]
    assert [r.id for r in s.readings("00000000000000aa", "temperature")] == [1, 4]
    first = s.readings()[0]
    assert first.reading.tags == {"district": "buer"} and first.radio.gateway_count == 2
    dev = s.device("00000000000000aa")
    assert (dev.last_fcnt, dev.fcnt_gaps, dev.uplinks) == (3, 1, 2)
    assert len(s.dead_letters()) == 1 and s.cursors() == {"ngsi": 2} and s.pending("ngsi") == 3
    assert s.counts()["readings"] == 5 and s.counts()["uplinks"] == 3


def sqlite_file_at(path: Path, version: int, data: list[Any]) -> Path:
    """A SQLite file migrated to ``version`` by the released steps, holding ``data`` (statements, or
    (statement, parameters)), as a gateway of that version left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    for step in SQLITE_MIGRATIONS[:version]:
        for statement in statements(step):
            conn.execute(statement)
    for item in data:
        conn.execute(*(item if isinstance(item, tuple) else (item,)))
    conn.execute(f"PRAGMA user_version={version}")
    conn.close()
    return path


@contextmanager
def postgres_store_at(version: int, data: list[Any], readings_seq: int, events_seq: int) -> Iterator[Store]:
    """A PostgreSQL schema migrated to ``version`` by the released steps, holding ``data`` (statements,
    or (statement, parameters)), with the id sequences where its writer left them; opened as a Store
    (which migrates it to the current schema), dropped afterwards."""
    import uuid

    import psycopg

    name = f"citynode_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        with psycopg.connect(PG_DSN, autocommit=True, options=f"-csearch_path={name}") as conn:
            conn.execute("CREATE TABLE citynode_schema (version INTEGER PRIMARY KEY)")
            for number, step in enumerate(POSTGRES_MIGRATIONS[:version], 1):
                for statement in statements(step):
                    conn.execute(statement)
                conn.execute("INSERT INTO citynode_schema VALUES (%s)", (number,))
            for item in data:
                conn.execute(*(item if isinstance(item, tuple) else (item,)))
            conn.execute("SELECT setval(pg_get_serial_sequence('reading_log', 'id'), %s)", (readings_seq,))
            conn.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), %s)", (events_seq,))
        with Store.open(f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{name}") as s:
            yield s
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def test_a_schema_3_sqlite_file_keeps_everything(tmp_path, make_uplink, make_reading) -> None:
    with Store.open(sqlite_file_at(tmp_path / "v3.sqlite", 3, data_statements())) as s:
        check(s)
        indexes = {row[0] for row in s.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"events_device_id", "reading_log_event", "events_device_shape"} <= indexes
        assert "events_device_type" not in indexes
        up = make_uplink(4, dev_eui="00000000000000aa")
        assert s.record_uplink(up, [make_reading(up)])
        assert [r.id for r in s.readings("00000000000000aa", after_id=5)] == [6]


@pytest.mark.postgres
def test_a_schema_3_postgres_database_keeps_everything(make_uplink, make_reading) -> None:
    with postgres_store_at(3, data_statements(), readings_seq=5, events_seq=3) as s:
        check(s)
        up = make_uplink(4, dev_eui="00000000000000aa")
        assert s.record_uplink(up, [make_reading(up)])
        assert [r.id for r in s.readings("00000000000000aa", after_id=5)] == [6]


# Schema 4 -> 5: raw events stored before stay as they were (readable as they are), a reading's time
# equal to its uplink's becomes NULL (read back as that time), value_num moves into the view, and the
# reading ids' sequence goes on where it was (the newest reading, id 7, was deleted before).
RAW = b'{"deduplicationId": "d1", "object": {"temperature": 21.5}}'
EXTRA = [
    "INSERT INTO reading_log (id, event_id, time, field, value, value_num, unit, unit_code) VALUES "
    "(6, 3, '2026-05-04T11:59:00.000000Z', 'pm10', '9.8', 9.8, NULL, NULL)",
    "INSERT INTO reading_log (id, event_id, time, field, value, value_num, unit, unit_code) VALUES "
    "(7, 3, '2026-05-04T12:03:00.000000Z', 'pm1_0', '1.0', 1.0, NULL, NULL)",
    "DELETE FROM reading_log WHERE id = 7",
]


def check_5(s: Store) -> None:
    assert s.schema_version == SCHEMA_VERSION
    times = {r.id: (r.reading.field, r.reading.time.strftime("%H:%M")) for r in s.readings("00000000000000aa")}
    assert times == {1: ("temperature", "12:01"), 2: ("tilt", "12:01"), 4: ("temperature", "12:03"),
                     5: ("reset_cause", "12:03"), 6: ("pm10", "11:59")}  # fmt: skip
    assert [r[0] for r in s.query("SELECT time FROM reading_log ORDER BY id")] == [None] * 5 + [
        "2026-05-04T11:59:00.000000Z"
    ]
    view = [tuple(r) for r in s.query("SELECT id, time, value_num FROM readings ORDER BY id")]
    assert view[0] == (1, "2026-05-04T12:01:00.000000Z", 21.5) and view[1][2] is None and view[4][2] is None
    assert view[5] == (6, "2026-05-04T11:59:00.000000Z", 9.8)
    event = s.raw_event("d1")
    assert event.raw == RAW and event.encoding == "json" and event.id == 1
    assert s.raw_event(2).raw is None
    assert s.cursors() == {"ngsi": 2} and s.counts()["readings"] == 6


def test_a_schema_4_sqlite_file_keeps_everything(tmp_path, make_uplink, make_reading) -> None:
    data = [*data_statements(), *EXTRA, ("UPDATE events SET raw = ? WHERE id = 1", (RAW,))]
    with Store.open(sqlite_file_at(tmp_path / "v4.sqlite", 4, data)) as s:
        check_5(s)
        columns = [r[1] for r in s.query("PRAGMA table_info(reading_log)")]
        assert columns == ["id", "event_id", "time", "field", "value", "unit", "unit_code"]
        up = make_uplink(4, dev_eui="00000000000000aa")
        assert s.record_uplink(up, [make_reading(up)], raw=b"{}", encoding="json")
        assert [r.id for r in s.readings("00000000000000aa", after_id=6)] == [8]
        assert s.raw_event(up.deduplication_id).raw == b"{}"


@pytest.mark.postgres
def test_a_schema_4_postgres_database_keeps_everything(make_uplink, make_reading) -> None:
    data = [*data_statements(), *EXTRA, ("UPDATE events SET raw = %s WHERE id = 1", (RAW,))]
    with postgres_store_at(4, data, readings_seq=7, events_seq=3) as s:
        check_5(s)
        up = make_uplink(4, dev_eui="00000000000000aa")
        assert s.record_uplink(up, [make_reading(up)], raw=b"{}", encoding="json")
        assert [r.id for r in s.readings("00000000000000aa", after_id=6)] == [8]
        assert s.raw_event(up.deduplication_id).raw == b"{}"


# Schema 5 -> 6: every stored uplink gets its message shape (message type + field names) from its
# readings; ``field=`` pages and the firmware query then go by shape, and an uplink stored after the
# migration finds the shape the migration made (the key is written the same way by SQL and Python).
SHAPED = ROWS + [
    (4, "00000000000000aa", [(6, "temperature", "22.5"), (7, "tilt", "false")]),
    (5, "00000000000000aa", [(8, "température", "1.0")]),  # a name outside ASCII
]
NO_READINGS = (
    "INSERT INTO events (id, kind, dev_eui, received_at, dedup_id, encoding, raw, message_type) VALUES "
    "(6, 'up', '00000000000000aa', '2026-05-04T12:06:00.000000Z', 'd6', 'json', NULL, 'device_status')"
)
A_JOIN = (
    "INSERT INTO events (id, kind, dev_eui, received_at, dedup_id, encoding, raw) VALUES "
    "(7, 'join', '00000000000000aa', '2026-05-04T12:07:00.000000Z', 'j7', 'json', NULL)"
)


def shaped_statements() -> list[str]:
    out = []
    for event, dev, readings in SHAPED:
        out.append(EVENT.format(id=event, dev=dev))
        # schema 5's reading log has no value_num
        out += [READING.format(id=i, event=event, field=f, value=v).replace("value_num, ", "").replace(
            "NULL, NULL, NULL)", "NULL, NULL)") for i, f, v in readings]  # fmt: skip
    return out + [NO_READINGS, A_JOIN] + OTHER


def check_6(s: Store, make_uplink, make_reading) -> None:
    assert s.schema_version == SCHEMA_VERSION
    by_event = {int(r[0]): r[1] for r in s.query("SELECT id, shape FROM events ORDER BY id")}
    shapes = {int(r[0]): (r[1], r[2]) for r in s.query("SELECT id, message_type, fields FROM shapes")}
    assert {e: shapes[by_event[e]] for e in (1, 2, 3, 4, 5, 6)} == {
        1: ("air_quality", '["temperature","tilt"]'), 2: ("air_quality", '["temperature"]'),
        3: ("air_quality", '["reset_cause","temperature"]'), 4: ("air_quality", '["temperature","tilt"]'),
        5: ("air_quality", '["température"]'), 6: ("device_status", "[]"),
    }  # fmt: skip
    assert by_event[7] is None  # not an uplink
    carriers = {str(r[0]) for r in s.query("SELECT field FROM shape_fields WHERE shape = ?", (by_event[3],))}
    assert carriers == {"reset_cause", "temperature"}
    assert [r.id for r in s.readings("00000000000000aa", "tilt")] == [2, 7]
    assert [r.id for r in s.readings("00000000000000aa", "temperature")] == [1, 4, 6]
    assert [r.id for r in s.readings("00000000000000aa", "température")] == [8]
    # new uplinks of shapes the migration made find them; a new shape is added once
    up = make_uplink(10, dev_eui="00000000000000aa")
    assert s.record_uplink(up, [make_reading(up, "tilt", True), make_reading(up)])
    up = make_uplink(11, dev_eui="00000000000000aa")
    assert s.record_uplink(up, [make_reading(up, "température", 2.0)])
    up = make_uplink(12, dev_eui="00000000000000bb")
    assert s.record_uplink(up, [make_reading(up, "pm10", 9.0)])
    assert len(s.query("SELECT id FROM shapes")) == len(shapes) + 1
    assert [r.reading.value for r in s.readings("00000000000000aa", "tilt")] == [True, False, True]


def test_a_schema_5_sqlite_file_gets_message_shapes(tmp_path, make_uplink, make_reading) -> None:
    with Store.open(sqlite_file_at(tmp_path / "v5.sqlite", 5, shaped_statements())) as s:
        check_6(s, make_uplink, make_reading)
        indexes = {row[0] for row in s.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "events_device_shape" in indexes and "events_device_type" not in indexes


@pytest.mark.postgres
def test_a_schema_5_postgres_database_gets_message_shapes(make_uplink, make_reading) -> None:
    with postgres_store_at(5, shaped_statements(), readings_seq=8, events_seq=7) as s:
        check_6(s, make_uplink, make_reading)
