"""Every stored uplink names its message shape (message type + the set of its field names): one shape per
distinct set whatever the readings' order, found again by later writes, and never left behind by a
write that is rolled back. On SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.service.store import Store, UplinkRecord

from ..conftest import make_reading, make_uplink

DEV = "0004a30b001c0530"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shaped(request, tmp_path):
    where = str(tmp_path / "gateway.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_schema")
    with Store.open(where) as store:
        yield store


def shape_rows(store: Store) -> dict[int, tuple[str, str, set[str]]]:
    """shape id -> (message type, fields key, the fields shape_fields lists for it)."""
    out = {}
    for ident, message_type, fields in store.query("SELECT id, message_type, fields FROM shapes"):
        carried = {str(r[0]) for r in store.query("SELECT field FROM shape_fields WHERE shape = ?", (ident,))}
        out[int(ident)] = (str(message_type), str(fields), carried)
    return out


def event_shapes(store: Store) -> list[int | None]:
    return [r[0] for r in store.query("SELECT shape FROM events ORDER BY id")]


def test_uplinks_with_the_same_fields_share_a_shape_whatever_the_order(shaped: Store) -> None:
    a, b, c = (make_uplink(n, dev_eui=DEV) for n in (1, 2, 3))
    status = make_uplink(4, dev_eui=DEV)
    shaped.record_uplinks([
        UplinkRecord(a, [make_reading(a), make_reading(a, "pm10", 9.5)]),
        UplinkRecord(b, [make_reading(b, "pm10", 9.0), make_reading(b), make_reading(b, "pm10", 9.1)]),
        UplinkRecord(c, [make_reading(c), make_reading(c, "battery", 3.6, "V", "VLT"), make_reading(c, "pm10", 1.0)]),
        UplinkRecord(status, [], role="device_status"),  # an uplink without readings still has a type
    ])  # fmt: skip
    shapes = event_shapes(shaped)
    assert shapes[0] == shapes[1] and len(set(shapes)) == 3
    rows = shape_rows(shaped)
    assert rows[shapes[0]] == ("air_quality", '["pm10","temperature"]', {"pm10", "temperature"})
    assert rows[shapes[2]] == ("air_quality", '["battery","pm10","temperature"]', {"battery", "pm10", "temperature"})
    assert rows[shapes[3]] == ("device_status", "[]", set())
    assert shaped.device_shapes(DEV) == {s: rows[s][0] for s in sorted(set(shapes))}
    # a later write finds them; a message type of its own is a shape of its own
    d = make_uplink(5, dev_eui=DEV)
    shaped.record_uplink(d, [replace(make_reading(d), message_type="climate"), make_reading(d, "pm10", 2.0)])
    e = make_uplink(6, dev_eui=DEV)
    shaped.record_uplink(e, [make_reading(e, "pm10", 3.0), make_reading(e)])
    assert len(shape_rows(shaped)) == 4 and event_shapes(shaped)[5] == shapes[0]


def test_other_events_have_no_shape(shaped: Store) -> None:
    from datetime import UTC, datetime

    from gateway.service.store import DeviceUpdate

    shaped.record_event("join", DeviceUpdate(DEV, joined=True), received_at=datetime.now(UTC), dedup_id="j1")
    assert event_shapes(shaped) == [None] and shaped.device_shapes(DEV) == {}


def test_a_shape_added_in_a_rolled_back_batch_is_added_again_with_its_fields(shaped: Store) -> None:
    a, b = make_uplink(1, dev_eui=DEV), make_uplink(2, dev_eui=DEV)
    with pytest.raises(RuntimeError), shaped.batch():
        shaped.record_uplink(a, [make_reading(a, "tilt", True)])
        assert len(shape_rows(shaped)) == 1
        raise RuntimeError("the batch fails after the shape was added")
    assert shape_rows(shaped) == {} and event_shapes(shaped) == []
    shaped.record_uplink(b, [make_reading(b, "tilt", False)])
    ((ident, row),) = shape_rows(shaped).items()
    assert row == ("air_quality", '["tilt"]', {"tilt"}) and event_shapes(shaped) == [ident]
    assert [r.reading.value for r in shaped.readings(DEV, "tilt")] == [False]
