"""The peer table: the citynode gateway next to the raw subscriber and two small scripts a team might write.

What one run does (``python bench/peers.py --n 20000 --rounds 3``, or ``make bench``):

* Builds N realistic ChirpStack v4 JSON ``up`` events once (``gateway_throughput.build_events``:
  ``object`` as the device's JS codec returns it, one to three gateways of radio metadata, the five
  citynode message types in turn, 6.4 readings per uplink).
* In each of ``--rounds`` rounds runs every contender once, in turn (interleaved, so the machine's
  other load falls on all of them alike), each against its own fresh mosquitto on a free port
  (``max_inflight_messages 1000``, ``max_queued_messages 0``), the N events published at QoS 1 as
  fast as one paho client can:

  - ``raw``: a paho subscriber that only counts (QoS 1, PUBACK on receipt): the limit of broker and
    client library on this machine;
  - ``gateway``: ``citynode gateway serve`` with the README's configuration (MQTT ingest, JSON,
    SQLite ``synchronous = FULL``, group commit of up to 500, HTTP API on);
  - ``commit_each``: ``bench/peer_commit_each.py`` (paho + cbor2 + sqlite3, one commit per message);
  - ``group_commit``: ``bench/peer_group_commit.py`` (the same, commit every 100, paho manual ack
    after the commit, a persistent session).

* Measures uplinks/s (all N stored, or counted, over last stored - first published), the ratio to the
  raw subscriber of the same round, CPU per uplink (the process's user + system CPU time during the run
  / N, from /proc; the gateway's all threads), disk per uplink (the database file after the process
  stopped and its WAL was checkpointed, / N), and reports the median of the rounds.
* Loss on a bad payload (once per contender, ``--loss-n`` events): one malformed body (truncated JSON)
  in the middle of the stream. The gateway stores it as a dead letter and carries on; the scripts raise
  in ``on_message`` and exit; the group-commit script is restarted once to show what its persistent
  session does with the bad message.

Nothing here asserts timings; ``tests/system/test_peers_memory_bench.py`` runs it with a tiny N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import gateway_throughput as gt  # noqa: E402  (after the sys.path line above)

CONTENDERS = ("raw", "gateway", "commit_each", "group_commit")
SCRIPTS = {"commit_each": HERE / "peer_commit_each.py", "group_commit": HERE / "peer_group_commit.py"}
LABELS = {
    "raw": "raw paho subscriber (the limit)",
    "gateway": "citynode gateway, README config",
    "commit_each": "paho + cbor2 + sqlite3 script, commit per message (`bench/peer_commit_each.py`)",
    "group_commit": "the same, commit every 100, ack after commit (`bench/peer_group_commit.py`)",
}
BAD_BODY = b'{"deduplicationId": "0badbad0-0000-4000-8000-000000000000", "deviceInfo": {"devEui": '
STORED_SQL = {  # how many distinct uplinks a contender's database holds
    "gateway": "SELECT count(*) FROM events WHERE kind = 'up'",
    "script": "SELECT count(*) FROM (SELECT DISTINCT dev_eui, f_cnt FROM readings)",
}


@dataclass
class Run:
    contender: str
    round: int
    n: int
    rate: float = 0.0  # uplinks/s
    cpu_us: float = 0.0  # CPU µs per uplink
    disk_bytes: float = 0.0  # database bytes per uplink (0 for the raw subscriber)
    peak_rss_mib: float = 0.0


@dataclass
class Loss:
    contender: str
    n: int  # events published, the bad one included
    stored: int
    dead_letters: int
    exited: bool  # the process ended (crashed) on the bad payload
    restart_stored: int = -1  # group_commit: uplinks stored after one restart (-1: not restarted)
    restart_exited: bool = False


# ---------------------------------------------------------------------------------------- one contender


def _checkpointed_size(db: Path) -> int:
    """Bytes of the SQLite file once its WAL is folded in (closing the last connection does that)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db.stat().st_size


def _count(db: Path, sql: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created yet


def _max_rowid(conn: sqlite3.Connection, table: str) -> int:
    try:
        return int(conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0])
    except sqlite3.Error:
        return 0


def _wait_stored(
    db: Path, table: str, proc: subprocess.Popen[bytes], publisher: threading.Thread, quiet_s: float
) -> float:
    """Poll the newest row id until the publisher is done and nothing was added for ``quiet_s`` (or the
    process exited); returns the time of the last change."""
    last_change = time.time()
    last = 0
    conn: sqlite3.Connection | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(gt.POLL_S)
        if conn is None and db.exists():
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        now = time.time()
        top = _max_rowid(conn, table) if conn is not None else 0
        if top != last:
            last, last_change = top, now
        elif not publisher.is_alive() and (now - last_change > quiet_s or proc.poll() is not None):
            break
    if conn is not None:
        conn.close()
    return last_change


def _start(
    contender: str, port: int, run_dir: Path, topic: str, wait_ready: bool = True
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start a gateway or a script subscribed to ``topic``; returns (process, database, config or log).
    ``wait_ready=False``: a script restarted on a persistent session may crash before it subscribes."""
    db = run_dir / f"{contender}.sqlite"
    log = run_dir / f"{contender}.log"
    if contender == "gateway":
        cfg = gt._gateway_config(run_dir, 0, port, "json", "FULL", db, "", topic)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "gateway", "serve", "--config", str(cfg)],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),
        )
        gt._wait_healthy(proc, cfg)
        return proc, db, cfg
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS[contender]), "127.0.0.1", str(port), str(db), topic],
        stdout=subprocess.PIPE,
        stderr=open(log, "wb"),
    )
    assert proc.stdout is not None
    if wait_ready and proc.stdout.readline().strip() != b"subscribed":
        raise RuntimeError(f"{contender} did not subscribe: {log.read_text(errors='replace')[-400:]}")
    return proc, db, log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _publisher(port: int, events: Sequence[tuple[str, str, bytes]], sent: dict[str, float]) -> threading.Thread:
    thread = threading.Thread(target=lambda: sent.update(gt.publish(port, events)))
    thread.start()
    return thread


def run_raw(port: int, events: Sequence[tuple[str, str, bytes]], round_: int) -> Run:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--raw-subscriber", str(port), "--n", str(len(events))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("raw subscriber did not start")
    sent = gt.publish(port, events)
    state = json.loads(proc.stdout.readline())
    proc.wait(30)
    if state["count"] < len(events):
        raise RuntimeError(f"raw subscriber got {state['count']} of {len(events)}")
    return Run(
        "raw", round_, len(events), rate=len(events) / (state["last"] - min(sent.values())),
        cpu_us=state["cpu_s"] / len(events) * 1e6, peak_rss_mib=state["peak_rss_mib"],
    )


def run_contender(
    contender: str, port: int, events: Sequence[tuple[str, str, bytes]], round_: int, workdir: Path
) -> Run:
    """One gateway or script run: start it, publish every event, wait until all are stored, measure."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{contender}-", dir=workdir))
    topic = f"application/{events[0][0].split('/')[1]}/device/+/event/up"
    proc, db, _ = _start(contender, port, run_dir, topic)
    try:
        pids = gt._tree([proc.pid])
        cpu_before = sum(gt._cpu_s(pid) for pid in pids)
        sent: dict[str, float] = {}
        publisher = _publisher(port, events, sent)
        table = "events" if contender == "gateway" else "readings"
        last = _wait_stored(db, table, proc, publisher, quiet_s=2.0)
        publisher.join()
        cpu = sum(gt._cpu_s(pid) for pid in pids) - cpu_before
        rss = max(gt._peak_rss_mib(pid) for pid in pids)
        stored = _count(db, STORED_SQL["gateway" if contender == "gateway" else "script"])
        if stored < len(events):
            raise RuntimeError(f"{contender}: only {stored} of {len(events)} stored (log in {run_dir})")
        n = len(events)
        run = Run(contender, round_, n, rate=n / (last - min(sent.values())), cpu_us=cpu / n * 1e6,
                  peak_rss_mib=rss)
    finally:
        _stop(proc)
    run.disk_bytes = _checkpointed_size(db) / len(events)
    shutil.rmtree(run_dir, ignore_errors=True)
    return run


def run_loss(contender: str, port: int, events: Sequence[tuple[str, str, bytes]], workdir: Path) -> Loss:
    """Publish ``events`` with one malformed body in the middle; what is stored, and does it survive."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"loss-{contender}-", dir=workdir))
    topic = f"application/{events[0][0].split('/')[1]}/device/+/event/up"
    middle = len(events) // 2
    stream = [*events[:middle], (events[middle][0], "bad", BAD_BODY), *events[middle:]]
    table = "events" if contender == "gateway" else "readings"
    sql = STORED_SQL["gateway" if contender == "gateway" else "script"]
    proc, db, _ = _start(contender, port, run_dir, topic)
    try:
        publisher = _publisher(port, stream, {})
        _wait_stored(db, table, proc, publisher, quiet_s=2.0)
        publisher.join()
        exited = proc.poll() is not None
        stored = _count(db, sql)
        dead = _count(db, "SELECT count(*) FROM dead_letters") if contender == "gateway" else 0
    finally:
        _stop(proc)
    loss = Loss(contender, len(stream), stored, dead, exited)
    if contender == "group_commit" and exited:  # what its persistent session brings back after a restart
        proc, db, _ = _start(contender, port, run_dir, topic, wait_ready=False)
        try:
            deadline = time.monotonic() + 5
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            loss.restart_exited = proc.poll() is not None
            loss.restart_stored = _count(db, sql)
        finally:
            _stop(proc)
    shutil.rmtree(run_dir, ignore_errors=True)
    return loss


def raw_subscriber_main(port: int, n: int) -> int:
    """Subprocess body: count N messages at QoS 1; print arrival times, CPU seconds and peak RSS."""
    import paho.mqtt.client as mqtt

    state: dict[str, float] = {"count": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()
    cpu_start = [0.0]

    def on_message(_c: object, _u: object, _m: object) -> None:
        now = time.time()
        if not state["count"]:
            state["first"] = now
        state["count"] += 1
        state["last"] = now
        if state["count"] >= n:
            done.set()

    def on_subscribe(*_a: object) -> None:
        cpu_start[0] = time.process_time()
        print("ready", flush=True)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peers-raw-{os.getpid()}")
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *_: c.subscribe("application/+/device/+/event/+", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(600)
    state["cpu_s"] = time.process_time() - cpu_start[0]
    state["peak_rss_mib"] = gt._peak_rss_mib(os.getpid())
    client.loop_stop()
    print(json.dumps(state), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------ rounds


def measure(
    n: int, rounds: int = 3, loss_n: int = 2000, contenders: Sequence[str] = CONTENDERS
) -> dict[str, object]:
    """Every contender once per round, each with its own broker; then the bad-payload runs."""
    events = gt.build_events(n, "json", seed=11)
    loss_events = gt.build_events(min(n, loss_n), "json", seed=12)
    runs: list[Run] = []
    losses: list[Loss] = []
    with tempfile.TemporaryDirectory(prefix="citynode-peers-") as tmp:
        workdir = Path(tmp)
        for round_ in range(rounds):
            for contender in contenders:
                broker = gt.Broker(Path(tempfile.mkdtemp(dir=workdir)), 1000)
                try:
                    if contender == "raw":
                        run = run_raw(broker.port, events, round_)
                    else:
                        run = run_contender(contender, broker.port, events, round_, workdir)
                finally:
                    broker.close()
                runs.append(run)
                print(f"  round {round_ + 1} {contender}: {run.rate:,.0f}/s, {run.cpu_us:.0f} CPU us/uplink, "
                      f"{run.disk_bytes / 1000:.2f} KB/uplink", file=sys.stderr)
        for contender in contenders:
            if contender == "raw":
                continue
            broker = gt.Broker(Path(tempfile.mkdtemp(dir=workdir)), 1000)
            try:
                losses.append(run_loss(contender, broker.port, loss_events, workdir))
            finally:
                broker.close()
    return {"n": n, "rounds": rounds, "runs": runs, "losses": losses, "profile": profile(min(n, 5000))}


PARSE = "gateway: parse and validate the whole event (msgspec types, duplicate keys)"
DECODE = "gateway: decode the payload (CBOR, the one-serialisation check, the schema)"
READINGS = "gateway: build the readings (units, tags, flattening)"
PREPARE_REST = "gateway: the rest of preparing (codec lookup, records, metrics)"
STORE = ("gateway: store a batch (dedup lookup, event row with the raw event and radio metadata, reading "
         "log, device row and FCnt health, indexes, commit)")


def profile(n: int = 5000, batch: int = 500, repeat: int = 3) -> dict[str, float]:
    """:func:`profile_once` ``repeat`` times; the least CPU of each step (the others' load only adds)."""
    runs = [profile_once(n, batch) for _ in range(repeat)]
    return {step: min(r[step] for r in runs) for step in runs[0]}


def profile_once(n: int = 5000, batch: int = 500) -> dict[str, float]:
    """CPU µs per uplink of each step, in-process (no broker), thread CPU time: the gateway's
    ``Pipeline`` (parse and validate the JSON event; decode the payload and build the readings; store a
    batch of ``batch`` in one transaction) and the group-commit script's own code (its ``on_message``:
    parse, decode, insert; the commit every 100)."""
    import types
    from datetime import UTC, datetime

    from gateway.contract import codec
    from gateway.contract.normalize import normalize
    from gateway.service.ingest.json_fast import uplink_from_json
    from gateway.service.pipeline import Pipeline
    from gateway.service.store import Store

    bodies = [body for _t, _d, body in gt.build_events(n, "json", seed=13)]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="citynode-profile-") as tmp:
        now = datetime.now(UTC)
        uplink_from_json(bodies[0], now)  # builds its decoders once
        start = time.thread_time()
        uplinks = [uplink_from_json(body, now) for body in bodies]
        out[PARSE] = time.thread_time() - start
        start = time.thread_time()
        decoded = [codec.decode(u.f_port, u.data) for u in uplinks]  # type: ignore[union-attr]
        out[DECODE] = time.thread_time() - start
        start = time.thread_time()
        for d, u in zip(decoded, uplinks):
            normalize(d, u)  # type: ignore[arg-type]
        out[READINGS] = time.thread_time() - start
        store = Store.open(str(Path(tmp) / "gw.sqlite"), synchronous="FULL")
        pipeline = Pipeline(store)
        prepare = commit = 0.0
        for i in range(0, n, batch):
            t0 = time.thread_time()
            prepared = [pipeline.prepare("up", b, "json", "mqtt") for b in bodies[i : i + batch]]
            t1 = time.thread_time()
            pipeline.commit_many(prepared)
            prepare += t1 - t0
            commit += time.thread_time() - t1
        store.close()
        out[PREPARE_REST] = max(0.0, prepare - out[PARSE] - out[DECODE] - out[READINGS])
        out[STORE] = commit
        # The script's own code, run as it is (everything above its MQTT client), on the same bodies.
        source = SCRIPTS["group_commit"].read_text(encoding="utf-8").split("\nclient = mqtt.Client")[0]
        argv, sys.argv = sys.argv, ["peer", "127.0.0.1", "1", str(Path(tmp) / "script.sqlite"), "t"]
        try:
            scope: dict[str, object] = {"__file__": str(SCRIPTS["group_commit"]), "__name__": "peer"}
            exec(compile(source, str(SCRIPTS["group_commit"]), "exec"), scope)
        finally:
            sys.argv = argv
        db, on_message, pending = scope["db"], scope["on_message"], scope["pending"]
        handle = commit = 0.0
        for i, body in enumerate(bodies):
            t0 = time.thread_time()
            on_message(None, None, types.SimpleNamespace(payload=body, mid=i))  # type: ignore[operator]
            t1 = time.thread_time()
            handle += t1 - t0
            if len(pending) >= 100:  # type: ignore[arg-type]
                db.commit()  # type: ignore[attr-defined]
                pending.clear()  # type: ignore[attr-defined]
                commit += time.thread_time() - t1
        db.close()  # type: ignore[attr-defined]
        out["script: parse, decode, insert (on_message)"] = handle
        out["script: commit every 100"] = commit
    return {k: v / n * 1e6 for k, v in out.items()}


def medians(runs: Sequence[Run]) -> dict[str, Run]:
    out = {}
    for contender in dict.fromkeys(r.contender for r in runs):
        mine = [r for r in runs if r.contender == contender]
        out[contender] = Run(
            contender, -1, mine[0].n,
            rate=statistics.median(r.rate for r in mine),
            cpu_us=statistics.median(r.cpu_us for r in mine),
            disk_bytes=statistics.median(r.disk_bytes for r in mine),
            peak_rss_mib=statistics.median(r.peak_rss_mib for r in mine),
        )
    return out


def ratios_to_raw(runs: Sequence[Run]) -> dict[str, list[float]]:
    """Each run's uplinks/s over the raw subscriber's in the same round."""
    raw = {r.round: r.rate for r in runs if r.contender == "raw"}
    out: dict[str, list[float]] = {}
    for r in runs:
        if r.round in raw:
            out.setdefault(r.contender, []).append(r.rate / raw[r.round])
    return out


def _loss_text(loss: Loss | None) -> str:
    if loss is None:
        return "–"
    good = loss.n - 1
    if not loss.exited:
        return f"none: {loss.stored:,} of {good:,} stored, {loss.dead_letters} dead letter"
    text = f"crashes: {loss.stored:,} of {good:,} stored, {good - loss.stored:,} lost"
    if loss.restart_stored >= 0:
        again = "crashes again on the same message" if loss.restart_exited else "carries on"
        text = (f"crashes after {loss.stored:,} of {good:,}; restarted, {again} "
                f"({loss.restart_stored:,} stored): the rest waits in the broker")
    return text


def report(data: dict[str, object]) -> str:
    from bench.results import machine

    runs: list[Run] = data["runs"]  # type: ignore[assignment]
    losses = {loss.contender: loss for loss in data["losses"]}  # type: ignore[attr-defined]
    med = medians(runs)
    ratio = {k: statistics.median(v) for k, v in ratios_to_raw(runs).items()}
    lines = [
        "## The peer table: the gateway, the raw subscriber and two scripts a team might write",
        "",
        f"Machine: {machine()}, {os.cpu_count()} cores, shared with other jobs. `bench/peers.py`: "
        f"{data['n']:,} ChirpStack JSON `up` events (with `object`, one to three gateways; "
        "`gateway_throughput.build_events`) at QoS 1, a burst from one paho publisher; each run has its "
        "own fresh mosquitto (`max_inflight_messages 1000`); the contenders take turns in "
        f"{data['rounds']} interleaved rounds and the table shows the medians. CPU per uplink = the "
        "process's user + system CPU time during the run / uplinks; disk = the SQLite file after the run "
        "(WAL checkpointed) / uplinks. Loss: one truncated JSON body in the middle of "
        f"{next(iter(losses.values())).n - 1 if losses else 0:,} good events.",
        "",
        "| contender | uplinks/s | ratio to raw subscriber | CPU per uplink | disk per uplink "
        "| peak RSS | lost on a bad payload |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for contender, run in med.items():
        disk = f"{run.disk_bytes / 1000:.2f} KB" if run.disk_bytes else "–"
        lines.append(
            f"| {LABELS[contender]} | {run.rate:,.0f} | {ratio.get(contender, 0):.0%} | {run.cpu_us:.0f} µs "
            f"| {disk} | {run.peak_rss_mib:.0f} MiB | {_loss_text(losses.get(contender))} |"
        )
    if "gateway" in med and "group_commit" in med:
        gw, script = med["gateway"], med["group_commit"]
        lines += [
            "",
            f"Gateway against the group-commit script: **{gw.rate / script.rate:.2f}× its uplinks/s, "
            f"{gw.cpu_us / script.cpu_us:.2f}× its CPU per uplink, {gw.disk_bytes / script.disk_bytes:.2f}× "
            "its disk per uplink** (goal: at least 1×, 1×; why not: docs/design/performance.md, "
            "\"The peer table\").",
        ]
    steps: dict[str, float] = data.get("profile") or {}  # type: ignore[assignment]
    if steps:
        lines += [
            "",
            "Where the CPU per uplink goes, in-process without the broker (`peers.profile`: the same events, "
            "thread CPU time, the least of 3 runs; the MQTT side and the hand-over between the ingest's "
            "two threads add the rest of the figures above):",
            "",
            "| step | CPU µs per uplink |",
            "|---|---:|",
        ]
        lines += [f"| {step} | {us:.1f} |" for step, us in steps.items()]
    lines += ["", "Every run:", "", "| round | contender | uplinks/s | CPU µs per uplink | KB per uplink |",
              "|---:|---|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r.round + 1} | {r.contender} | {r.rate:,.0f} | {r.cpu_us:.0f} | {r.disk_bytes / 1000:.2f} |")
    return "\n".join(lines) + "\n"


def to_json(data: dict[str, object]) -> dict[str, object]:
    return {**data, "runs": [asdict(r) for r in data["runs"]],  # type: ignore[attr-defined]
            "losses": [asdict(x) for x in data["losses"]]}  # type: ignore[attr-defined]


def from_json(doc: dict[str, object]) -> dict[str, object]:
    return {**doc, "runs": [Run(**r) for r in doc["runs"]],  # type: ignore[union-attr]
            "losses": [Loss(**x) for x in doc["losses"]]}  # type: ignore[union-attr]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("CITYNODE_BENCH_N", "20000")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loss-n", type=int, default=2000, help="good events around the bad one")
    parser.add_argument("--no-write", action="store_true", help="print, do not update bench/RESULTS.md")
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    parser.add_argument("--render", metavar="JSON", help="report saved measurements (from --json) instead")
    parser.add_argument("--raw-subscriber", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw_subscriber:
        return raw_subscriber_main(args.raw_subscriber, args.n)
    if args.render:
        data = from_json(json.loads(Path(args.render).read_text(encoding="utf-8")))
    else:
        data = measure(args.n, args.rounds, args.loss_n)
        if args.json:
            Path(args.json).write_text(json.dumps(to_json(data), indent=1), encoding="utf-8")
    text = report(data)
    print(text)
    if not args.no_write:
        from bench.results import write_section

        write_section("peers", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
