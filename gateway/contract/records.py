"""Values that travel between the gateway's stages: a received uplink and its normalised readings.

``Uplink`` is what ingest hands to processing (one ChirpStack ``up`` event, already de-duplicated);
``Reading`` is one unit-labelled measurement, the unit every store and sink consumes.

They are values: nothing changes one after it was made. They are not ``frozen`` dataclasses because
the ingest makes several per uplink (a frozen dataclass sets each field through
``object.__setattr__``, about 2 µs per ``Reading`` against 0.4 µs with ``slots``; bench/RESULTS.md,
gateway throughput).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["RadioMeta", "Uplink", "Reading"]


@dataclass(slots=True)
class RadioMeta:
    """Link quality of one uplink, for network health (best gateway)."""

    rssi: int | None = None  # dBm
    snr: float | None = None  # dB
    gateway_id: str | None = None
    spreading_factor: int | None = None
    frequency: int | None = None  # Hz
    gateway_count: int = 0


@dataclass(slots=True)
class Uplink:
    """One device uplink as received from ChirpStack."""

    dev_eui: str  # 16 lower-case hex digits
    device_name: str
    application_id: str
    f_port: int
    f_cnt: int
    data: bytes
    received_at: datetime  # network receive time, UTC
    deduplication_id: str
    tags: dict[str, str] = field(default_factory=dict)
    radio: RadioMeta = field(default_factory=RadioMeta)
    device_profile_name: str = ""


@dataclass(slots=True)
class Reading:
    """One measurement of one field, labelled with its unit.

    ``time`` is the network receive time minus the reading's ``offset_s`` (batched readings).
    ``value`` is a number, a bool or a string (enums such as ``reset_cause``).
    """

    dev_eui: str
    device_name: str
    message_type: str  # the payload type, e.g. "air_quality"; it names the node's role
    time: datetime
    field: str  # e.g. "temperature", or "doors.1.boardings" for list items
    value: Any
    unit: str | None
    unit_code: str | None
    deduplication_id: str
    f_cnt: int
    tags: dict[str, str] = field(default_factory=dict)
