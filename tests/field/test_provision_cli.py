"""The two command lines: `citynode chirpstack-sim` as a process, and provisioning's progress bar."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from gateway.cli.provision import _apply_with_progress
from gateway.field.chirpstack_client import ChirpStackClient
from gateway.field.inventory import Node
from gateway.field.provision import apply_plan, make_plan
from gateway.sim.chirpstack import DEFAULT_TENANT_ID, ChirpStackSimulator

CODEC = "function decodeUplink(input) { return {data: {}}; }\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chirpstack_sim_command_serves_the_api_and_says_it_is_a_simulator() -> None:
    port = _free_port()
    citynode = shutil.which("citynode", path=str(Path(sys.executable).parent)) or "citynode"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([citynode, "chirpstack-sim", "--port", str(port), "--token", "T"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        banner = proc.stdout.readline()  # type: ignore[union-attr]
        assert "SIMULATOR" in banner and f"127.0.0.1:{port}" in banner, banner + proc.stderr.read()  # type: ignore[union-attr]
        assert DEFAULT_TENANT_ID in proc.stdout.readline()  # type: ignore[union-attr]
        with ChirpStackClient(f"127.0.0.1:{port}", "T", timeout=10) as cs:
            assert cs.get_tenant(DEFAULT_TENANT_ID).name == "ChirpStack"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_chirpstack_sim_command_needs_a_token(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from gateway.cli import main

    monkeypatch.delenv("CITYNODE_CHIRPSTACK_TOKEN", raising=False)
    assert main(["chirpstack-sim", "--port", "0"]) == 2
    assert "--token" in capsys.readouterr().err


def _nodes(count: int) -> list[Node]:
    return [Node(f"70b3d57ed1{i:06x}", f"bin-{i}", "bin_fill", "ttgo_lora32_v21") for i in range(count)]


def test_progress_is_reported_for_every_step(tmp_path: Path) -> None:
    with ChirpStackSimulator(token="t") as sim, ChirpStackClient(sim.address, "t") as cs:
        plan = make_plan(cs, _nodes(5), tenant_id=DEFAULT_TENANT_ID, application_name="citynode",
                         codec_script=CODEC, bundles_dir=tmp_path / "b")
        seen = []
        report = apply_plan(cs, plan, progress=seen.append)
    assert seen == plan.steps
    assert report.ok and len(report.outcomes) == 2 + 3 * 5


def test_progress_bar_runs_on_a_terminal(tmp_path: Path) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with ChirpStackSimulator(token="t") as sim, ChirpStackClient(sim.address, "t") as cs:
        plan = make_plan(cs, _nodes(10), tenant_id=DEFAULT_TENANT_ID, application_name="citynode",
                         codec_script=CODEC, bundles_dir=tmp_path / "b")
        report = _apply_with_progress(console, cs, plan)
        assert report.ok and len(sim.state.devices) == 10
    assert "provisioning" in buffer.getvalue()
