"""Store.record_uplinks (the MQTT ingest's group commit) leaves the store exactly as record_uplink would.

The bulk path allocates event ids itself, looks duplicates up with one query and folds each device's
frame-counter tracking of a batch into one row; the property below drives both paths with the same
random streams (redeliveries inside and across batches, FCnt gaps, repeats, resets, wraps, batteries,
role changes, undecodable payloads) and compares every table row by row, ids included.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.contract.records import Reading
from gateway.service.store import Store, StoreError, UplinkRecord

from ..conftest import T0, make_uplink

DEVICES = ["0004a30b001c0530", "0004a30b001c0531", "0004a30b001c0532"]

uplink_specs = st.lists(
    st.tuples(
        st.sampled_from(DEVICES),
        st.sampled_from([0, 1, 2, 3, 5, 9, 40, 70_000, 2**32 - 2, 2**32 - 1]),  # FCnt
        st.integers(0, 3),  # redelivery key: the same (device, FCnt, key) is the same deduplicationId
        st.sampled_from([None, 3.61, 3.2]),  # battery reading
        st.sampled_from([None, "air_quality", "device_status"]),  # role
        st.booleans(),  # undecodable (a dead letter with the uplink)
    ),
    max_size=40,
)


def record(spec: tuple, index: int) -> UplinkRecord:
    dev_eui, f_cnt, key, battery, role, undecodable = spec
    up = make_uplink(
        f_cnt,
        dedup=f"d-{dev_eui}-{f_cnt}-{key}",
        dev_eui=dev_eui,
        data=bytes([index % 256]),
        received_at=T0 + timedelta(seconds=index),
    )
    readings: list[Reading] = []
    if not undecodable:
        readings.append(
            Reading(up.dev_eui, up.device_name, role or "air_quality", up.received_at, "temperature", 20.5 + index,
                    "°C", "CEL", up.deduplication_id, f_cnt, dict(up.tags))
        )
        if battery is not None:
            readings.append(
                Reading(up.dev_eui, up.device_name, role or "air_quality", up.received_at - timedelta(seconds=60),
                        "battery", battery, "V", "VLT", up.deduplication_id, f_cnt, dict(up.tags))
            )
    reason = None if not undecodable else f"fPort 10 FCnt {f_cnt}: not valid CBOR"
    return UplinkRecord(up, readings, raw=b'{"n": %d}' % index, encoding="json", role=role, dead_letter_reason=reason,
                        gateway_received_at=T0 + timedelta(hours=1, seconds=index))


def dump(store: Store) -> dict[str, list[tuple]]:
    tables = {}
    for table, order in (("events", "id"), ("readings", "id"), ("devices", "dev_eui"), ("dead_letters", "id")):
        tables[table] = [tuple(row) for row in store.query(f"SELECT * FROM {table} ORDER BY {order}")]
    return tables


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=uplink_specs, cuts=st.lists(st.integers(1, 12), max_size=8))
def test_bulk_equals_one_at_a_time(tmp_path_factory, specs, cuts) -> None:
    directory = tmp_path_factory.mktemp("bulk")
    records = [record(spec, i) for i, spec in enumerate(specs)]
    with Store.open(directory / "one.sqlite") as one, Store.open(directory / "bulk.sqlite") as bulk:
        expected = [
            one.record_uplink(r.uplink, r.readings, raw=r.raw, encoding=r.encoding, role=r.role,
                              dead_letter_reason=r.dead_letter_reason, gateway_received_at=r.gateway_received_at)
            for r in records
        ]
        got: list[bool] = []
        start = 0
        for size in [*cuts, len(records)]:  # batches of random sizes, then the rest
            with bulk.batch():
                got += bulk.record_uplinks(records[start : start + size])
            start += size
        assert got == expected
        a, b = dump(one), dump(bulk)
        # dead letters carry their own insertion time in no column; compare everything
        assert a == b


def test_a_redelivery_inside_one_batch_is_stored_once(store) -> None:
    up = make_uplink(7)
    r = UplinkRecord(up, [], raw=b"x", encoding="protobuf")
    assert store.record_uplinks([r, r, r]) == [True, False, False]
    assert store.record_uplinks([r]) == [False]
    assert store.event_count("up") == 1 and store.device(up.dev_eui).uplinks == 1


def test_a_failing_bulk_insert_is_retried_one_by_one_and_names_the_uplink(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    with Store.open(path) as s:
        pass
    conn = sqlite3.connect(path)  # a store whose disk refuses one particular event
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.dedup_id = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    conn.commit()
    conn.close()
    with Store.open(path) as s:
        good = UplinkRecord(make_uplink(1), [], raw=b"1")
        bad = UplinkRecord(make_uplink(2, dedup="bad"), [], raw=b"2")
        with pytest.raises(StoreError, match="cannot store uplink bad"):
            with s.batch():
                s.record_uplinks([good, bad])
        assert s.event_count("up") == 0  # the batch is all or nothing
        assert s.record_uplinks([good]) == [True]
