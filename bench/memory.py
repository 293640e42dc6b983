"""What a gateway process's resident memory is made of, at ready and at its peak under a burst.

What one run does (``python bench/memory.py --n 20000``, or ``make bench``):

1. **The process:** ``citynode gateway serve`` with the README configuration (MQTT ingest, JSON,
   SQLite, HTTP API; the bench's mosquitto with ``max_inflight_messages 1000``): resident memory
   (``VmRSS``) once ``/health`` answers, then N realistic ChirpStack JSON ``up`` events published in one
   burst at QoS 1, and the peak (``VmHWM``) once all are stored.
2. **The interpreter:** the peak RSS of ``python -c pass`` (the same interpreter, its site-packages).
3. **The modules by package:** a gateway started in-process records ``sys.modules`` at ready; a fresh
   interpreter then imports those modules group by group (the standard library, each third-party
   package in the order the gateway first imported it, citynode's own packages) and the growth of
   its RSS after each group is that group's share. Approximate: a module imported by two packages is
   counted with the first.
4. **The store and the batches in flight:** in one process, the modules imported, the same N events are
   prepared and committed through :class:`gateway.service.pipeline.Pipeline` in batches of 500
   (``[mqtt] batch``) into a fresh SQLite store; the growth of the peak RSS from the moment the store is
   opened (SQLite's page cache, the prepared batches, the Python objects that stay).
5. **The rest of the peak:** the peak of (1) minus its RSS at ready and minus (4): what the MQTT ingest
   held (messages read ahead of the store, the batch being prepared next to the batch committing) and
   the allocator's fragmentation.

Nothing here asserts figures; ``tests/system/test_peers_memory_bench.py`` runs it with a tiny N.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import gateway_throughput as gt  # noqa: E402  (after the sys.path line above)

BATCH = 500  # [mqtt] batch, the default
INTERPRETER = (  # the bare interpreter's peak RSS, read by itself
    "import json\nfor line in open('/proc/self/status'):\n"
    "    if line.startswith('VmHWM:'): print(json.dumps({'mib': int(line.split()[1]) / 1024}))"
)


def _status_mib(key: str, pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _child(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------- the process


def measure_process(n: int, workdir: Path) -> dict[str, float]:
    """RSS at ready and peak RSS after a burst of N JSON uplinks, of one real gateway process."""
    broker = gt.Broker(workdir, 1000)
    try:
        events = gt.build_events(n, "json", seed=21)
        topic = f"application/{gt.app_id(21)}/device/+/event/+"
        db = workdir / "store.sqlite"
        cfg = gt._gateway_config(workdir, 0, broker.port, "json", "FULL", db, "", topic)
        with open(workdir / "gateway.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "gateway", "serve", "--config", str(cfg)],
                env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL, stderr=log,
            )
            try:
                gt._wait_healthy(proc, cfg)
                time.sleep(0.5)  # let start-up garbage settle
                ready = _status_mib("VmRSS", proc.pid)
                gt.publish(broker.port, events)
                _wait_count(db, len(events))
                peak = _status_mib("VmHWM", proc.pid)
            finally:
                proc.terminate()
                proc.wait(30)
    finally:
        broker.close()
    return {"ready": ready, "peak": peak}


def _wait_count(db: Path, n: int, timeout: float = 600) -> None:
    import sqlite3

    deadline = time.monotonic() + timeout
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM events WHERE kind = 'up'").fetchone()[0] >= n:
                return
            time.sleep(0.05)
    finally:
        conn.close()
    raise RuntimeError(f"fewer than {n} uplinks stored in {timeout:.0f} s")


# ------------------------------------------------------------------------------------- children's parts


def modules_at_ready(config: str) -> int:
    """Child: run a gateway in this process; at ready print the modules it imported, then stop it."""
    from gateway.cli import main

    port = int(next(line.split("=")[1] for line in reversed(Path(config).read_text().splitlines())
                    if line.startswith("port")))
    names: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        names.extend(sys.modules)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
    main(["gateway", "serve", "--config", config])
    ignore = {"__main__", "urllib.request", "http.client"}  # this child's own watcher
    print(json.dumps([name for name in names if name not in ignore and name.split(".")[0] != "bench"]))
    return 0


def group_of(name: str) -> str:
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top.startswith("_"):
        return "standard library"
    if top == "gateway":
        parts = name.split(".")
        return ".".join(parts[:3]) if parts[1:2] == ["service"] and len(parts) > 2 else ".".join(parts[:2])
    return top


def attribute(modules_json: str) -> int:
    """Child: import the modules of ``modules_json`` group by group; print each group's RSS growth."""
    import importlib

    names: list[str] = json.loads(Path(modules_json).read_text())
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(group_of(name), []).append(name)
    order = ["standard library"] + [g for g in groups if g != "standard library" and not g.startswith("gateway")]
    # citynode's packages last, the CLI after the service (it imports the rest: the order keeps each
    # package's own share under its name)
    order += sorted((g for g in groups if g.startswith("gateway")), key=lambda g: g == "gateway.cli")
    start = _status_mib("VmRSS")
    before = start
    out = []
    for group in order:
        for name in groups[group]:
            try:
                importlib.import_module(name)
            except Exception:  # a module that imports only inside its package's start-up
                pass
        now = _status_mib("VmRSS")
        out.append({"group": group, "modules": len(groups[group]), "mib": now - before})
        before = now
    print(json.dumps({"start": start, "groups": out}))
    return 0


def write_bodies(n: int, path: Path) -> None:
    """N JSON ``up`` event bodies, length-prefixed, for :func:`store_only` (built in another process:
    building them leaves a heap that would hide the store's growth)."""
    from bench import gateway_throughput as gt

    with open(path, "wb") as fh:
        for _t, _d, body in gt.build_events(n, "json", seed=22):
            fh.write(len(body).to_bytes(4, "big") + body)


def store_only(bodies: Path) -> int:
    """Child: the gateway's modules, then the uplinks of ``bodies`` prepared and committed in batches of
    500; prints the RSS before the store was opened and the peak after."""
    import gc

    from gateway.service import app  # noqa: F401  (the modules a gateway has, before the store)
    from gateway.service.pipeline import Pipeline
    from gateway.service.store import Store

    with tempfile.TemporaryDirectory(prefix="citynode-memory-") as tmp:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        before = _status_mib("VmRSS")
        store = Store.open(str(Path(tmp) / "store.sqlite"), synchronous="FULL")
        pipeline = Pipeline(store)
        opened = _status_mib("VmRSS")
        with open(bodies, "rb") as fh:
            while True:
                batch = []
                while len(batch) < BATCH and (head := fh.read(4)):
                    batch.append(fh.read(int.from_bytes(head, "big")))
                if not batch:
                    break
                pipeline.commit_many([pipeline.prepare("up", b, "json", "mqtt") for b in batch])
        peak = _status_mib("VmHWM")
        store.close()
    print(json.dumps({"before": before, "opened": opened, "peak": peak}))
    return 0


# ---------------------------------------------------------------------------------------------- report


def measure(n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="citynode-memory-") as tmp:
        workdir = Path(tmp)
        process = measure_process(n, workdir)
        interpreter = json.loads(subprocess.run(
            [sys.executable, "-c", INTERPRETER], capture_output=True, text=True, check=True
        ).stdout)
        cfg = gt._gateway_config(workdir, 1, gt.free_port(), "json", "FULL", workdir / "m.sqlite", "",
                                 "application/+/device/+/event/+")
        names = subprocess.run(
            [sys.executable, __file__, "--modules-at-ready", str(cfg)], capture_output=True, text=True,
            check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        ).stdout.strip().splitlines()[-1]
        (workdir / "modules.json").write_text(names)
        modules = _child("--attribute", str(workdir / "modules.json"))
        write_bodies(n, workdir / "bodies")
        store = _child("--store-only", str(workdir / "bodies"))
    return {"n": n, "process": process, "interpreter": interpreter, "modules": modules, "store": store,
            "module_count": len(json.loads(names)), "imported": json.loads(names)}


def report(data: dict[str, object], before: dict[str, float] | None = None) -> str:
    from bench.results import machine

    process: dict[str, float] = data["process"]  # type: ignore[assignment]
    interp: float = data["interpreter"]["mib"]  # type: ignore[index]
    modules: dict = data["modules"]  # type: ignore[assignment]
    store: dict[str, float] = data["store"]  # type: ignore[assignment]
    store_mib = store["peak"] - store["before"]
    imported = sum(g["mib"] for g in modules["groups"])
    rest_ready = process["ready"] - interp - imported
    rest_peak = process["peak"] - process["ready"] - store_mib
    lines = [
        "## Gateway memory: what one process's RSS is made of",
        "",
        f"Machine: {machine()}. `bench/memory.py`: one `citynode gateway serve` (README configuration: "
        "MQTT ingest of JSON events, SQLite `synchronous = FULL`, HTTP API, no sinks); RSS once `/health` "
        f"answers, then {data['n']:,} realistic ChirpStack JSON `up` events in one burst at QoS 1 "
        "(mosquitto `max_inflight_messages 1000`) and the peak RSS (`VmHWM`) once all are stored. The parts "
        "are measured apart (see the module's docstring) and are approximate.",
        "",
        "| | MiB |",
        "|---|---:|",
        f"| **RSS at ready** | **{process['ready']:.0f}** |",
        f"| the interpreter (`python -c pass`) | {interp:.0f} |",
        f"| imported modules ({data['module_count']} of them, by package below) | {imported:.0f} |",
        f"| the rest at ready (the running service: event loop, HTTP server, store connection, heap) "
        f"| {rest_ready:.0f} |",
        f"| **peak RSS after the burst** | **{process['peak']:.0f}** |",
        f"| the store and the batches: {data['n']:,} uplinks prepared and committed in batches of {BATCH} "
        f"in one process (SQLite page cache, Python objects) | {store_mib:.0f} |",
        f"| the rest of the peak (MQTT read-ahead, the batch prepared next to the one committing, "
        f"fragmentation) | {rest_peak:.0f} |",
    ]
    if before:
        lines += [
            "",
            f"Before the changes of issue 18 (same bench, main before them): RSS at ready "
            f"{before['ready']:.0f} MiB, peak {before['peak']:.0f} MiB; now {process['ready']:.0f} and "
            f"{process['peak']:.0f} MiB.",
        ]
    lines += ["", "Imported modules by package (RSS growth when imported in a fresh interpreter, in this order):",
              "", "| package | modules | MiB |", "|---|---:|---:|"]
    for g in sorted(modules["groups"], key=lambda g: -g["mib"]):
        if g["mib"] >= 0.5:
            lines.append(f"| {g['group']} | {g['modules']} | {g['mib']:.1f} |")
    small = [g for g in modules["groups"] if g["mib"] < 0.5]
    if small:
        lines.append(f"| {len(small)} more packages, under 0.5 MiB each | {sum(g['modules'] for g in small)} "
                     f"| {sum(g['mib'] for g in small):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("CITYNODE_BENCH_N", "20000")))
    parser.add_argument("--no-write", action="store_true", help="print, do not update bench/RESULTS.md")
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    parser.add_argument("--before", help="JSON of an earlier run (--json) to compare RSS with")
    parser.add_argument("--render", metavar="JSON", help="report saved measurements (from --json) instead")
    parser.add_argument("--modules-at-ready", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--attribute", metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument("--store-only", metavar="BODIES", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.modules_at_ready:
        return modules_at_ready(args.modules_at_ready)
    if args.attribute:
        return attribute(args.attribute)
    if args.store_only:
        return store_only(Path(args.store_only))
    data = json.loads(Path(args.render).read_text(encoding="utf-8")) if args.render else measure(args.n)
    if args.json and not args.render:
        Path(args.json).write_text(json.dumps(data, indent=1), encoding="utf-8")
    before = json.loads(Path(args.before).read_text())["process"] if args.before else BEFORE
    text = report(data, before)
    print(text)
    if not args.no_write:
        from bench.results import write_section

        write_section("memory", text)
    return 0


# Measured with this bench (N = 20,000) on main at aca88ca, before the changes of issue 18 (lazy
# imports, bounded read-ahead), 2026-12-05 on the CI machine kind.
BEFORE: dict[str, float] | None = {"ready": 58.9, "peak": 136.1}

if __name__ == "__main__":
    sys.exit(main())
