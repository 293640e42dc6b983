"""The benchmarks run (their numbers go to bench/RESULTS.md; tests never assert timings)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_airtime_budget_tables_cover_every_role_and_spreading_factor() -> None:
    bench = _load("airtime_budget")
    text = bench.tables()
    for role in ("air_quality", "bin_fill", "passenger_count", "crowd_count"):
        assert text.count(f"| {role} |") == 3  # time on air, duty cycle, battery life
    # Semtech's formula, as the firmware computes it: SF12 is 2^5 slower than SF7 per symbol.
    assert bench.toa_ms(23, 12) > 20 * bench.toa_ms(23, 7)
    # More airtime never lengthens a battery life.
    lives = [bench.battery_days("bin_fill", 12, sf) for sf in bench.SFS]
    assert lives == sorted(lives, reverse=True)


def test_make_bench_runner_loads_every_benchmark() -> None:
    """`make bench` (bench/run.py) imports each benchmark the way it runs it, and each has main()."""
    runner = _load("run")
    for name in runner.BENCHMARKS:
        assert callable(runner.load(name).main), name


def test_disk_per_uplink_bench_runs_on_a_few_events(capsys) -> None:
    bench = _load("store_disk")
    bench.main(["--n", "60", "--no-postgres", "--no-write"])
    out = capsys.readouterr().out
    assert "| json | SQLite |" in out and "| protobuf | SQLite |" in out and "* SQLite, json: " in out and "reading_log " in out
