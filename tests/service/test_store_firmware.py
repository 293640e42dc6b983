"""The app version per device (``Store.firmware_versions``) reads the same on SQLite and PostgreSQL:
the ``firmware`` field of each device's newest device_status uplink, nothing for devices without one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.service.store import Store
from gateway.sim.sample import fill_sample_fleet

NOW = datetime(2026, 5, 4, 18, 0, 0, tzinfo=UTC)
PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        with Store.open(tmp_path / "g.sqlite") as s:
            yield s
        return
    psycopg = pytest.importorskip("psycopg")
    name = f"citynode_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({exc})")
    try:
        with Store.open(f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{name}") as s:
            yield s
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def test_the_newest_device_status_names_the_version(store: Store) -> None:
    fill_sample_fleet(store, now=NOW)
    versions = store.firmware_versions()
    for d in store.devices():
        sent = [r.reading.value for r in store.readings(d.dev_eui, "firmware", limit=10000)]
        assert versions.get(d.dev_eui) == (sent[-1] if sent else None), d.dev_eui
    some = sorted(versions)[:2]
    assert store.firmware_versions(some) == {e: versions[e] for e in some}
