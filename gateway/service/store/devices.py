"""The device registry: one row per DevEUI with its names, tags, FCnt health and last link.

Uplinks change a device through :func:`gateway.service.store.health.after_uplink` and one upsert
(:func:`write_uplinks`), whether they come one at a time or as a batch; other events (join, status,
ack, txack, log) through :func:`apply_event`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.service.store.backend import Backend, Cursor
from gateway.service.store.dialect import Dialect
from gateway.service.store.health import Health
from gateway.service.store.rows import multi_row, pow2_chunks
from gateway.service.store.values import Device, DeviceUpdate, parse_time

__all__ = ["DeviceRow", "apply_event", "device", "devices", "read_health", "write_uplinks"]

_HEALTH = "SELECT dev_eui, last_fcnt, fcnt_gaps, battery, role FROM devices WHERE dev_eui IN "

# One row per device and write: the counters add up, the rest is the newest uplink's.
_UPSERT_HEAD = (
    "INSERT INTO devices (dev_eui, name, application_id, tags, role, last_fcnt, fcnt_gaps, resets, "
    "uplinks, last_seen, last_rssi, last_snr, battery, last_event) VALUES "
)
_UPSERT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'up')"
_UPSERT_TAIL = (
    " ON CONFLICT (dev_eui) DO UPDATE SET name = excluded.name, application_id = excluded.application_id, "
    "tags = excluded.tags, role = excluded.role, last_fcnt = excluded.last_fcnt, "
    "fcnt_gaps = devices.fcnt_gaps + excluded.fcnt_gaps, resets = devices.resets + excluded.resets, "
    "uplinks = devices.uplinks + excluded.uplinks, last_seen = excluded.last_seen, "
    "last_rssi = excluded.last_rssi, last_snr = excluded.last_snr, battery = excluded.battery, last_event = 'up'"
)

_EVENT_UPSERT = (
    "INSERT INTO devices (dev_eui, name, application_id, tags, last_fcnt, joins, battery, "
    "margin, last_seen, last_event) VALUES (?, ?, ?, ?, NULL, ?, NULL, ?, ?, ?) "
    "ON CONFLICT (dev_eui) DO UPDATE SET "
    "name = CASE WHEN excluded.name != '' THEN excluded.name ELSE devices.name END, "
    "application_id = CASE WHEN excluded.application_id != '' "
    "  THEN excluded.application_id ELSE devices.application_id END, "
    "tags = CASE WHEN excluded.tags != '{}' THEN excluded.tags ELSE devices.tags END, "
    "last_fcnt = CASE WHEN ? THEN NULL ELSE devices.last_fcnt END, "
    "joins = devices.joins + excluded.joins, "
    "margin = COALESCE(excluded.margin, devices.margin), "
    "last_seen = excluded.last_seen, last_event = excluded.last_event"
)


@dataclass(slots=True)
class DeviceRow:
    """What a write does to one device: its newest uplink's columns and the counters to add."""

    dev_eui: str
    name: str
    application_id: str
    tags_json: str
    health: Health
    last_seen: str
    rssi: int | None
    snr: float | None
    lost: int = 0
    resets: int = 0
    uplinks: int = 0

    def values(self) -> tuple[Any, ...]:
        h = self.health
        return (
            self.dev_eui, self.name, self.application_id, self.tags_json, h.role, h.last_fcnt, self.lost,
            self.resets, self.uplinks, self.last_seen, self.rssi, self.snr, h.battery,
        )  # fmt: skip


def read_health(cur: Cursor, d: Dialect, dev_euis: Sequence[str]) -> dict[str, Health]:
    """The stored health of each of ``dev_euis`` that is known (row-locked on PostgreSQL)."""
    out: dict[str, Health] = {}
    for start in range(0, len(dev_euis), 500):
        chunk = dev_euis[start : start + 500]
        sql = d.sql(_HEALTH + "(" + ", ".join("?" * len(chunk)) + ")" + d.for_update)
        for row in cur.execute(sql, list(chunk)).fetchall():
            out[row[0]] = Health(last_fcnt=row[1], fcnt_gaps=row[2], battery=row[3], role=row[4])
    return out


def write_uplinks(cur: Cursor, d: Dialect, rows: Sequence[DeviceRow]) -> None:
    """Upsert the devices' rows after their uplinks (multi-row statements, a few sizes)."""
    for chunk in pow2_chunks(rows):
        sql = d.sql(multi_row(_UPSERT_HEAD, _UPSERT_ROW, len(chunk)) + _UPSERT_TAIL)
        cur.execute(sql, [v for row in chunk for v in row.values()])


def apply_event(cur: Cursor, d: Dialect, kind: str, update: DeviceUpdate, received: str) -> None:
    """A non-uplink event's change to its device (a join forgets the last FCnt)."""
    cur.execute(
        d.sql(_EVENT_UPSERT),
        (
            update.dev_eui,
            update.name,
            update.application_id,
            json.dumps(update.tags, sort_keys=True),
            1 if update.joined else 0,  # joins: a count
            update.margin,
            received,
            kind,
            update.joined,  # CASE WHEN: a boolean
        ),
    )


def devices(db: Backend) -> list[Device]:
    """Every device, by EUI."""
    return [_device(row) for row in db.query("SELECT * FROM devices ORDER BY dev_eui")]


def device(db: Backend, dev_eui: str) -> Device | None:
    rows = db.query(db.dialect.sql("SELECT * FROM devices WHERE dev_eui = ?"), (dev_eui,))
    return _device(rows[0]) if rows else None


def _device(row: Any) -> Device:
    return Device(
        dev_eui=row["dev_eui"],
        name=row["name"],
        application_id=row["application_id"],
        tags=json.loads(row["tags"]),
        role=row["role"],
        last_fcnt=row["last_fcnt"],
        fcnt_gaps=row["fcnt_gaps"],
        resets=row["resets"],
        joins=row["joins"],
        uplinks=row["uplinks"],
        last_seen=parse_time(row["last_seen"]) if row["last_seen"] else None,
        last_rssi=row["last_rssi"],
        last_snr=row["last_snr"],
        battery=row["battery"],
        margin=row["margin"],
        last_event=row["last_event"],
    )
