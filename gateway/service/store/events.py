"""The event log: ``up`` events with their readings, and the other ChirpStack events.

One write path for uplinks, :func:`record_uplinks`, whether one uplink (the HTTP ingest) or a batch
(the MQTT and AMQP ingests) and on either backend: duplicates are looked up with one query, the
devices' health is read once and folded through :func:`gateway.service.store.health.after_uplink`
uplink by uplink, each uplink's shape (message type and field names, :mod:`.shapes`) is found once
per write, and events, readings and device rows go in as multi-row inserts. SQLite allocates
the event ids itself (it has one writer at a time and no sequence to keep in step); PostgreSQL
inserts each event row on its own to take its id from the sequence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.service.store import deadletters
from gateway.service.store.backend import Cursor
from gateway.service.store.devices import DeviceRow, apply_event, read_health, write_uplinks
from gateway.service.store.dialect import Dialect
from gateway.service.store.health import after_uplink, battery_of
from gateway.service.store.rawcodec import RawCodec
from gateway.service.store.rows import chunks, multi_row, pow2_chunks, reading_rows, uplink_event_values
from gateway.service.store.shapes import ShapeIds
from gateway.service.store.values import DeviceUpdate, UplinkRecord, format_time, now

__all__ = ["record_event", "record_uplinks"]

_UPLINK_COLUMNS = (
    "kind, dev_eui, received_at, dedup_id, encoding, raw, device_name, message_type, f_cnt, tags, rssi, snr, "
    "gateway_id, spreading_factor, frequency, gateway_count, shape"
)
_UPLINK_VALUES = "'up', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
_EVENT_INSERT_WITH_ID = f"INSERT INTO events (id, {_UPLINK_COLUMNS}) VALUES "
_EVENT_ROW_WITH_ID = f"(?, {_UPLINK_VALUES})"
_EVENT_INSERT_RETURNING = (
    f"INSERT INTO events ({_UPLINK_COLUMNS}) VALUES ({_UPLINK_VALUES}) ON CONFLICT DO NOTHING RETURNING id"
)
_READING_INSERT = "INSERT INTO reading_log (event_id, time, field, value, unit, unit_code) VALUES "
_READING_ROW = "(?, ?, ?, ?, ?, ?)"
_OTHER_EVENT_INSERT = (
    "INSERT INTO events (kind, dev_eui, received_at, dedup_id, encoding, raw) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id"
)


def record_uplinks(cur: Cursor, d: Dialect, records: Sequence[UplinkRecord], codec: RawCodec) -> list[bool]:
    """Store ``records`` in order inside the open transaction ``cur``; ``result[i]`` is False when
    record ``i`` was a duplicate (of a stored event or of an earlier record) and changed nothing.
    Raw events are stored compressed by ``codec``."""
    codec.begin(cur, d)
    shapes = ShapeIds(cur, d)
    seen = _stored_dedup_ids(cur, d, list({r.uplink.deduplication_id for r in records}))
    health = read_health(cur, d, list({r.uplink.dev_eui for r in records}))
    next_id = int(cur.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]) + 1 if d.bulk_ids else 0
    stored: list[bool] = []
    events: list[tuple[Any, ...]] = []
    readings: list[tuple[Any, ...]] = []
    dead: list[tuple[Any, ...]] = []
    rows: dict[str, DeviceRow] = {}
    times: dict[datetime, str] = {}  # formatted once per batch: an uplink's readings share its time
    tags_json_of: dict[tuple[tuple[str, str], ...], str] = {}  # a device's tags rarely change
    arrived = format_time(now())  # a dead letter's time: when the gateway got it, not the event's claim
    for r in records:
        up = r.uplink
        if up.deduplication_id in seen:
            stored.append(False)
            continue
        seen.add(up.deduplication_id)
        received = times.get(up.received_at)
        if received is None:
            received = times[up.received_at] = format_time(up.received_at)
        tags_key = tuple(up.tags.items())
        tags_json = tags_json_of.get(tags_key)
        if tags_json is None:
            tags_json = tags_json_of[tags_key] = json.dumps(up.tags, sort_keys=True)
        message_type = r.readings[0].message_type if r.readings else r.role
        raw, encoding = codec.encode(cur, d, r.raw, r.encoding)
        shape = shapes.of(message_type, r.readings)
        values = uplink_event_values(up, received, encoding, raw, message_type, tags_json, shape)
        if d.bulk_ids:
            event_id = next_id
            next_id += 1
            events.append((event_id, *values))
        else:
            row = cur.execute(d.sql(_EVENT_INSERT_RETURNING), values).fetchone()
            if row is None:  # stored since the lookup (cannot happen under the writers' lock)
                stored.append(False)
                continue
            event_id = int(row[0])
        stored.append(True)
        readings.extend(reading_rows(event_id, r.readings, received, times))
        change = after_uplink(health.get(up.dev_eui), up.f_cnt, battery_of(r.readings), r.role)
        health[up.dev_eui] = change.health
        device = rows.get(up.dev_eui)
        if device is None:
            device = rows[up.dev_eui] = DeviceRow(up.dev_eui, "", "", "", change.health, "", None, None)
        device.name, device.application_id, device.tags_json = up.device_name, up.application_id, tags_json
        device.health, device.last_seen, device.rssi, device.snr = change.health, received, up.radio.rssi, up.radio.snr
        device.lost += change.lost
        device.resets += 1 if change.reset else 0
        device.uplinks += 1
        if r.dead_letter_reason is not None:
            at = arrived if r.gateway_received_at is None else format_time(r.gateway_received_at)
            dead.append(deadletters.row(at, r.dead_letter_source, r.dead_letter_reason, up.data, up.dev_eui))
    for chunk in pow2_chunks(events):
        cur.execute(d.sql(multi_row(_EVENT_INSERT_WITH_ID, _EVENT_ROW_WITH_ID, len(chunk))), [v for e in chunk for v in e])
    for chunk in pow2_chunks(readings):
        cur.execute(d.sql(multi_row(_READING_INSERT, _READING_ROW, len(chunk))), [v for x in chunk for v in x])
    write_uplinks(cur, d, list(rows.values()))
    deadletters.insert_many(cur, d, dead)
    return stored


def _stored_dedup_ids(cur: Cursor, d: Dialect, dedup_ids: list[str]) -> set[str]:
    seen: set[str] = set()
    for chunk in chunks(dedup_ids, 500):
        marks = ", ".join("?" * len(chunk))
        sql = d.sql(f"SELECT dedup_id FROM events WHERE kind = 'up' AND dedup_id IN ({marks})")
        seen.update(row[0] for row in cur.execute(sql, list(chunk)).fetchall())
    return seen


def record_event(
    cur: Cursor,
    d: Dialect,
    kind: str,
    update: DeviceUpdate,
    received: str,
    dedup_id: str | None,
    raw: bytes | None,
    encoding: str,
    dead_letter: tuple[str, str] | None,
    codec: RawCodec,
) -> bool:
    """A non-uplink event and its change to the device; False when ``(kind, dedup_id)`` was stored."""
    codec.begin(cur, d)
    stored, column = codec.encode(cur, d, raw, encoding)
    row = cur.execute(
        d.sql(_OTHER_EVENT_INSERT), (kind, update.dev_eui or None, received, dedup_id, column, stored)
    ).fetchone()
    if row is None:
        return False
    if update.dev_eui:
        apply_event(cur, d, kind, update, received)
    if dead_letter is not None:
        source, reason = dead_letter
        arrived = format_time(now())  # the gateway's time, not the event's own
        deadletters.insert(cur, d, deadletters.row(arrived, source, reason, raw, update.dev_eui or None))
    return True
