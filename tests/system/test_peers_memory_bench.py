"""``bench/peers.py`` and ``bench/memory.py`` work end to end with a tiny N, so they cannot rot (their
figures are not checked: benchmarks never assert timings). They start their own mosquitto, real
``citynode gateway serve`` processes and the two peer scripts, so they are marked mqtt and slow."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_the_peer_scripts_say_what_they_are_and_what_they_do_not_guarantee():
    for name in ("peer_commit_each", "peer_group_commit"):
        text = (BENCH / f"{name}.py").read_text(encoding="utf-8")
        assert text.startswith('"""A SCRIPT A TEAM MIGHT WRITE, NOT PART OF CITYNODE'), name
        assert "What it does NOT guarantee" in text and "no de-duplication" in text and "no dead letters" in text
        assert len(text.splitlines()) <= 80, name  # small, as a team would write it


def test_peer_table_runs_every_contender_and_the_bad_payload_runs():
    peers = load("peers")
    data = peers.measure(200, rounds=1, loss_n=100)
    runs = {r.contender: r for r in data["runs"]}
    assert list(runs) == ["raw", "gateway", "commit_each", "group_commit"]
    assert all(r.rate > 0 and r.cpu_us > 0 for r in runs.values())
    assert all(runs[c].disk_bytes > 0 for c in ("gateway", "commit_each", "group_commit"))
    loss = {x.contender: x for x in data["losses"]}
    # The gateway keeps every good event and the bad one as a dead letter; the scripts crash on it.
    assert (loss["gateway"].exited, loss["gateway"].stored, loss["gateway"].dead_letters) == (False, 100, 1)
    assert loss["commit_each"].exited and loss["commit_each"].stored < 100
    assert loss["group_commit"].exited and loss["group_commit"].restart_exited  # crashes again on restart
    assert loss["group_commit"].restart_stored == loss["group_commit"].stored
    text = peers.report(data)
    assert "| citynode gateway, README config |" in text and "Gateway against the group-commit script" in text


def test_memory_bench_reports_the_parts_of_a_gateway_process():
    memory = load("memory")
    data = memory.measure(200)
    assert 0 < data["process"]["ready"] <= data["process"]["peak"]
    groups = {g["group"] for g in data["modules"]["groups"]}
    assert {"standard library", "aiohttp", "gateway.service.ingest"} <= groups
    # lazy imports: a serving gateway without sinks imports no sink module, no aiomqtt, no cryptography
    tops = {name.split(".")[0] for name in data["imported"]}
    assert not {"aiomqtt", "paho", "cryptography"} & tops
    assert not {"gateway.service.sinks.mqtt", "gateway.service.sinks.ngsild"} & set(data["imported"])
    text = memory.report(data, {"ready": 1.0, "peak": 2.0})
    assert "**RSS at ready**" in text and "Imported modules by package" in text
