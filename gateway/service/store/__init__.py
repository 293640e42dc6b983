"""The gateway's store: uplinks, readings, devices, dead letters and sink cursors, on SQLite or PostgreSQL.

Everything the gateway keeps lives here: the raw ChirpStack events (de-duplicated), the normalised
readings (an append-only log whose ``id`` is the outbox position of every sink), the device registry
with frame-counter health, the dead letters and one delivery cursor per sink.

:class:`Store` (:mod:`.core`) is the API; ``Store.open(path)`` picks the backend, :mod:`.sqlite` or
:mod:`.postgres`, side by side on one statement layer (:mod:`.dialect`). The modules by concern are
listed in :mod:`.core`.
"""

from __future__ import annotations

from gateway.service.store.core import Store
from gateway.service.store.health import FcntStep, fcnt_step
from gateway.service.store.migrations import SCHEMA_VERSION
from gateway.service.store.values import (
    DeadLetter,
    Device,
    DeviceUpdate,
    PruneResult,
    StoredEvent,
    StoredReading,
    StoreError,
    UplinkRecord,
    format_time,
    parse_time,
)

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetter",
    "Device",
    "DeviceUpdate",
    "FcntStep",
    "PruneResult",
    "Store",
    "StoreError",
    "StoredEvent",
    "StoredReading",
    "UplinkRecord",
    "fcnt_step",
    "format_time",
    "parse_time",
]
