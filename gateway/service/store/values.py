"""What the store hands out and takes in: plain values, the store's error, and its time format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.contract.records import RadioMeta, Reading, Uplink
from gateway.errors import CitynodeError, ConfigError

__all__ = [
    "DeadLetter",
    "Device",
    "DeviceUpdate",
    "PruneResult",
    "StoreError",
    "StoredEvent",
    "StoredReading",
    "UplinkRecord",
    "format_time",
    "now",
    "parse_time",
]


class StoreError(CitynodeError):
    """The store cannot be opened or written (disk full, newer schema, corrupt file)."""


@dataclass(frozen=True)
class DeadLetter:
    """Something the gateway received but could not turn into readings, with the reason why."""

    id: int
    received_at: datetime  # when the gateway received it (not a time the body claims)
    source: str  # e.g. "mqtt", "http", "amqp", "decode", "chirpstack-log"
    reason: str
    raw: bytes | str  # exactly what was received (str when it arrived as text)
    dev_eui: str | None = None


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`Store.prune` deleted (or, on a dry run, would delete)."""

    readings: int
    events: int
    dead_letters: int
    kept_undelivered: int  # readings older than the cutoff kept because a sink has not delivered them


@dataclass(frozen=True)
class Device:
    """A device as the gateway knows it, with link and frame-counter health."""

    dev_eui: str
    name: str = ""
    application_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    role: str | None = None  # the message type of its last decoded uplink, e.g. "air_quality"
    last_fcnt: int | None = None
    fcnt_gaps: int = 0  # uplinks lost: FCnt values never seen
    resets: int = 0  # FCnt went backwards (reboot without persisted counters, or rejoin)
    joins: int = 0
    uplinks: int = 0
    last_seen: datetime | None = None
    last_rssi: int | None = None  # dBm, best gateway
    last_snr: float | None = None  # dB, best gateway
    battery: float | None = None  # V, from the last reading carrying "battery"
    margin: int | None = None  # dB, from the last ChirpStack status event
    last_event: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "dev_eui": self.dev_eui,
            "name": self.name,
            "application_id": self.application_id,
            "tags": dict(self.tags),
            "role": self.role,
            "last_fcnt": self.last_fcnt,
            "fcnt_gaps": self.fcnt_gaps,
            "resets": self.resets,
            "joins": self.joins,
            "uplinks": self.uplinks,
            "last_seen": format_time(self.last_seen) if self.last_seen else None,
            "last_rssi": self.last_rssi,
            "last_snr": self.last_snr,
            "battery": self.battery,
            "margin": self.margin,
            "last_event": self.last_event,
        }


@dataclass(frozen=True)
class DeviceUpdate:
    """What a non-uplink event (join, status, ack, txack, log) changes on a device row."""

    dev_eui: str
    name: str = ""
    application_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    joined: bool = False  # a join resets the frame counter: the next uplink starts at 0
    battery_level: float | None = None  # %, ChirpStack status event (not volts: kept apart)
    margin: int | None = None  # dB


@dataclass(frozen=True)
class StoredReading:
    """A reading with its position in the reading log and the radio metadata of its uplink."""

    id: int
    reading: Reading
    radio: RadioMeta

    def to_json(self) -> dict[str, Any]:
        r = self.reading
        return {
            "id": self.id,
            "dev_eui": r.dev_eui,
            "device_name": r.device_name,
            "message_type": r.message_type,
            "time": format_time(r.time),
            "field": r.field,
            "value": r.value,
            "unit": r.unit,
            "unit_code": r.unit_code,
            "deduplication_id": r.deduplication_id,
            "f_cnt": r.f_cnt,
            "tags": dict(r.tags),
            "rssi": self.radio.rssi,
            "snr": self.radio.snr,
            "gateway_id": self.radio.gateway_id,
            "spreading_factor": self.radio.spreading_factor,
            "frequency": self.radio.frequency,
            "gateway_count": self.radio.gateway_count,
        }


@dataclass(frozen=True)
class StoredEvent:
    """A stored ChirpStack event with its body exactly as the gateway received it
    (:meth:`gateway.service.store.Store.raw_event`)."""

    id: int
    kind: str  # up, join, status, ack, txack, log
    dev_eui: str | None
    deduplication_id: str | None
    received_at: datetime
    encoding: str  # of the body: json | protobuf ('' when not known)
    raw: bytes | None  # None: the event was stored without its body


@dataclass(frozen=True, slots=True)
class UplinkRecord:
    """One uplink for :meth:`Store.record_uplinks`: the arguments of :meth:`Store.record_uplink`."""

    uplink: Uplink
    readings: Sequence[Reading]
    raw: bytes | None = None
    encoding: str = ""
    role: str | None = None
    dead_letter_reason: str | None = None
    dead_letter_source: str = "decode"
    # when the gateway received the event: the dead letter's time (None: now). Not uplink.received_at,
    # which is the network's time as the event states it.
    gateway_received_at: datetime | None = None


def format_time(value: datetime) -> str:
    """UTC, fixed width, microseconds, ``Z``: sorts lexicographically in SQL."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat with timespec is several times faster than strftime; years < 1000 never occur.
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time`; also accepts any ISO 8601 time (naive = UTC)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def now() -> datetime:
    """The gateway's clock, UTC."""
    return datetime.now(UTC)
