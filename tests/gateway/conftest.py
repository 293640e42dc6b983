"""Fixtures of the gateway tests: a fresh SQLite store, uplink builders, and a real mosquitto broker.

The ``mosquitto`` fixture starts the real broker once per test session on free ports (plain and TLS,
with a throw-away CA made with ``cryptography``); the ``store`` fixture is a fresh store per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.records import RadioMeta, Reading, Uplink
from gateway.store import Store

T0 = datetime(2026, 5, 4, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A new, empty store in the test's temporary directory."""
    s = Store.open(tmp_path / "gateway.sqlite")
    yield s
    s.close()


def make_uplink(
    f_cnt: int = 1,
    dedup: str | None = None,
    dev_eui: str = "0004a30b001c0530",
    f_port: int = 10,
    data: bytes = b"",
    received_at: datetime = T0,
    rssi: int | None = -87,
    snr: float | None = 7.5,
) -> Uplink:
    """An :class:`Uplink` as the ChirpStack parser would produce it."""
    return Uplink(
        dev_eui=dev_eui,
        device_name=f"node-{dev_eui[-4:]}",
        application_id="3f1c1a34-5d6c-4b61-8c4e-2f9a3c1b7d20",
        f_port=f_port,
        f_cnt=f_cnt,
        data=data,
        received_at=received_at,
        deduplication_id=dedup or f"dedup-{dev_eui}-{f_cnt}",
        tags={"district": "altstadt"},
        radio=RadioMeta(rssi=rssi, snr=snr, gateway_id="0016c001ff10a235", spreading_factor=7,
                        frequency=868100000, gateway_count=2),
    )


def make_reading(uplink: Uplink, field: str = "temperature", value: object = 21.5,
                 unit: str | None = "°C", unit_code: str | None = "CEL") -> Reading:
    return Reading(
        dev_eui=uplink.dev_eui,
        device_name=uplink.device_name,
        message_type="air_quality",
        time=uplink.received_at,
        field=field,
        value=value,
        unit=unit,
        unit_code=unit_code,
        deduplication_id=uplink.deduplication_id,
        f_cnt=uplink.f_cnt,
        tags=dict(uplink.tags),
    )


@pytest.fixture(name="make_uplink")
def _make_uplink_fixture():
    """The :func:`make_uplink` builder (test modules cannot import conftest under importlib mode)."""
    return make_uplink


@pytest.fixture(name="make_reading")
def _make_reading_fixture():
    return make_reading
