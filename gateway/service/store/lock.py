"""The writers' lock file of a SQLite store: ``<path>-writer.lock``, taken around every write transaction.

Several processes may write one SQLite file (gateway instances splitting a subscription, ``gateway
prune`` beside a running gateway). SQLite itself lets a writer that finds the file locked sleep and
retry (1, 2, 5, 10 ... 100 ms), so two busy gateways lose much of their time asleep. An ``flock`` on
the lock file hands the turn over the moment the other commits; SQLite's own locking still guards the
file against any other writer. The wait is bounded like SQLite's own busy timeout: a writer stuck with
the lock makes this one fail with :class:`StoreError` (not acknowledged, retried), not hang.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.service.store.values import StoreError

__all__ = ["FILE_MODE", "WriterLock"]

WRITER_WAIT_S = 30.0  # as PRAGMA busy_timeout
FILE_MODE = 0o600  # the store and its side files: readings and raw events are the operator's alone


class WriterLock:
    """The lock file of the store at ``path``; :meth:`held` is a no-op when it could not be made."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = _open(path)

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._fd is None:
            yield
            return
        _take(self._fd, self.path)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _open(path: str) -> int | None:
    """The descriptor of ``<path>-writer.lock``, or None when the store is in memory or the file cannot
    be made (SQLite's own locking then serialises)."""
    if path == ":memory:" or path.startswith("file:"):
        return None
    try:
        return os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError:
        return None


def _take(fd: int, path: str) -> None:
    """At once when free, else within a millisecond of its release (polled, so that the wait can end),
    at most :data:`WRITER_WAIT_S`."""
    deadline = time.monotonic() + WRITER_WAIT_S
    pause = 0.0001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise StoreError(
                    f"store {path}: another writer held {path}-writer.lock for {WRITER_WAIT_S:.0f} s"
                ) from None
            time.sleep(pause)  # releases the GIL
            pause = min(pause * 2, 0.001)
