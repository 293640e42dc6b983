"""One page of the fleet for the status page: ``GET /api/overview``, one request per refresh.

The status page used to read ``/api/devices`` and then one ``/api/history`` per device: 20,003 requests
per refresh at 20,000 devices, more than a browser keeps in flight. This module answers everything the
page draws in one response, whatever the fleet size:

* store totals (as ``/api/summary``) plus how many devices are silent, on a low battery, have lost
  uplinks or have dead letters;
* the devices matching a search (``q``: name, DevEUI, tag keys and values) and filters (``role``,
  ``tag=key:value``, ``flag=silent|low_battery|lost|dead_letters``, comma-separated flags all hold),
  sorted (``sort``, ``order``) and cut to one page (``offset``, ``limit`` <= :data:`MAX_PAGE`);
* for the devices of that page only, their recent history (sparklines) from
  :func:`gateway.service.api.history.device_history`;
* the facets the filters offer (roles, districts) and the newest dead letters.

A device's **usual interval** is its configured one: the tag ``uplink_interval_s`` (written by
``citynode provision`` into the device profile's tags, which ChirpStack merges into every event's
``deviceInfo.tags``) or ``interval`` (seconds). It is never inferred from the gaps between uplinks: a
sped-up demo would otherwise make every node "silent" a minute after it ended. A device without a
configured interval is never flagged silent. Silent = no uplink for :data:`SILENT_AFTER` intervals.

The device list is read whole (one scan of the ``devices`` table, about 0.1 s at 20,000
devices) and filtered here, so the same code serves SQLite and PostgreSQL through the store's public
methods and its one query method.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.service.api.history import device_history, uplinks_since
from gateway.service.store import Store, format_time, parse_time

__all__ = [
    "FLAGS",
    "LOW_BATTERY_V",
    "MAX_PAGE",
    "SILENT_AFTER",
    "SORTS",
    "OverviewQuery",
    "configured_interval",
    "overview",
]

MAX_PAGE = 100  # devices per page
MAX_POINTS = 120  # sparkline points per field on the page
LOW_BATTERY_V = 3.3  # a Li-ion cell below this has hours to days left
SILENT_AFTER = 3  # usual intervals without an uplink
FLAGS = ("silent", "low_battery", "lost", "dead_letters")
SORTS = ("name", "dev_eui", "role", "last_seen", "battery", "fcnt_gaps", "rssi", "uplinks")
INTERVAL_TAGS = ("uplink_interval_s", "interval")
_FACET_LIMIT = 200


@dataclass(frozen=True)
class OverviewQuery:
    """What one page of the status page asks for; :meth:`from_params` validates query parameters."""

    q: str = ""
    role: str = ""
    tag: tuple[str, str] | None = None  # (key, value)
    flags: tuple[str, ...] = ()
    sort: str = "name"
    descending: bool = False
    offset: int = 0
    limit: int = 25
    points: int = 30
    dead_letters: int = 5

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> OverviewQuery:
        """Raises ``ValueError`` naming the parameter and what it takes."""

        def number(name: str, default: int, hi: int, lo: int = 0) -> int:
            text = params.get(name)
            if text is None or text == "":
                return default
            try:
                value = int(text)
            except ValueError:
                value = lo - 1
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer {lo}..{hi}")
            return value

        flags = tuple(f for f in (params.get("flag") or "").split(",") if f)
        unknown = [f for f in flags if f not in FLAGS]
        if unknown:
            raise ValueError(f"flag must be one or more of {', '.join(FLAGS)} (got {unknown[0]!r})")
        sort = params.get("sort") or "name"
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}")
        order = params.get("order") or "asc"
        if order not in ("asc", "desc"):
            raise ValueError("order must be asc or desc")
        tag = None
        if params.get("tag"):
            key, sep, value = params["tag"].partition(":")
            if not sep or not key:
                raise ValueError("tag must be key:value, e.g. district:altstadt")
            tag = (key, value)
        return cls(
            q=(params.get("q") or "").strip()[:200],
            role=(params.get("role") or "").strip(),
            tag=tag,
            flags=flags,
            sort=sort,
            descending=order == "desc",
            offset=number("offset", 0, 10_000_000),
            limit=number("limit", 25, MAX_PAGE, 1),
            points=number("points", 30, MAX_POINTS, 1),
            dead_letters=number("deadletters", 5, 100),
        )


def configured_interval(tags: Mapping[str, str]) -> int | None:
    """The device's configured uplink interval in seconds from its tags, or None."""
    for key in INTERVAL_TAGS:
        text = tags.get(key)
        if text:
            try:
                seconds = int(float(text))
            except ValueError:
                continue
            if seconds > 0:
                return seconds
    return None


def _dead_letter_counts(store: Store) -> dict[str, int]:
    rows = store.query(  # the store's one query method, shared by both backends (see history.py)
        "SELECT dev_eui, COUNT(*) FROM dead_letters WHERE dev_eui IS NOT NULL GROUP BY dev_eui", ()
    )
    return {str(r[0]): int(r[1]) for r in rows}


@dataclass(frozen=True)
class _Row:
    """What filtering and sorting need of a device; the page's rows are read in full afterwards."""

    dev_eui: str
    name: str
    tags: Mapping[str, str]
    role: str | None
    last_seen: datetime | None
    battery: float | None
    fcnt_gaps: int
    last_rssi: int | None
    uplinks: int


def _rows(store: Store) -> list[_Row]:
    # A lean read of the devices table: Store.devices() builds a full Device per row (about 0.2 s at
    # 20,000 devices); here tag sets (shared by most devices of a profile) are parsed once each.
    parsed: dict[str, dict[str, str]] = {}
    out: list[_Row] = []
    for r in store.query(
        "SELECT dev_eui, name, tags, role, last_seen, battery, fcnt_gaps, last_rssi, uplinks FROM devices", ()
    ):
        tags_text = r[2] if isinstance(r[2], str) else json.dumps(r[2] or {})
        tags = parsed.get(tags_text)
        if tags is None:
            tags = parsed[tags_text] = json.loads(tags_text or "{}")
        seen = r[4]
        if isinstance(seen, str):
            seen = parse_time(seen)
        # Its role: the provisioned one (tag "role"), else the type of its last decoded message.
        role = tags.get("role") or r[3]
        out.append(_Row(str(r[0]), r[1] or "", tags, role, seen, r[5], int(r[6] or 0), r[7], int(r[8] or 0)))
    return out


def _flags(device: _Row, now: datetime, dead: Mapping[str, int]) -> dict[str, bool]:
    interval = configured_interval(device.tags)
    silent = False
    if interval and device.last_seen is not None:
        silent = now - device.last_seen > timedelta(seconds=max(SILENT_AFTER * interval, 60))
    return {
        "silent": silent,
        "low_battery": device.battery is not None and device.battery < LOW_BATTERY_V,
        "lost": device.fcnt_gaps > 0,
        "dead_letters": dead.get(device.dev_eui, 0) > 0,
    }


def _matches(device: _Row, query: OverviewQuery) -> bool:
    if query.role and (device.role or "") != query.role:
        return False
    if query.tag is not None and device.tags.get(query.tag[0]) != query.tag[1]:
        return False
    if query.q:
        needle = query.q.lower()
        if needle in device.name.lower() or needle in device.dev_eui:
            return True
        return any(needle in f"{k}:{v}".lower() for k, v in device.tags.items())
    return True


def _sort_key(sort: str) -> Any:
    # (missing, value): devices without the value go last in either order
    if sort == "name":
        return lambda d: (False, (d.name or d.dev_eui).lower())
    if sort == "last_seen":
        return lambda d: (d.last_seen is None, d.last_seen.timestamp() if d.last_seen else 0.0)
    if sort == "battery":
        return lambda d: (d.battery is None, d.battery or 0.0)
    if sort == "rssi":
        return lambda d: (d.last_rssi is None, d.last_rssi or 0)
    if sort == "role":
        return lambda d: (d.role is None, d.role or "")
    return lambda d: (False, getattr(d, sort))


def overview(store: Store, query: OverviewQuery, now: datetime) -> dict[str, Any]:
    """The JSON body of ``/api/overview`` for ``query`` at ``now`` (UTC).

    Raises :class:`gateway.service.store.StoreError` when the store cannot be read.
    """
    devices = _rows(store)
    dead = _dead_letter_counts(store)
    flagged = {d.dev_eui: _flags(d, now, dead) for d in devices}
    totals = store.counts()
    totals["uplinks_last_minute"] = uplinks_since(store, now - timedelta(minutes=1))
    for flag in FLAGS:
        totals[f"{flag}_devices"] = sum(1 for f in flagged.values() if f[flag])
    roles = sorted({d.role for d in devices if d.role})
    districts: dict[str, int] = {}
    for d in devices:
        district = d.tags.get("district")
        if district:
            districts[district] = districts.get(district, 0) + 1
    matched = [d for d in devices if _matches(d, query) and all(flagged[d.dev_eui][f] for f in query.flags)]
    key = _sort_key(query.sort)
    present = [d for d in matched if not key(d)[0]]
    missing = [d for d in matched if key(d)[0]]
    present.sort(key=key, reverse=query.descending)
    matched = present + missing
    rows = []
    page = matched[query.offset : query.offset + query.limit]
    versions = store.firmware_versions([d.dev_eui for d in page])
    for d in page:
        device = store.device(d.dev_eui)
        if device is None:  # removed (pruned) between the two reads
            continue
        rows.append(
            {
                **device.to_json(),
                "firmware": versions.get(d.dev_eui),  # the app version of its newest device_status
                "interval_s": configured_interval(device.tags),
                "flags": flagged[d.dev_eui],
                "dead_letter_count": dead.get(d.dev_eui, 0),
                "history": device_history(store, d.dev_eui, query.points).to_json(),
            }
        )
    newest_dead = store.dead_letters(query.dead_letters) if query.dead_letters else []
    return {
        "time": format_time(now),
        "totals": totals,
        "matched": len(matched),
        "offset": query.offset,
        "limit": query.limit,
        "devices": rows,
        "roles": roles,
        "districts": [name for name, _ in sorted(districts.items(), key=lambda kv: (-kv[1], kv[0]))][
            :_FACET_LIMIT
        ],
        "dead_letters": [_dead_letter_json(dl) for dl in newest_dead],
    }


def _dead_letter_json(dl: Any) -> dict[str, Any]:
    return {
        "id": dl.id,
        "received_at": format_time(dl.received_at),
        "source": dl.source,
        "reason": dl.reason,
        "dev_eui": dl.dev_eui,
    }
