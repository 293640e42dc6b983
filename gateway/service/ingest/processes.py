"""More MQTT ingest processes for one gateway: ``[mqtt] processes = N``.

One Python process parses, decodes and stores about 10,000 uplinks/s here, bound by one core (the
interpreter runs one thread at a time). With ``processes = N`` the gateway starts N - 1 more
processes that do nothing but the MQTT ingest: each is one more member of ``shared_group``'s shared
subscription, with its own client id (``<client_id>-<n>``, stable, so the broker keeps its persistent
session across restarts) and its own connection to the same store (SQLite writers take turns through
the store's lock file; PostgreSQL through its advisory lock). The first process keeps everything
else: its own MQTT ingest, the HTTP ingest and API, the sinks (which find the other processes'
readings in the store's outbox like any other).

Each worker reports its counters and whether it is connected once a second through a pipe; the
gateway's ``/metrics`` adds them to its own and ``/health`` requires every worker connected. A worker
that exits is restarted after 1 s, doubling to 30 s while it keeps failing (what it had received and
not acknowledged, the broker delivers again). On shutdown each worker gets SIGTERM, finishes the
batch it is storing, acknowledges it and leaves (SIGKILL after ``_STOP_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from gateway.service.metrics import Metrics, Sample

if TYPE_CHECKING:
    from gateway.service.config import Config

__all__ = ["MqttWorkers"]

log = logging.getLogger("citynode.ingest.processes")

_REPORT_S = 1.0
_BACKOFF_MIN_S = 1.0
_BACKOFF_MAX_S = 30.0
_STOP_TIMEOUT_S = 25.0  # then SIGKILL; within the 30 s the service gives its ingests to stop


@dataclass
class _Worker:
    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    counters: tuple[Sample, ...] = ()  # its latest report
    connected: bool = False
    restart_at: float = 0.0
    backoff: float = _BACKOFF_MIN_S
    started_at: float = 0.0


class MqttWorkers:
    """Runs ``count`` extra MQTT ingest processes until :meth:`stop` (an ingest of the service)."""

    def __init__(self, config: Config, count: int) -> None:
        self.config = config
        self._workers = [_Worker(index) for index in range(1, count + 1)]
        self._retired: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._counters_lock = threading.Lock()  # /metrics reads counters from another thread
        self._stopping = asyncio.Event()
        self._context = multiprocessing.get_context("spawn")  # no fork of a running event loop

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Start the workers, restart those that exit, and stop them all on :meth:`stop`."""
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                for worker in self._workers:
                    self._read_reports(worker)
                    if worker.process is not None and not worker.process.is_alive():
                        self._exited(worker, now)
                    if worker.process is None and now >= worker.restart_at:
                        try:
                            self._start(worker)
                        except OSError as exc:  # no memory, no processes left: try again later
                            log.error(
                                "cannot start an mqtt ingest process",
                                extra={"worker": worker.index, "error": str(exc), "retry_s": worker.backoff},
                            )
                            worker.restart_at = now + worker.backoff
                            worker.backoff = min(worker.backoff * 2, _BACKOFF_MAX_S)
                try:
                    await asyncio.wait_for(self._stopping.wait(), _REPORT_S / 2)
                except TimeoutError:
                    pass
        finally:
            await asyncio.to_thread(self._stop_all)

    # -- what the service shows -----------------------------------------------------------------------

    def counters(self) -> Iterable[Sample]:
        """Every worker's counters, those of exited workers included (for :class:`Metrics`)."""
        with self._counters_lock:
            totals = dict(self._retired)
            reports = [worker.counters for worker in self._workers]
        for counters in reports:
            for name, labels, value in counters:
                key = (name, tuple(sorted(labels.items())))
                totals[key] = totals.get(key, 0.0) + value
        return [(name, dict(labels), value) for (name, labels), value in totals.items()]

    def health(self) -> str | None:
        """None when every worker is connected to the broker, else which are not."""
        down = [str(w.index) for w in self._workers if not (w.connected and _alive(w.process))]
        return f"mqtt ingest process {', '.join(down)} not connected" if down else None

    # -- supervision ----------------------------------------------------------------------------------

    def _start(self, worker: _Worker) -> None:
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker_main,
            args=(self.config, worker.index, send),
            name=f"citynode-mqtt-{worker.index}",
            daemon=True,  # never outlives the gateway
        )
        try:
            process.start()
        except BaseException:
            receive.close()
            raise
        finally:
            send.close()  # the child holds its end; EOF here when it is gone
        worker.process, worker.conn, worker.started_at = process, receive, time.monotonic()
        log.info("mqtt ingest process started", extra={"worker": worker.index, "pid": process.pid})

    def _read_reports(self, worker: _Worker) -> None:
        conn = worker.conn
        try:
            while conn is not None and conn.poll():
                counters, connected = conn.recv()
                with self._counters_lock:
                    worker.counters, worker.connected = counters, connected
        except (EOFError, OSError):
            pass  # it exited; the next check of the process sees it

    def _exited(self, worker: _Worker, now: float) -> None:
        assert worker.process is not None
        code = worker.process.exitcode
        self._retire(worker)
        if now - worker.started_at > _BACKOFF_MAX_S:
            worker.backoff = _BACKOFF_MIN_S  # it ran a good while: start over
        log.error(
            "mqtt ingest process exited, restarting",
            extra={"worker": worker.index, "exit_code": code, "retry_s": worker.backoff},
        )
        worker.restart_at = now + worker.backoff
        worker.backoff = min(worker.backoff * 2, _BACKOFF_MAX_S)

    def _retire(self, worker: _Worker) -> None:
        """Keep an exited worker's counters (a restarted one counts from zero) and forget the process."""
        self._read_reports(worker)  # its last report, sent just before it left
        with self._counters_lock:
            for name, labels, value in worker.counters:
                key = (name, tuple(sorted(labels.items())))
                self._retired[key] = self._retired.get(key, 0.0) + value
            worker.counters, worker.connected = (), False
        if worker.conn is not None:
            worker.conn.close()
        if worker.process is not None and not worker.process.is_alive():
            worker.process.close()
        worker.process, worker.conn = None, None

    def _stop_all(self) -> None:
        running = [w for w in self._workers if w.process is not None and w.process.is_alive()]
        for worker in running:
            assert worker.process is not None
            worker.process.terminate()  # SIGTERM: finish the batch in hand, acknowledge it, leave
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for worker in running:
            assert worker.process is not None
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("mqtt ingest process did not stop, killing it", extra={"worker": worker.index})
                worker.process.kill()
                worker.process.join(5)
        for worker in self._workers:
            if worker.process is not None:
                self._retire(worker)


def _alive(process: BaseProcess | None) -> bool:
    try:
        return process is not None and process.is_alive()
    except ValueError:  # closed meanwhile by the supervisor
        return False


# ----------------------------------------------------------------------------------- in the worker


def _worker_main(config: Config, index: int, conn: Connection) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter)."""
    from gateway.service.runtime import configure_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the gateway decides
    configure_logging(config.log)
    asyncio.run(_worker(config, index, conn))


async def _worker(config: Config, index: int, conn: Connection) -> None:
    from gateway.service.ingest.mqtt import MqttIngest
    from gateway.service.pipeline import Pipeline
    from gateway.service.runtime import settle_garbage_collector
    from gateway.service.store import Store

    store = await asyncio.to_thread(Store.open, config.store.path, synchronous=config.store.synchronous)
    metrics = Metrics()
    mqtt = replace(config.mqtt, client_id=f"{config.mqtt.client_id}-{index}")
    ingest = MqttIngest(mqtt, Pipeline(store, config.decode, metrics), batch_size=mqtt.batch)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, ingest.stop)
    parent = os.getppid()
    task = asyncio.create_task(ingest.run())
    settle_garbage_collector()
    try:
        while not task.done():
            try:
                conn.send((tuple(metrics.samples()), ingest.connected.is_set()))
            except OSError:
                ingest.stop()  # the gateway is gone
            if os.getppid() != parent:
                ingest.stop()
            await asyncio.wait([task], timeout=_REPORT_S)
        try:
            conn.send((tuple(metrics.samples()), False))
        except OSError:
            pass
    finally:
        store.close()
        conn.close()
