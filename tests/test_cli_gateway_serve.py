"""`citynode gateway serve`: the "ready" line is on stdout, apart from the JSON log lines on stderr;
store.synchronous is a SQLite keyword and takes any case."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.service.config import parse_config


@pytest.mark.parametrize("value", ["full", "Full", "FULL"])
def test_synchronous_takes_any_case(value: str) -> None:
    assert parse_config({"store": {"synchronous": value}}).store.synchronous == "FULL"


def test_the_ready_line_is_on_stdout_and_stderr_is_json_only(tmp_path: Path, free_port) -> None:
    port = free_port()
    config = tmp_path / "gw.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "gw.sqlite"}"\n\n[http]\nport = {port}\n\n[log]\nformat = "json"\n')
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "gateway", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == f"citynode gateway: ready (http port {port})\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    for line in err.splitlines():
        assert isinstance(json.loads(line), dict), line  # every stderr line is a JSON log record
