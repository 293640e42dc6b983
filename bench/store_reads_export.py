"""The store at years of history: the read API's page time and the export's speed against the engines' own.

What one run does (``python bench/store_reads_export.py``, or ``make bench``):

1. Fills a SQLite store (``synchronous=NORMAL``) with 1,000,000 readings through
   :meth:`Store.record_uplinks` (the MQTT ingest's path), 6.4 readings per uplink (six air-quality
   fields, ``battery`` in 40 % of the uplinks, ``reset_cause`` in 1 of 200), 500 devices reporting side by side, one of them ("big")
   with 200,000 readings (about 5 years at one uplink per 15 min) and one ("small") with 2,000.
2. Read API: p50 of ``Store.readings(device, field, limit=1000, after=...)`` plus the JSON the route
   answers, over pages at 5 places in the device's history (5 times each), for both devices, with and
   without ``field=`` (``battery``, ``reset_cause``, and ``co2``, which no device sends); the same for the query before keyset paging (the ``readings`` view,
   ``ORDER BY id``), on the same file.
3. Export: ``citynode gateway export --format csv|jsonl --out FILE`` (a subprocess, start-up included)
   against ``sqlite3 -csv -header`` over the same rows and columns (the ``readings`` view, by id), 3
   interleaved rounds, median wall time; peak RSS of each process (``wait4``).
4. The same rows copied into PostgreSQL (127.0.0.1:5432, a throw-away schema); the export against a
   bare ``COPY (SELECT same columns) TO STDOUT WITH CSV HEADER`` through psycopg in its own process.

Nothing here asserts timings; the figures go to bench/RESULTS.md (section ``store_reads_export``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.contract.records import RadioMeta, Reading, Uplink  # noqa: E402
from gateway.service.store import Store, UplinkRecord  # noqa: E402
from gateway.service.store.export import _CHUNK as EXPORT_PAGE_LINES  # noqa: E402
from gateway.service.store.export import CSV_COLUMNS  # noqa: E402

T0 = datetime(2021, 1, 1, tzinfo=UTC)
FIELDS = [("temperature", "°C", "CEL"), ("relative_humidity", "%", "P1"), ("pm2_5", "µg/m³", "GQ"),
          ("pm10", "µg/m³", "GQ"), ("no2", "µg/m³", "GQ"), ("noise", "dB", "2N")]  # fmt: skip
BIG, SMALL = "00000000000b1900", "00000000000500a1"
PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
CLI = [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main(sys.argv[1:]))"]


def uplink_readings(dev: str, n: int, at: datetime) -> UplinkRecord:
    up = Uplink(dev, f"node-{dev[-4:]}", "app", 10, n, b"\xa1\x00", at, f"{dev}-{n}", {"district": "buer"},
                RadioMeta(-97 + n % 20, 7.25, "0016c001ff10a235", 7 + n % 3, 868_100_000, 1 + n % 3))  # fmt: skip
    readings = [Reading(dev, up.device_name, "air_quality", at, f, round(20 + (n % 97) / 7, 2), u, c,
                        up.deduplication_id, n, up.tags) for f, u, c in FIELDS]  # fmt: skip
    if n % 5 < 2:  # 40 %: 6.4 readings per uplink
        readings.append(Reading(dev, up.device_name, "air_quality", at, "battery", 3.61, "V", "VLT",
                                up.deduplication_id, n, up.tags))  # fmt: skip
    if n % 200 == 3:  # seldom: the first uplink after a reboot says why
        readings.append(Reading(dev, up.device_name, "air_quality", at, "reset_cause", "brownout", None, None,
                                up.deduplication_id, n, up.tags))  # fmt: skip
    return UplinkRecord(up, readings)


def fill(path: Path, total: int) -> dict[str, int]:
    """Uplinks of 500 devices side by side until ``total`` readings; the big device's share is 20 %."""
    per_uplink = 6.4
    big_n, small_n = int(total * 0.2 / per_uplink), int(2000 / per_uplink) + 1
    rest = int(total / per_uplink) - big_n - small_n
    plan = [BIG] * big_n + [SMALL] * small_n + [f"{i:016x}" for i in range(498) for _ in range(rest // 498)]
    random.Random(7).shuffle(plan)
    counters: dict[str, int] = {}
    with Store.open(path, synchronous="NORMAL") as store:
        for start in range(0, len(plan), 2000):
            records = []
            for i, dev in enumerate(plan[start : start + 2000], start):
                counters[dev] = counters.get(dev, 0) + 1
                records.append(uplink_readings(dev, counters[dev], T0 + timedelta(seconds=i * 1.8)))
            with store.batch():
                store.record_uplinks(records)
        store.query("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = store.counts()
        on = {dev: store.query("SELECT COUNT(*) FROM reading_log v JOIN events e ON e.id = v.event_id "
                               "WHERE e.dev_eui = ?", (dev,))[0][0] for dev in (BIG, SMALL)}  # fmt: skip
    return {"uplinks": counts["uplinks"], "readings": counts["readings"], "big": on[BIG], "small": on[SMALL],
            "bytes": path.stat().st_size}  # fmt: skip


# None: every reading; battery: in 40 % of the uplinks; reset_cause: in 1 of 200; co2: never sent.
FIELD_CASES = (None, "battery", "reset_cause", "co2")

OLD_SQL = (
    "SELECT id, dev_eui, device_name, message_type, time, field, value, unit, unit_code, deduplication_id, "
    "f_cnt, tags, rssi, snr, gateway_id, spreading_factor, frequency, gateway_count FROM readings "
    "WHERE id > ? AND dev_eui = ?{field} ORDER BY id LIMIT ?"
)


def _page(store: Store, dev: str, field: str | None, limit: int, after: int) -> tuple[float, int]:
    """Seconds for one API page (the query and the answer's JSON) and its rows."""
    t = time.perf_counter()
    rows = store.readings(dev, field, None, limit, after_id=after)
    json.dumps({"readings": [r.to_json() for r in rows]})
    return time.perf_counter() - t, len(rows)


def read_api(path: Path) -> tuple[list[tuple[str, str, float, float, float]], dict[str, float]]:
    """(device, field, p50 ms keyset, p50 ms before, mean rows per page) per case; and per field, the
    median over paired pages of big / small time for the same rows: each small-device page (limit
    1000, at one of five places in its history) timed right after the big device's page at the same
    place cut to the same length, so that the machine's load hits both alike."""
    out, paired = [], {}
    with Store.open(path) as store:
        starts = {}
        for dev in (SMALL, BIG):
            ids = [r[0] for r in store.query("SELECT v.id FROM reading_log v JOIN events e ON e.id = v.event_id "
                                             "WHERE e.dev_eui = ? ORDER BY v.id", (dev,))]  # fmt: skip
            starts[dev] = [0] + [ids[int(len(ids) * q)] for q in (0.2, 0.4, 0.6, 0.8)]
        for field in FIELD_CASES:
            new: dict[str, list[float]] = {SMALL: [], BIG: []}
            old: dict[str, list[float]] = {SMALL: [], BIG: []}
            returned: dict[str, list[int]] = {SMALL: [], BIG: []}
            ratios = []
            for _ in range(5):
                for i in range(5):
                    for dev in (SMALL, BIG):
                        seconds, n = _page(store, dev, field, 1000, starts[dev][i])
                        new[dev].append(seconds)
                        returned[dev].append(n)
                        t = time.perf_counter()
                        sql = OLD_SQL.format(field=" AND field = ?" if field else "")
                        store.query(sql, (starts[dev][i], dev, *([field] if field else []), 1000))
                        old[dev].append(time.perf_counter() - t)
                    small, n = _page(store, SMALL, field, 1000, starts[SMALL][i])
                    big, _ = _page(store, BIG, field, max(n, 1), starts[BIG][i])
                    ratios.append(big / small)
            for dev in (SMALL, BIG):
                out.append((dev, field or "-", statistics.median(new[dev]) * 1e3, statistics.median(old[dev]) * 1e3,
                            statistics.mean(returned[dev])))  # fmt: skip
            paired[field or "-"] = statistics.median(ratios)
    out.sort(key=lambda x: (x[0] != SMALL, x[1]))
    return out, paired


def run(argv: list[str], stdout_path: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS MiB of one process (``/usr/bin/time``: a child forked from this big
    process would inherit its high-water mark)."""
    with tempfile.NamedTemporaryFile("r") as report, open(stdout_path or os.devnull, "wb") as fh:
        t = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%M", *argv], stdout=fh,
                       stderr=subprocess.DEVNULL, cwd=ROOT, check=True)  # fmt: skip
        wall = time.perf_counter() - t
        return wall, int(report.read().split()[-1]) / 1024


def export_sqlite(path: Path, tmp: Path, rounds: int) -> dict[str, tuple[float, float]]:
    cols = ", ".join(CSV_COLUMNS)
    cases = {
        "sqlite3 -csv": (["sqlite3", "-csv", "-header", str(path), f"SELECT {cols} FROM readings ORDER BY id"], tmp / "a.csv"),
        "export csv": ([*CLI, "gateway", "export", "--store", str(path), "--format", "csv", "--out", str(tmp / "b.csv")], None),
        "export jsonl": ([*CLI, "gateway", "export", "--store", str(path), "--format", "jsonl", "--out", str(tmp / "c.jsonl")], None),
    }  # fmt: skip
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, (argv, out) in cases.items():
            times[name].append(run(argv, out))
    return {k: (statistics.median(w for w, _ in v), max(m for _, m in v)) for k, v in times.items()}


def copy_to_postgres(path: Path) -> str:
    """The SQLite store's rows in a fresh PostgreSQL schema; returns its DSN."""
    import sqlite3

    import psycopg

    name = f"citynode_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    dsn = f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{name}"
    Store.open(dsn).close()  # migrate
    src = sqlite3.connect(path)
    with psycopg.connect(PG_DSN, options=f"-csearch_path={name}") as conn, conn.cursor() as cur:
        for table in ("events", "reading_log", "devices"):
            cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in src.execute(f"SELECT {', '.join(cols)} FROM {table}"):
                    copy.write_row(row)
        cur.execute("SELECT setval(pg_get_serial_sequence('reading_log', 'id'), (SELECT MAX(id) FROM reading_log))")
        cur.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), (SELECT MAX(id) FROM events))")
        cur.execute("ANALYZE")
    src.close()
    return dsn


def drop_postgres(dsn: str) -> None:
    import psycopg

    name = dsn.rsplit("%3D", 1)[1]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


def export_postgres(dsn: str, rounds: int) -> dict[str, tuple[float, float]]:
    schema = dsn.rsplit("%3D", 1)[1]
    cols = ", ".join(CSV_COLUMNS)
    copy = (
        "import psycopg, sys\n"
        f"c = psycopg.connect({PG_DSN!r}, options='-csearch_path={schema}')\n"
        "out = sys.stdout.buffer\n"
        f"with c.cursor().copy('COPY (SELECT {cols} FROM readings ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)') as cp:\n"
        "    for data in cp:\n"
        "        out.write(data)\n"
    )
    cases = {
        "COPY TO STDOUT": ([sys.executable, "-c", copy], None),
        "export csv": ([*CLI, "gateway", "export", "--store", dsn, "--format", "csv"], None),
        "export jsonl": ([*CLI, "gateway", "export", "--store", dsn, "--format", "jsonl"], None),
    }  # fmt: skip
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, (argv, out) in cases.items():
            times[name].append(run(argv, out))
    return {k: (statistics.median(w for w, _ in v), max(m for _, m in v)) for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    from results import machine, write_section

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--readings", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print, do not rewrite bench/RESULTS.md")
    args = p.parse_args(argv if argv is not None else [])
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "store.sqlite"
        t = time.perf_counter()
        info = fill(path, args.readings)
        fill_s = time.perf_counter() - t
        reads, paired = read_api(path)
        sq = export_sqlite(path, tmp, args.rounds)
        pg = None
        if not args.no_postgres:
            dsn = copy_to_postgres(path)
            try:
                pg = export_postgres(dsn, args.rounds)
            finally:
                drop_postgres(dsn)
    n = info["readings"]
    lines = [
        "## Store: the read API at years of history, and exports",
        "",
        f"{machine()}; `python bench/store_reads_export.py` (part of `make bench`). One SQLite store of "
        f"{n:,} readings in {info['uplinks']:,} uplinks (6.4 readings per uplink, 500 devices side by side; "
        f"filled through `Store.record_uplinks` in {fill_s:.0f} s), the \"big\" device with {info['big']:,} "
        f"readings (about 5 years at one uplink per 15 min), the \"small\" one with {info['small']:,}.",
        "",
        "### Read API: `limit=1000` pages at five places in the device's history (p50 of 25)",
        "",
        "Keyset paging: the device's events in id order (`events_device_id`; with `field=`, those of each message "
        "shape that carries the field, `events_device_shape`), each event's readings in id order; "
        "*before*: the `readings` view with `ORDER BY id`, which sorts the device's history (`USE TEMP B-TREE`). "
        "The keyset figure includes building the JSON answer; the *before* figure is the query alone.",
        "",
        "| device | readings on it | field | rows per page | p50 keyset (ms) | p50 before (ms) | keyset µs per row |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    on = {SMALL: f"{info['small']:,}", BIG: f"{info['big']:,}"}
    for dev, field, new, old, rows in reads:
        lines.append(f"| {'small' if dev == SMALL else 'big'} | {on[dev]} | {field} | {rows:.0f} | {new:.1f} | "
                     f"{old:.1f} | {new * 1e3 / max(rows, 1):.1f} |")
    p50 = {(x[0], x[1]): x[2] for x in reads}
    full = {f or "-": p50[BIG, f or "-"] / p50[SMALL, f or "-"] for f in FIELD_CASES}
    rows = {(x[0], x[1]): x[4] for x in reads}
    lines += [
        "",
        "**Big / small time for the same rows: "
        + ", ".join(f"{paired[f or '-']:.2f} {'without `field`' if f is None else f'with `field={f}`'}" for f in FIELD_CASES)
        + "** (the goal is at most 1.5; median over 25 pairs: each small-device page timed right after the big "
        "device's page at the same place in its history cut to the same length, since other jobs may share the "
        "machine's 2 cores and a p50 of pages timed minutes apart moves with their load). With `limit=1000` on "
        "both the p50 ratios are " + ", ".join(f"{full[f or '-']:.2f}" for f in FIELD_CASES) + f" in the same "
        f"order: the small device's `field=battery` pages hold {rows[SMALL, 'battery']:.0f} rows on average where "
        f"the big device's hold {rows[BIG, 'battery']:.0f} (for `reset_cause`, {rows[SMALL, 'reset_cause']:.1f} "
        f"and {rows[BIG, 'reset_cause']:.0f}), so those two ratios are rows returned, not history; `co2` returns "
        "nothing on both. A page costs what it returns (about 20 µs per reading, mostly building the answer's "
        "JSON) plus, with `field=`, the other readings of the uplinks that carry the field; uplinks without it "
        "are never read, so a field the device seldom or never sends costs no more than one it always sends. "
        "*Before* sorts the device's whole history.",
        "",
        f"### Export of all {n:,} readings (median of {args.rounds} interleaved rounds, wall time with start-up)",
        "",
        "| backend | what | seconds | readings/s | speed vs the engine's own | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    base = sq["sqlite3 -csv"][0]
    for name, (wall, rss) in sq.items():
        lines.append(f"| SQLite | `{name}` | {wall:.2f} | {n / wall:,.0f} | {base / wall:.2f}× | {rss:.0f} |")
    if pg:
        base = pg["COPY TO STDOUT"][0]
        for name, (wall, rss) in pg.items():
            lines.append(f"| PostgreSQL | `{name}` | {wall:.2f} | {n / wall:,.0f} | {base / wall:.2f}× | {rss:.0f} |")
    lines += [
        "",
        "Same rows and columns (the 18 CSV columns, by id). The goal is at least 0.5× the engine's own; the "
        f"export's memory stays flat (SQLite hands pages of up to {EXPORT_PAGE_LINES:,} lines as one text, "
        "PostgreSQL streams `COPY`). Other jobs may share the machine's 2 cores while this runs: the "
        "contenders take turns within each round and the ratio is of medians, so load that comes and goes hits them alike. On "
        "SQLite each line is one `printf` and a page one `group_concat`; pages whose names and ids need no "
        "CSV quoting or JSON escaping (checked per page) take a line without the quoting expressions "
        "(gateway/service/store/export.py).",
    ]
    body = "\n".join(lines) + "\n"
    print(body)
    if not args.no_write:
        write_section("store_reads_export", body)


if __name__ == "__main__":
    main(sys.argv[1:])
