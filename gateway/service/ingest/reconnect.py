"""What every broker ingest shares: a consume loop that reconnects with back-off, and its ``/health`` line.

A subclass implements :meth:`ReconnectingIngest._session` (connect, consume until the connection ends
or :meth:`stop`, acknowledging only what the store committed) and names its broker. Whatever ends a
session, the message in hand was not acknowledged, so the broker redelivers it; the loop records why
(:attr:`broker_error` or :attr:`store_error`, shown by ``/health``), waits 1, 2, 4 ... up to 30 s and
connects again. Expected failures (the broker, the network, the store) are one WARNING line; anything
else is a bug and is logged with its traceback, and the loop still goes on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from gateway.service.store import StoreError

__all__ = ["ReconnectingIngest", "BACKOFF_MIN", "BACKOFF_MAX"]

BACKOFF_MIN = 1.0  # s
BACKOFF_MAX = 30.0  # s


class ReconnectingIngest:
    """Base of the MQTT and AMQP ingests: :meth:`run`, :meth:`stop` and :meth:`problem`."""

    #: Short name in log messages ("mqtt", "amqp").
    label: ClassVar[str]
    #: Exceptions that end a session in the normal course of things (besides :class:`StoreError`).
    expected_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError,)
    #: First wait before reconnecting, doubled after each failed session up to :data:`BACKOFF_MAX`.
    backoff_min: float = BACKOFF_MIN

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self.connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self.handled = 0
        self.broker_error: str | None = None  # why the last session ended, if it was the broker
        self.store_error: str | None = None  # the store's error until a commit succeeds again

    def broker_name(self) -> str:
        """The broker as ``/health`` names it, e.g. ``broker host:1883``."""
        raise NotImplementedError

    def log_extra(self) -> dict[str, Any]:
        """Fields added to the "session ended" warning."""
        return {}

    async def _session(self) -> None:
        raise NotImplementedError

    def problem(self) -> str | None:
        """For ``/health``: why the broker connection is down (the store's failures are :attr:`store_error`)."""
        if self.connected.is_set() or (self.store_error and not self.broker_error):
            # between sessions because the store failed: /health names the store, not the broker
            return None
        where = self.broker_name()
        return f"{where}: {self.broker_error}" if self.broker_error else f"not connected to {where}"

    def stop(self) -> None:
        """Finish the messages in hand, then leave (unacknowledged messages stay with the broker)."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; reconnect with back-off after any failure."""
        backoff = self.backoff_min
        while not self._stopping.is_set():
            try:
                await self._session()
                backoff = self.backoff_min
            except Exception as exc:
                # The message in hand was not acknowledged: the broker redelivers it.
                self.connected.clear()
                if isinstance(exc, StoreError):
                    self.store_error, self.broker_error = str(exc), None
                else:
                    self.broker_error = str(exc) or type(exc).__name__
                if isinstance(exc, (StoreError, *self.expected_errors)):
                    extra = {**self.log_extra(), "error": str(exc) or type(exc).__name__, "retry_s": backoff}
                    self._log.warning(f"{self.label} session ended, retrying", extra=extra)
                else:  # a bug, not bad input (bad input becomes dead letters): say so loudly
                    self._log.exception(
                        f"{self.label} ingest failed unexpectedly, retrying", extra={"retry_s": backoff}
                    )
                try:
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, BACKOFF_MAX)
        self.connected.clear()
