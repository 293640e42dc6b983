"""``[mqtt] processes = 3``: one gateway, three MQTT ingest processes, one store, nothing lost.

A real ``citynode gateway serve`` against a real mosquitto: the extra processes join the shared
subscription, store into the same SQLite file, and their counters show in the gateway's ``/metrics``.
A worker killed with SIGKILL is restarted, and what it had not acknowledged arrives again (stored
once). SIGTERM stops the gateway and its workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from gateway.errors import ConfigError
from gateway.service.config import load_config
from gateway.service.store import Store

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

N = 600


def write_config(tmp_path: Path, broker, app: str, http_port: int, processes: int = 3) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(f"""
[store]
path = "{tmp_path / "gw.sqlite"}"

[mqtt]
enabled = true
host = "{broker.host}"
port = {broker.port}
client_id = "procs-{app[:8]}"
topic = "application/{app}/device/+/event/+"
shared_group = "g{app[:8]}"
encoding = "protobuf"
processes = {processes}

[http]
port = {http_port}
ingest = false
""")
    return path


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening yet
        return 0, ""


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def workers(pid: int) -> list[int]:
    """The gateway's ingest processes (spawned interpreters; multiprocessing's helper excluded)."""
    out = []
    for child in children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(child)
        except OSError:  # gone meanwhile
            continue
    return out


def events_in(port: int) -> float:
    _, text = get(port, "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("citynode_events_total{") and 'type="up"' in line
    )


def publish(broker, app: str, bodies: list[tuple[str, bytes]]) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    infos = [client.publish(topic, body, qos=1) for topic, body in bodies]
    for info in infos:
        info.wait_for_publish(30)
    client.loop_stop()
    client.disconnect()


def test_three_processes_split_the_stream_into_one_store_and_one_metrics_page(
    mosquitto, tmp_path, events, aq_payload, free_port, wait_until
):
    app = uuid.uuid4().hex
    port = free_port()
    config = write_config(tmp_path, mosquitto, app, port)
    db = tmp_path / "gw.sqlite"
    bodies = []
    for i in range(1, 2 * N + 1):
        dev = f"00000000000000{i % 8:02x}"
        msg = events.up(f_cnt=i // 8, data=aq_payload(), dev_eui=dev, dedup=f"{app}-{i}")
        bodies.append((f"application/{app}/device/{dev}/event/up", msg.SerializeToString()))

    def stored() -> list[str]:
        with Store.open(db) as s:
            return s.dedup_ids("up")

    log = open(tmp_path / "gateway.log", "wb")
    gw = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "gateway", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: get(port, "/health")[0] == 200, 60, "all three processes connected")
        assert len(workers(gw.pid)) == 2

        publish(mosquitto, app, bodies[:N])
        wait_until(lambda: len(stored()) == N, 60, "the first half stored")
        wait_until(lambda: events_in(port) >= N, 10, "every process's counters in /metrics")

        victim = workers(gw.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: get(port, "/health")[0] == 503, 10, "/health to notice")
        wait_until(lambda: victim not in workers(gw.pid) and len(workers(gw.pid)) == 2, 30, "a restart")
        wait_until(lambda: get(port, "/health")[0] == 200, 60, "the new process connected")

        publish(mosquitto, app, bodies[N:])
        wait_until(lambda: len(stored()) == 2 * N, 60, "the second half stored")
        wait_until(lambda: events_in(port) >= 2 * N, 10, "counters after the restart")
        survivors = workers(gw.pid)

        gw.send_signal(signal.SIGTERM)
        assert gw.wait(60) == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in survivors)
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait()
        log.close()

    ids = stored()
    assert sorted(ids) == sorted(f"{app}-{i}" for i in range(1, 2 * N + 1))
    with Store.open(db) as s:
        assert len(s.readings(limit=100000)) == 2 * N * 8  # no reading stored twice
        assert s.dead_letters() == []
    text = (tmp_path / "gateway.log").read_text()
    assert "mqtt ingest process exited, restarting" in text


def test_several_processes_need_a_shared_group(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[mqtt]\nenabled = true\nprocesses = 2\n')
    with pytest.raises(ConfigError, match="mqtt.processes = 2 needs mqtt.shared_group"):
        load_config(path)


def test_health_names_a_worker_that_is_not_connected():
    from gateway.service.config import Config
    from gateway.service.ingest.processes import MqttWorkers

    workers_ = MqttWorkers(Config(), 2)
    assert workers_.health() == "mqtt ingest process 1, 2 not connected"
    assert json.dumps(list(workers_.counters())) == "[]"
