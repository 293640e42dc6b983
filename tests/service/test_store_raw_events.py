"""The store keeps every raw ChirpStack event compressed against a dictionary, and gives it back byte
for byte (``Store.raw_event``, ``citynode gateway raw-event``); a reading stored at its uplink's time
reads back at that time. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from gateway.cli import main as cli
from gateway.service.pipeline import Pipeline
from gateway.service.store import Store, StoreError, rawcodec
from gateway.service.store.rawcodec import TRAIN_AFTER, split_encoding


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def where(request, tmp_path):
    """Where a store lives: a SQLite file or a PostgreSQL schema (reopened by some tests)."""
    return str(tmp_path / "gateway.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_schema")


def up_bodies(events, aq_payload, n: int, encoding: str, first: int = 1) -> list[bytes]:
    return [
        events.body(events.up(f_cnt=i, data=aq_payload(), dedup=f"5c8d0b6a-0000-4000-8000-{i:012d}"), encoding)
        for i in range(first, first + n)
    ]


def stored(store: Store, dedup: str) -> tuple[str, int]:
    row = store.query("SELECT encoding, length(raw) FROM events WHERE dedup_id = ?", (dedup,))[0]
    return row[0], int(row[1])


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_an_uplink_comes_back_exactly_as_received_and_is_stored_smaller(where, events, aq_payload, encoding):
    bodies = up_bodies(events, aq_payload, 3, encoding)
    with Store.open(where) as store:
        Pipeline(store).handle_many([("up", b, encoding, "mqtt", None) for b in bodies])
        for i, body in enumerate(bodies, 1):
            dedup = f"5c8d0b6a-0000-4000-8000-{i:012d}"
            event = store.raw_event(dedup)
            assert event is not None and event.raw == body and event.encoding == encoding
            assert event.kind == "up" and event.dev_eui == "0004a30b001c0530" and event.deduplication_id == dedup
            assert store.raw_event(event.id) == event
            column, size = stored(store, dedup)
            assert split_encoding(column)[0] == encoding and split_encoding(column)[1] is not None
            assert size < len(body) * 0.7
    with Store.open(where) as store:  # another process's view: the dictionary is read from the store
        assert store.raw_event("5c8d0b6a-0000-4000-8000-000000000002").raw == bodies[1]


def test_other_events_are_kept_the_same_way(store, events):
    body = events.body(events.join(dedup="join-7"))
    Pipeline(store).handle("join", body, "json", "mqtt")
    (event_id,) = store.query("SELECT id FROM events WHERE kind = 'join'")[0]
    event = store.raw_event(int(event_id))
    assert event.kind == "join" and event.raw == body and event.encoding == "json"
    assert store.raw_event("join-7") is None  # a deduplication id names an uplink
    assert store.raw_event(999) is None


def test_after_some_events_the_store_compresses_with_a_dictionary_of_its_own(where, events, aq_payload):
    bodies = up_bodies(events, aq_payload, TRAIN_AFTER + 20, "json")
    with Store.open(where) as store:
        pipeline = Pipeline(store)
        for start in range(0, len(bodies), 100):
            pipeline.handle_many([("up", b, "json", "mqtt", None) for b in bodies[start : start + 100]])
        origins = [tuple(r) for r in store.query("SELECT id, encoding, origin FROM raw_dictionaries ORDER BY id")]
        assert [o[1:] for o in origins] == [("json", "seed"), ("json", "store")]
        columns = [r[0] for r in store.query("SELECT encoding FROM events ORDER BY id")]
        assert columns[0] == f"json+z{origins[0][0]}" and columns[-1] == f"json+z{origins[1][0]}"
        own = [stored(store, f"5c8d0b6a-0000-4000-8000-{i:012d}")[1] for i in range(TRAIN_AFTER + 5, TRAIN_AFTER + 20)]
        seeded = [stored(store, f"5c8d0b6a-0000-4000-8000-{i:012d}")[1] for i in range(1, 16)]
        assert sum(own) < sum(seeded)  # its own events are what the next ones look like
    with Store.open(where) as store:
        for i in (1, TRAIN_AFTER, TRAIN_AFTER + 20):
            assert store.raw_event(f"5c8d0b6a-0000-4000-8000-{i:012d}").raw == bodies[i - 1]


def test_a_dictionary_written_in_a_rolled_back_batch_is_not_used_afterwards(store, events, aq_payload):
    first, second = up_bodies(events, aq_payload, 2, "json")
    pipeline = Pipeline(store)
    with pytest.raises(RuntimeError), store.batch():
        pipeline.handle("up", first, "json", "mqtt")
        assert store.query("SELECT COUNT(*) FROM raw_dictionaries")[0][0] == 1
        raise RuntimeError("the batch fails after the dictionary was written")
    assert store.query("SELECT COUNT(*) FROM raw_dictionaries")[0][0] == 0
    pipeline.handle("up", second, "json", "mqtt")
    assert store.raw_event("5c8d0b6a-0000-4000-8000-000000000002").raw == second


def test_a_missing_dictionary_is_a_store_error(store, events, aq_payload):
    (body,) = up_bodies(events, aq_payload, 1, "json")
    Pipeline(store).handle("up", body, "json", "mqtt")
    with store.backend.tx() as cur:  # a row naming a dictionary the store does not have
        cur.execute("UPDATE events SET encoding = 'json+z99'")
    with pytest.raises(StoreError, match="dictionary 99 is missing"):
        store.raw_event("5c8d0b6a-0000-4000-8000-000000000001")


def test_the_seed_dictionaries_come_from_the_shipped_events():
    doc = json.loads(rawcodec.SEED_PATH.read_text(encoding="utf-8"))
    assert len(doc["events"]) >= 5 and all(ev["deduplicationId"] for ev in doc["events"])
    for encoding in ("json", "protobuf"):
        d = rawcodec.seed_dictionary(encoding)
        assert 4096 < len(d) <= rawcodec.DICT_MAX
    assert rawcodec.seed_dictionary("other") == b""


def test_a_reading_at_its_uplinks_time_is_stored_without_a_time_and_reads_back_with_it(
    store, make_uplink, make_reading
):
    up = make_uplink(1)
    own = make_reading(up, field="pm10", value=12)
    earlier = make_reading(up, field="temperature", value=21.5)
    earlier = replace(earlier, time=up.received_at - timedelta(minutes=5))
    assert store.record_uplink(up, [own, earlier])
    assert [r[0] for r in store.query("SELECT time FROM reading_log ORDER BY id")] == [
        None, earlier.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ]
    got = {r.reading.field: r.reading.time for r in store.readings(up.dev_eui)}
    assert got == {"pm10": up.received_at, "temperature": earlier.time}
    view = store.query("SELECT field, time, value_num FROM readings ORDER BY id")
    assert [tuple(r) for r in view] == [
        ("pm10", up.received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), 12.0),
        ("temperature", earlier.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), 21.5),
    ]
    since = store.readings(up.dev_eui, since=up.received_at - timedelta(minutes=1))
    assert [r.reading.field for r in since] == ["pm10"]


def test_raw_event_on_the_command_line(tmp_path, events, aq_payload, capsys):
    path = tmp_path / "gateway.sqlite"
    (body,) = up_bodies(events, aq_payload, 1, "protobuf")
    with Store.open(path) as store:
        Pipeline(store).handle("up", body, "protobuf", "mqtt")
    out = tmp_path / "event.bin"
    assert cli(["gateway", "raw-event", "5c8d0b6a-0000-4000-8000-000000000001", "--store", str(path), "--out", str(out)]) == 0
    assert out.read_bytes() == body
    assert cli(["gateway", "raw-event", "1", "--store", str(path), "--out", str(out)]) == 0
    assert out.read_bytes() == body
    capsys.readouterr()
    for bad in (["nope!"], ["42"], ["5c8d0b6a-0000-4000-8000-999999999999"]):
        assert cli(["gateway", "raw-event", *bad, "--store", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("citynode gateway raw-event: error:") and "\n" not in err
    assert cli(["gateway", "raw-event", "1", "--store", str(tmp_path / "missing.sqlite")]) == 2
