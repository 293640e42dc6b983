"""What every data-platform sink promises the delivery worker.

A sink receives a batch of ``(reading_id, Reading)`` rows taken from the store's append-only readings
table, in id order, and answers with a :class:`DeliveryResult`:

* the whole batch failed (platform down, timeout, 5xx, bad credentials): raise
  :class:`gateway.errors.SinkError` with ``retryable=True`` and nothing of the batch counts as delivered;
  the worker backs off and sends the same rows again;
* the whole batch was refused for good (a 4xx about the request itself): raise ``SinkError`` with
  ``retryable=False``; the worker splits the batch to isolate the bad rows and dead-letters only those;
* some rows failed: return them in ``failures``, each ``retryable`` or not; every row not listed counts
  as delivered.

Sinks own their network connections (opened lazily, closed by :meth:`Sink.aclose`) and must not keep
rows in memory between calls: the cursor in the store is the only state that matters.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from gateway.contract.records import Reading

__all__ = ["DeliveryResult", "Row", "RowFailure", "Sink", "group_uplinks", "isoformat_utc", "reading_to_json"]

#: One outbox row: the store's reading id and the reading.
Row = tuple[int, Reading]


@dataclass(frozen=True)
class RowFailure:
    """One row a sink could not deliver, with the platform's reason."""

    reading_id: int
    reason: str
    retryable: bool = False


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of one :meth:`Sink.deliver` call that reached the platform.

    ``failures`` lists the rows that did not arrive; every other row of the batch did.
    """

    failures: tuple[RowFailure, ...] = field(default=())

    @classmethod
    def ok(cls) -> DeliveryResult:
        return cls()

    def failed_ids(self) -> set[int]:
        return {f.reading_id for f in self.failures}


class Sink(abc.ABC):
    """A destination for readings. Subclasses set ``name`` (unique per gateway; it keys the cursor)."""

    name: str

    @abc.abstractmethod
    async def deliver(self, batch: Sequence[Row]) -> DeliveryResult:
        """Send ``batch`` (non-empty, ascending ids); raise ``SinkError`` when the whole batch failed."""

    async def aclose(self) -> None:  # noqa: B027  (optional hook: most sinks hold nothing to close)
        """Release connections. Safe to call twice; the sink may be used again afterwards (reconnects)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def isoformat_utc(t: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix and millisecond precision (what NGSI-LD and STA expect).

    A naive datetime is taken to be UTC (the store keeps UTC).
    """
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def group_uplinks(batch: Sequence[Row]) -> list[list[Row]]:
    """Rows grouped per observation: same device, message type, uplink and reading time.

    One uplink carrying a batch of readings (``offset_s``) gives one group per reading time. Groups
    keep the order of their first row, rows keep batch order.
    """
    groups: dict[tuple[str, str, str, datetime], list[Row]] = {}
    for rid, r in batch:
        groups.setdefault((r.dev_eui, r.message_type, r.deduplication_id, r.time), []).append((rid, r))
    return list(groups.values())


def reading_to_json(reading: Reading) -> dict[str, Any]:
    """The normalised JSON form of one reading (dead-letter ``raw`` and MQTT republish use it)."""
    return {
        "devEui": reading.dev_eui,
        "deviceName": reading.device_name,
        "type": reading.message_type,
        "time": isoformat_utc(reading.time),
        "field": reading.field,
        "value": reading.value,
        "unit": reading.unit,
        "unitCode": reading.unit_code,
        "deduplicationId": reading.deduplication_id,
        "fCnt": reading.f_cnt,
        "tags": dict(reading.tags),
    }
