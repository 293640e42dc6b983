"""The store, on SQLite and on PostgreSQL: exactly-once uplinks, frame-counter health, dead letters,
sink cursors, batches, migrations. Tests taking ``store`` run on both backends (PostgreSQL: marked
``postgres``, one throw-away schema per test in the machine's ``test`` database)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from gateway.service.store import (
    SCHEMA_VERSION,
    DeviceUpdate,
    FcntStep,
    Store,
    StoreError,
    fcnt_step,
    migrations,
)

PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """The same store API on both backends."""
    if request.param == "sqlite":
        s = Store.open(tmp_path / "gateway.sqlite")
    else:
        s = Store.open(request.getfixturevalue("pg_schema"))
    yield s
    s.close()


# (last FCnt, new FCnt, expected step) -- LoRaWAN 1.0.4 4.3.1.5: FCntUp increments by one per uplink.
FCNT_CASES = [
    (None, 0, FcntStep()),  # first sight: nothing known about earlier frames
    (None, 57, FcntStep()),
    (4, 5, FcntStep()),  # in order
    (4, 8, FcntStep(lost=3)),  # 5, 6, 7 never arrived
    (4, 4, FcntStep(repeated=True)),  # confirmed-uplink retransmission
    (900, 2, FcntStep(lost=2, reset=True)),  # reboot without persisted counter: 0 and 1 lost
    (900, 0, FcntStep(reset=True)),
    (900, 880, FcntStep(lost=-1, late=True)),  # stored after 900 by a parallel ingest: fills a gap
    (900, 836, FcntStep(lost=-1, late=True)),  # 64 behind: still late
    (900, 835, FcntStep(lost=835, reset=True)),  # further back: a restart that lost frames 0..834
    (70, 60, FcntStep(reset=True, lost=60)),  # small counters: a restarted node, not a late uplink
    (2**32 - 1, 0, FcntStep()),  # 32-bit wrap, in order
    (2**32 - 2, 1, FcntStep(lost=2)),  # wrap: 2**32-1 and 0 lost
]


@pytest.mark.parametrize(("last", "new", "expected"), FCNT_CASES)
def test_fcnt_step_classifies_counters(last, new, expected):
    assert fcnt_step(last, new) == expected


def test_open_creates_wal_store_at_current_schema(tmp_path):
    s = Store.open(tmp_path / "sub" / "g.sqlite")
    try:
        assert s.schema_version == SCHEMA_VERSION
        mode = s.query("PRAGMA journal_mode")[0][0]
        assert mode == "wal"
        assert s.query("PRAGMA synchronous")[0][0] == 2  # FULL
    finally:
        s.close()


def test_open_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "g.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="schema version"):
        Store.open(path)


def test_reopen_keeps_data_and_does_not_migrate_twice(tmp_path, make_uplink, make_reading):
    path = tmp_path / "g.sqlite"
    with Store.open(path) as s:
        up = make_uplink(1)
        assert s.record_uplink(up, [make_reading(up)])
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert len(s.readings()) == 1


V1_READING = (  # a reading as the first release wrote it: every uplink column on every reading row
    "INSERT INTO readings (id, event_id, dev_eui, device_name, message_type, time, field, value, value_num, "
    "unit, unit_code, deduplication_id, f_cnt, tags, rssi, snr, gateway_id, spreading_factor, frequency, "
    "gateway_count) VALUES (?, 1, '0004a30b001c0530', 'node-0530', 'air_quality', '2026-05-04T12:00:00.000000Z', "
    "?, ?, ?, ?, ?, 'dedup-old', 41, '{\"district\": \"buer\"}', -99, 2.5, '0016c001ff10a235', 9, 868300000, 3)"
)


def test_a_version_1_file_migrates_to_the_current_schema_keeping_its_readings(
    tmp_path, make_uplink, make_reading
):
    # A store written by the first release (schema 1), with readings and a sink part-way through them.
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in migrations.SQLITE_MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(
        "INSERT INTO events (id, kind, dev_eui, received_at, dedup_id, encoding, raw) "
        "VALUES (1, 'up', '0004a30b001c0530', '2026-05-04T12:00:00.000000Z', 'dedup-old', 'json', x'7b7d')"
    )
    conn.execute(V1_READING, (7, "temperature", "21.5", 21.5, "°C", "CEL"))
    conn.execute(V1_READING, (9, "tilt", "true", 1.0, None, None))
    conn.execute("INSERT INTO sink_cursors VALUES ('ngsi', 7, '2026-05-04T12:00:01.000000Z')")
    conn.execute("PRAGMA user_version=1")
    conn.close()
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        indexes = {row[0] for row in s.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert indexes >= {"events_device_shape", "reading_log_event"}
        assert not indexes & {"readings_time", "readings_device_field_time", "events_device"}
        old = s.readings()
        assert [(r.id, r.reading.field, r.reading.value) for r in old] == [(7, "temperature", 21.5), (9, "tilt", True)]
        first = old[0]
        assert first.reading.deduplication_id == "dedup-old" and first.reading.f_cnt == 41
        assert first.reading.tags == {"district": "buer"} and first.reading.message_type == "air_quality"
        assert (first.radio.rssi, first.radio.spreading_factor, first.radio.gateway_count) == (-99, 9, 3)
        assert s.pending("ngsi") == 1  # the sink's cursor still points into the same log
        up = make_uplink(1)
        assert s.record_uplink(up, [make_reading(up)])
        [new] = s.readings(device=up.dev_eui, since=up.received_at, after_id=9)
        assert new.id > 9  # ids continue after the migrated ones: never reused
        assert s.pending("ngsi") == 2


def test_record_uplink_is_exactly_once_per_deduplication_id(store, make_uplink, make_reading):
    up = make_uplink(7)
    readings = [make_reading(up), make_reading(up, "relative_humidity", 40.1, "%", "P1")]
    assert store.record_uplink(up, readings, raw=b'{"x":1}', encoding="json") is True
    assert store.record_uplink(up, readings) is False
    assert [r.field for _, r in store.readings_after(0, 10)] == ["temperature", "relative_humidity"]
    assert store.event_count("up") == 1
    assert store.device(up.dev_eui).uplinks == 1


def test_readings_round_trip_values_units_tags_and_radio(store, make_uplink, make_reading):
    up = make_uplink(3)
    store.record_uplink(
        up,
        [
            make_reading(up),
            make_reading(up, "tilt", True, None, None),
            make_reading(up, "reset_cause", "watchdog", None, None),
            make_reading(up, "uptime", 3600, "s", "SEC"),
        ],
    )
    rows = store.readings()
    assert [(s.reading.field, s.reading.value) for s in rows] == [
        ("temperature", 21.5),
        ("tilt", True),
        ("reset_cause", "watchdog"),
        ("uptime", 3600),
    ]
    assert type(rows[1].reading.value) is bool and type(rows[3].reading.value) is int
    first = rows[0]
    assert first.reading == make_reading(up)
    assert first.radio.rssi == -87 and first.radio.snr == 7.5 and first.radio.spreading_factor == 7
    assert first.to_json()["gateway_id"] == "0016c001ff10a235"


def test_readings_filter_by_device_field_and_since(store, make_uplink, make_reading):
    a = make_uplink(1, dev_eui="00000000000000aa")
    b = make_uplink(1, dev_eui="00000000000000bb", received_at=a.received_at + timedelta(hours=1))
    store.record_uplink(a, [make_reading(a), make_reading(a, "pm10", 12.0, "µg/m³", "GQ")])
    store.record_uplink(b, [make_reading(b), make_reading(b, "pm10", 30.0, "µg/m³", "GQ")])
    assert [s.reading.value for s in store.readings(device="00000000000000BB", field="pm10")] == [30.0]
    assert [s.reading.dev_eui for s in store.readings(since=b.received_at)] == [b.dev_eui] * 2
    assert len(store.readings(limit=3)) == 3


def test_device_tracks_fcnt_gaps_resets_joins_and_link(store, make_uplink, make_reading):
    eui = "0004a30b001c0530"
    for fcnt in (1, 2, 5, 6, 6, 1):  # 3 and 4 lost; 6 repeated; then a reboot: 0 lost
        up = make_uplink(fcnt, dedup=f"d{fcnt}-{store.event_count()}", rssi=-100 + fcnt)
        store.record_uplink(up, [make_reading(up, "battery", 3.61, "V", "VLT")], role="air_quality")
    dev = store.device(eui)
    assert (dev.last_fcnt, dev.fcnt_gaps, dev.resets, dev.uplinks) == (1, 3, 1, 6)
    assert dev.battery == 3.61 and dev.role == "air_quality" and dev.last_rssi == -99
    # A join resets the expected counter: FCnt 0 after it is in order, no reset counted.
    assert store.record_event(
        "join", DeviceUpdate(eui, joined=True), received_at=dev.last_seen, dedup_id="j1"
    )
    up = make_uplink(0, dedup="after-join")
    store.record_uplink(up, [])
    dev = store.device(eui)
    assert (dev.joins, dev.resets, dev.fcnt_gaps, dev.last_fcnt) == (1, 1, 3, 0)
    assert store.counts()["fcnt_gaps"] == 3


def test_record_event_dedupes_and_updates_margin(store, make_uplink):
    eui = "0004a30b001c0531"
    t = make_uplink().received_at
    assert store.record_event(
        "status", DeviceUpdate(eui, name="bin-7", margin=9), received_at=t, dedup_id="s1"
    )
    assert not store.record_event("status", DeviceUpdate(eui, margin=1), received_at=t, dedup_id="s1")
    assert store.record_event("log", DeviceUpdate(eui), received_at=t, dedup_id=None)
    assert store.record_event("log", DeviceUpdate(eui), received_at=t, dedup_id=None)  # logs carry no id
    dev = store.device(eui)
    assert (dev.name, dev.margin, dev.last_event) == ("bin-7", 9, "log")


def test_undecodable_uplink_is_stored_with_its_dead_letter_atomically(store, make_uplink):
    up = make_uplink(9, data=b"\x82\x01")
    assert store.record_uplink(up, [], dead_letter_reason="truncated CBOR")
    assert not store.record_uplink(up, [], dead_letter_reason="truncated CBOR")
    [dl] = store.dead_letters()
    assert (dl.source, dl.reason, dl.raw, dl.dev_eui) == ("decode", "truncated CBOR", b"\x82\x01", up.dev_eui)


def test_dead_letters_keep_bytes_and_text_newest_first(store):
    store.dead_letter("mqtt", "not JSON: Expecting value", "{oops")
    store.dead_letter("amqp", "not protobuf", b"\xff\x00", dev_eui="00000000000000aa")
    newest, oldest = store.dead_letters(10)
    assert (newest.source, newest.raw, newest.dev_eui) == ("amqp", b"\xff\x00", "00000000000000aa")
    assert (oldest.raw, oldest.dev_eui) == ("{oops", None)


def test_sink_cursor_pages_through_the_outbox_and_never_moves_back(store, make_uplink, make_reading):
    for fcnt in range(1, 6):
        up = make_uplink(fcnt)
        store.record_uplink(up, [make_reading(up), make_reading(up, "pm10", 1.0 * fcnt)])
    assert store.get_cursor("ngsi") == 0 and store.pending("ngsi") == 10
    page = store.readings_after(store.get_cursor("ngsi"), 4)
    assert [i for i, _ in page] == [1, 2, 3, 4]
    store.set_cursor("ngsi", page[-1][0])
    store.set_cursor("ngsi", 2)  # stale acknowledgement
    assert store.get_cursor("ngsi") == 4 and store.pending("ngsi") == 6
    assert store.pending("frost") == 10
    assert [i for i, _ in store.readings_after(4, 100)] == list(range(5, 11))
    assert store.cursors() == {"ngsi": 4}


def test_failed_transaction_leaves_nothing_behind(store, make_uplink, make_reading):
    up = make_uplink(1)
    bad = make_reading(up, value=object())  # not JSON-serialisable: fails mid-transaction
    with pytest.raises(TypeError):
        store.record_uplink(up, [make_reading(up), bad])
    assert store.event_count() == 0 and store.readings() == [] and store.devices() == []
    assert store.record_uplink(up, [make_reading(up)])  # the id is still free


def test_closed_store_raises_store_error(store):
    s = store
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.devices()


def test_batch_commits_once_and_a_failing_event_undoes_only_itself(store, make_uplink, make_reading):
    ups = [make_uplink(i) for i in range(1, 5)]
    with store.batch():
        assert store.record_uplink(ups[0], [make_reading(ups[0])])
        assert not store.record_uplink(ups[0], [make_reading(ups[0])])  # duplicate inside the batch
        with pytest.raises(TypeError):
            store.record_uplink(ups[1], [make_reading(ups[1], value=object())])
        assert store.record_uplink(ups[2], [make_reading(ups[2])])
        store.dead_letter("mqtt", "bad topic", b"x")
    assert store.dedup_ids() == [ups[0].deduplication_id, ups[2].deduplication_id]
    assert len(store.readings()) == 2 and len(store.dead_letters()) == 1
    assert store.device(ups[0].dev_eui).uplinks == 2


def test_batch_rolls_back_everything_when_it_fails(store, make_uplink, make_reading):
    up = make_uplink(1)
    with pytest.raises(RuntimeError), store.batch():
        store.record_uplink(up, [make_reading(up)])
        raise RuntimeError("crash before commit")
    assert store.event_count() == 0 and store.devices() == []
    assert store.record_uplink(up, [make_reading(up)])


@pytest.mark.postgres
def test_postgres_migrates_once_and_reopens(pg_schema, make_uplink, make_reading):
    from gateway.service.store.postgres import PostgresBackend

    with Store.open(pg_schema) as s:
        assert isinstance(s.backend, PostgresBackend) and s.schema_version == SCHEMA_VERSION
        up = make_uplink(1)
        s.record_uplink(up, [make_reading(up)])
    with Store.open(pg_schema) as s:
        assert s.schema_version == SCHEMA_VERSION and len(s.readings()) == 1


@pytest.mark.postgres
def test_postgres_version_1_data_migrates_to_the_narrow_reading_log(pg_schema, make_uplink, make_reading):
    import psycopg

    schema = pg_schema.rsplit("%3D", 1)[1]
    with psycopg.connect(PG_DSN, autocommit=True, options=f"-csearch_path={schema}") as conn:
        conn.execute("CREATE TABLE citynode_schema (version INTEGER PRIMARY KEY)")
        for statement in migrations.POSTGRES_MIGRATIONS[0].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO citynode_schema VALUES (1)")
        conn.execute(
            "INSERT INTO events (kind, dev_eui, received_at, dedup_id, encoding, raw) "
            "VALUES ('up', '0004a30b001c0530', '2026-05-04T12:00:00.000000Z', 'dedup-old', 'json', '\\x7b7d')"
        )
        for field, value, num in (("temperature", "21.5", 21.5), ("tilt", "true", 1.0)):
            conn.execute(
                V1_READING.replace("(?, 1,", "(DEFAULT, 1,").replace("?", "%s"), (field, value, num, None, None)
            )
    with Store.open(pg_schema) as s:
        assert s.schema_version == SCHEMA_VERSION
        old = s.readings()
        assert [(r.id, r.reading.field, r.reading.value) for r in old] == [(1, "temperature", 21.5), (2, "tilt", True)]
        assert old[0].reading.tags == {"district": "buer"} and old[0].radio.gateway_count == 3
        up = make_uplink(1)
        assert s.record_uplink(up, [make_reading(up)])
        assert [r.id for r in s.readings()] == [1, 2, 3]  # the sequence went on where the old one stood


@pytest.mark.postgres
def test_postgres_connection_error_hides_the_password():
    with pytest.raises(StoreError) as info:
        Store.open("postgresql://postgres:hunter2@127.0.0.1:1/test?connect_timeout=2")
    assert "hunter2" not in str(info.value) and "127.0.0.1:1" in str(info.value)


def test_reads_by_device_seek_indexes_and_never_scan_a_table(tmp_path, make_uplink, make_reading):
    """The API's readings query, the status page's history and a sink's outbox page each start from an
    index (SQLite's plan says SEARCH), so their cost does not grow with the size of the store."""
    from datetime import UTC, datetime

    from gateway.service.api.history import device_history

    with Store.open(tmp_path / "g.sqlite") as s:
        for f_cnt in range(1, 4):
            up = make_uplink(f_cnt)
            s.record_uplink(up, [make_reading(up)], role="air_quality")
        statements: list[str] = []
        s.backend.connection.set_trace_callback(statements.append)
        s.readings(device=up.dev_eui, field="temperature", since=datetime(2026, 1, 1, tzinfo=UTC))
        device_history(s, up.dev_eui, points=10)
        s.stored_readings_after(1)
        s.backend.connection.set_trace_callback(None)
        selects = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
        assert len(selects) >= 4
        for sql in selects:
            plan = [row[3] for row in s.query("EXPLAIN QUERY PLAN " + sql)]
            assert not [step for step in plan if step.startswith("SCAN")], (sql, plan)


@pytest.mark.parametrize("bulk", [False, True], ids=["one at a time", "a batch"])
def test_late_uplinks_fill_their_gaps_instead_of_counting_a_reset(store, make_uplink, bulk):
    """Ingest processes splitting a shared subscription may store FCnt 102 after 104."""
    from gateway.service.store import UplinkRecord

    eui = "0004a30b001c0530"
    order = (100, 101, 104, 102, 103, 105, 99)  # 99: late, but no gap of it counted: nothing to fill
    ups = [make_uplink(fcnt, dedup=f"late-{fcnt}") for fcnt in order]
    if bulk:
        with store.batch():
            store.record_uplinks([UplinkRecord(up, []) for up in ups[:4]])
        with store.batch():
            store.record_uplinks([UplinkRecord(up, []) for up in ups[4:]])
    else:
        for up in ups:
            store.record_uplink(up, [])
    dev = store.device(eui)
    assert (dev.last_fcnt, dev.fcnt_gaps, dev.resets, dev.uplinks) == (105, 0, 0, 7)


def test_a_dead_letter_is_timed_when_the_gateway_received_it_not_by_the_event(store, make_uplink):
    """An event may claim any time (a node's clock, a replay from last week); a dead letter's
    ``received_at`` is the gateway's own time (issue 17)."""
    from datetime import UTC, datetime

    before = datetime.now(UTC)
    old = make_uplink(9, data=b"\x82\x01")  # received_at: 2026-05-04, the network time it states
    assert store.record_uplink(old, [], dead_letter_reason="truncated CBOR")
    assert store.record_event(
        "log", DeviceUpdate(old.dev_eui), received_at=old.received_at, dedup_id=None, raw=b"{}",
        dead_letter=("chirpstack-log", "ChirpStack ERROR UPLINK_CODEC"),
    )  # fmt: skip
    given = datetime(2026, 6, 1, 8, 30, tzinfo=UTC)
    assert store.record_uplink(make_uplink(10, data=b"\xff"), [], dead_letter_reason="bad", gateway_received_at=given)
    newest, log, first = store.dead_letters()
    assert first.received_at >= before and log.received_at >= before
    assert newest.received_at == given
