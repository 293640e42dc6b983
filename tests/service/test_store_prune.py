"""Pruning the store: old readings go once every sink has delivered them, and nothing a sink still
needs, nor the reading log's ids, is ever touched. On SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.cli import main as cli
from gateway.contract.records import Reading
from gateway.service.store import DeviceUpdate, PruneResult, Store

from ..conftest import T0, make_uplink
from .test_store_backends import store  # noqa: F401  (fixture: both backends; pg_schema is in tests/conftest.py)

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)  # cutoffs an hour before a day's uplink: its battery reading is 60 s older


def fill(store: Store, days: int = 10) -> None:
    """One uplink a day from T0 on (two readings, the second 60 s older), and a join on day 0."""
    store.record_event("join", DeviceUpdate("0004a30b001c0530", joined=True), received_at=T0, dedup_id="j-0")
    for day in range(days):
        up = make_uplink(day + 1, received_at=T0 + day * DAY)
        readings = [
            Reading(up.dev_eui, up.device_name, "bin_fill", up.received_at, "fill_level", 0.1 * day, "1", "P1",
                    up.deduplication_id, up.f_cnt, dict(up.tags)),
            Reading(up.dev_eui, up.device_name, "bin_fill", up.received_at - timedelta(seconds=60), "battery",
                    3.6, "V", "VLT", up.deduplication_id, up.f_cnt, dict(up.tags)),
        ]
        store.record_uplink(up, readings, raw=b"{}", encoding="json", role="bin_fill")
    store.dead_letter("http", "invalid JSON", b"{broken", received_at=T0)
    store.dead_letter("http", "invalid JSON", b"{broken", received_at=T0 + 9 * DAY)


def fields_by_day(store: Store) -> list[tuple[int, str]]:
    return [((r.reading.time - T0 + timedelta(minutes=1)).days, r.reading.field) for r in store.readings(limit=100)]


def test_prune_deletes_what_is_older_and_delivered(store):
    fill(store)
    last = store.last_reading_id()
    result = store.prune(T0 + 4 * DAY - HOUR, delivered_up_to=last)
    # days 0..3: 8 readings, 4 uplinks and the join; dead letters stay unless asked
    assert result == PruneResult(readings=8, events=5, dead_letters=0, kept_undelivered=0)
    assert [day for day, _ in fields_by_day(store)] == [4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]
    assert store.counts()["readings"] == 12 and store.event_count() == 6 and store.event_count("join") == 0
    assert len(store.dead_letters()) == 2
    assert store.device("0004a30b001c0530").uplinks == 10  # a device's history of counters stays


def test_readings_a_sink_has_not_delivered_stay_with_their_events(store):
    fill(store)
    first_ids = [r.id for r in store.readings(limit=100)]
    store.set_cursor("ngsild", first_ids[3])  # delivered days 0 and 1 only
    result = store.prune(T0 + 4 * DAY - HOUR, delivered_up_to=store.get_cursor("ngsild"))
    assert result.readings == 4 and result.kept_undelivered == 4
    assert result.events == 3  # the join and the uplinks of days 0 and 1
    assert [day for day, _ in fields_by_day(store)][:4] == [2, 2, 3, 3]
    # the sink still finds every reading after its cursor, complete with its uplink's metadata
    page = store.stored_readings_after(store.get_cursor("ngsild"))
    assert len(page) == 16 and all(r.reading.f_cnt and r.radio.rssi == -87 for r in page)


def test_a_dry_run_counts_exactly_what_a_run_deletes_and_changes_nothing(store):
    fill(store)
    before = (store.counts(), store.event_count())
    dry = store.prune(T0 + 6 * DAY - HOUR, delivered_up_to=7, dead_letters=True, dry_run=True)
    assert (store.counts(), store.event_count()) == before
    assert store.prune(T0 + 6 * DAY - HOUR, delivered_up_to=7, dead_letters=True) == dry
    assert dry.dead_letters == 1 and dry.readings == 7 and dry.kept_undelivered == 5


def test_ids_are_never_reused_after_a_prune(store):
    fill(store, days=3)
    last = store.last_reading_id()
    store.prune(T0 + 30 * DAY, delivered_up_to=last)
    assert store.counts()["readings"] == 0 and store.last_reading_id() == 0
    up = make_uplink(99, received_at=T0 + 31 * DAY)
    reading = Reading(up.dev_eui, up.device_name, "bin_fill", up.received_at, "fill_level", 0.5, "1", "P1",
                      up.deduplication_id, up.f_cnt, {})
    assert store.record_uplink(up, [reading], raw=b"{}", encoding="json", role="bin_fill")
    assert store.readings()[0].id == last + 1  # a sink's cursor at `last` sees it as new


def test_prune_command_waits_for_every_sink_and_says_which_holds_back(tmp_path, capsys):
    path = tmp_path / "g.sqlite"
    with Store.open(path) as s:
        fill(s)
        ids = [r.id for r in s.readings(limit=100)]
        s.set_cursor("frost", ids[-1])
        s.set_cursor("ngsild", ids[5])  # delivered days 0..2
    argv = ["gateway", "prune", "--store", str(path), "--before", "2026-05-10T00:00:00Z"]
    assert cli([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would delete 6 readings, 4 events older than 2026-05-10T00:00:00+00:00")
    assert f"kept 6 older readings that are not delivered yet: sink ngsild has delivered up to #{ids[5]}" in out
    assert cli([*argv, "--ignore-sink", "ngsild", "--dead-letters"]) == 0
    assert capsys.readouterr().out.startswith("deleted 12 readings, 7 events, 1 dead letters older than")
    with Store.open(path) as s:
        assert s.counts()["readings"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keep-days", "0"], "--keep-days: expected at least 1"),
        (["--before", "yesterday"], "not an ISO 8601 time"),
    ],
)
def test_prune_command_refuses_bad_times(tmp_path, capsys, args, message):
    path = tmp_path / "g.sqlite"
    Store.open(path).close()
    assert cli(["gateway", "prune", "--store", str(path), *args]) == 2
    assert message in capsys.readouterr().err
