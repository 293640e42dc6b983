"""Disk per uplink: what the store takes for the gateway throughput benchmark's mix of events.

What one run does (``python bench/store_disk.py``, or ``make bench``):

1. Builds N ChirpStack ``up`` events exactly as :mod:`gateway_throughput` does (``object`` from the
   JS codec, one to three gateways, the five citynode message types in turn: 6.4 readings per uplink),
   as JSON and as protobuf.
2. Stores them in-process through the MQTT ingest's path (``Pipeline.handle_many``, 500 per batch)
   into a new SQLite file and into a new PostgreSQL schema (127.0.0.1:5432).
3. Disk per uplink: SQLite, the file after a WAL checkpoint (and what each table and index takes, from
   ``dbstat``); PostgreSQL, ``pg_total_relation_size`` of the schema's tables (heap, TOAST, indexes)
   after ``VACUUM``. CPU per uplink of the store path (parse, decode, store) as a side figure.

Nothing here asserts sizes; the figures go to bench/RESULTS.md (section ``store_disk``).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from gateway_throughput import build_events  # noqa: E402

from gateway.service.pipeline import Pipeline  # noqa: E402
from gateway.service.store import SCHEMA_VERSION, Store  # noqa: E402

PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


def ingest(store: Store, events: list[tuple[str, str, bytes]], encoding: str) -> float:
    """Store the events; CPU seconds of this process."""
    pipeline = Pipeline(store)
    t = time.process_time()
    for start in range(0, len(events), 500):
        pipeline.handle_many([("up", body, encoding, "mqtt", None) for _, _, body in events[start : start + 500]])
    return time.process_time() - t


def sqlite_disk(events: list[tuple[str, str, bytes]], encoding: str) -> tuple[float, float, list[tuple[str, float]]]:
    """(bytes per uplink, CPU µs per uplink, [(table or index, bytes per uplink)])."""
    n = len(events)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.sqlite"
        with Store.open(path, synchronous="NORMAL") as store:
            cpu = ingest(store, events, encoding)
            store.query("PRAGMA wal_checkpoint(TRUNCATE)")
        size = path.stat().st_size
        conn = sqlite3.connect(path)
        parts = [(str(r[0]), r[1] / n) for r in conn.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name HAVING SUM(pgsize) > ? ORDER BY 2 DESC", (n,))]  # fmt: skip
        conn.close()
    return size / n, cpu / n * 1e6, parts


def postgres_disk(events: list[tuple[str, str, bytes]], encoding: str) -> tuple[float, list[tuple[str, float]]]:
    import psycopg

    n = len(events)
    name = f"citynode_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        with Store.open(f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{name}") as store:
            ingest(store, events, encoding)
        with psycopg.connect(PG_DSN, autocommit=True, options=f"-csearch_path={name}") as conn:
            conn.execute("VACUUM ANALYZE")
            rows = conn.execute(
                "SELECT c.relname, pg_relation_size(c.oid), pg_indexes_size(c.oid), "
                "pg_total_relation_size(c.oid) - pg_relation_size(c.oid) - pg_indexes_size(c.oid) "
                "FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
                "WHERE s.nspname = %s AND c.relkind = 'r'", (name,)).fetchall()  # fmt: skip
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")
    total = sum(h + i + t for _, h, i, t in rows)
    parts = []
    for rel, heap, index, toast in sorted(rows, key=lambda r: -(r[1] + r[2] + r[3])):
        if heap + index + toast > n:
            parts += [(f"{rel} (heap)", heap / n), (f"{rel} (indexes)", index / n), (f"{rel} (TOAST)", toast / n)]
    return total / n, [p for p in parts if p[1] >= 1]


def main(argv: list[str] | None = None) -> None:
    from results import machine, write_section

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print, do not rewrite bench/RESULTS.md")
    args = p.parse_args(argv if argv is not None else [])
    rows, detail = [], []
    for encoding in ("json", "protobuf"):
        events = build_events(args.n, encoding, seed=int.from_bytes(os.urandom(3), "big"))
        raw = sum(len(body) for _, _, body in events) / args.n
        size, cpu, parts = sqlite_disk(events, encoding)
        rows.append(f"| {encoding} | SQLite | {raw:,.0f} | {size / 1000:.2f} | {cpu:.0f} |")
        detail.append((f"SQLite, {encoding}", parts))
        if not args.no_postgres:
            pg, pg_parts = postgres_disk(events, encoding)
            rows.append(f"| {encoding} | PostgreSQL | {raw:,.0f} | {pg / 1000:.2f} | - |")
            detail.append((f"PostgreSQL, {encoding}", pg_parts))
    lines = [
        "## Store: disk per uplink",
        "",
        f"{machine()}; `python bench/store_disk.py` (part of `make bench`). N = {args.n:,} `up` events of the "
        "gateway throughput benchmark's mix (`object` from the JS codec, one to three gateways, the five "
        "message types in turn, 6.4 readings per uplink), stored in-process through the MQTT ingest's path "
        "(500 per batch) into a new store: SQLite, the file after a WAL checkpoint; PostgreSQL, "
        f"`pg_total_relation_size` of the tables after `VACUUM`. Store schema {SCHEMA_VERSION} (raw events "
        "compressed against a dictionary, see docs/reliability.md; each uplink's message shape indexed, "
        "docs/design/performance.md). CPU = parse, decode and store, in-process.",
        "",
        "| encoding | backend | raw event (B) | KB per uplink | CPU µs per uplink |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
        "Where it goes (bytes per uplink; tables and indexes above 1 B):",
        "",
    ]
    for name, parts in detail:
        lines.append(f"* {name}: " + ", ".join(f"{rel} {b:.0f}" for rel, b in parts))
    lines += [
        "",
        "The goal is at most 0.8 KB per uplink. PostgreSQL does not reach it with the same rows: each row "
        "carries a 23-byte tuple header plus a 4-byte item pointer and 8-byte alignment (the reading log's "
        "6.4 rows per uplink pay that 6.4 times), its B-tree indexes hold wider entries than SQLite's, a "
        "compressed raw event (~0.14 KB) is below the TOAST threshold and stays inline. (`devices`, whose "
        "500 rows are rewritten once per batch, keeps half of each page free since schema 6, so that "
        "PostgreSQL prunes the old row versions in place; at schema 5 they took 0.17 KB per uplink here.)",
    ]
    body = "\n".join(lines) + "\n"
    print(body)
    if not args.no_write:
        write_section("store_disk", body)


if __name__ == "__main__":
    main(sys.argv[1:])
