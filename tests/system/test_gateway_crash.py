"""kill -9 of a real ``citynode gateway serve`` mid-stream, then a restart: nothing lost, nothing duplicated.

ChirpStack events are published to a real mosquitto while the gateway subprocess is killed with SIGKILL;
the restarted gateway resumes its persistent MQTT session. Counted end to end by deduplication id.
Also: SIGTERM shuts down gracefully with exit status 0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import paho.mqtt.client as paho
import pytest

from gateway.service.store import Store

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

N = 400


def write_config(tmp_path, broker, app, http_port):
    path = tmp_path / "gw.toml"
    path.write_text(f"""
[store]
path = "{tmp_path / "gw.sqlite"}"

[mqtt]
enabled = true
host = "{broker.host}"
port = {broker.port}
client_id = "crash-{app[:8]}"
topic = "application/{app}/device/+/event/+"
encoding = "protobuf"

[http]
port = {http_port}
ingest = false

[log]
format = "json"
""")
    return path


def start_gateway(config, log):
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "gateway", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(proc, port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gateway exited during start-up"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if json.load(r)["status"] == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("gateway never became healthy")


def stored_up(path) -> list[str]:
    with Store.open(path) as s:
        return s.dedup_ids("up")


def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(
    mosquitto, tmp_path, events, aq_payload, free_port
):
    app = uuid.uuid4().hex
    http_port = free_port()
    config = write_config(tmp_path, mosquitto, app, http_port)
    db = tmp_path / "gw.sqlite"
    log = open(tmp_path / "gateway.log", "wb")
    bodies = []
    for i in range(1, N + 1):
        dev = f"00000000000000{i % 4:02x}"
        msg = events.up(f_cnt=i // 4, data=aq_payload(), dev_eui=dev, dedup=f"{app}-{i}")
        bodies.append((f"application/{app}/device/{dev}/event/up", msg.SerializeToString()))

    gw = start_gateway(config, log)
    try:
        wait_healthy(gw, http_port)
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{app[:8]}")
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        done, killed = threading.Event(), threading.Event()

        def publish_all():
            # The first half streams in while the gateway runs and is killed; the second half is
            # published once it is dead, so the kill always lands mid-stream, whatever the speeds.
            for i, (topic, body) in enumerate(bodies):
                if i == N // 2:
                    killed.wait(60)
                publisher.publish(topic, body, qos=1).wait_for_publish(10)
            done.set()

        threading.Thread(target=publish_all, daemon=True).start()
        deadline = time.monotonic() + 60
        while len(stored_up(db)) < N // 8:
            assert time.monotonic() < deadline, "gateway stored nothing"
            time.sleep(0.01)
        gw.send_signal(signal.SIGKILL)  # mid-stream: publishing goes on
        gw.wait(10)
        killed.set()
        assert len(stored_up(db)) <= N // 2

        gw = start_gateway(config, log)
        assert done.wait(60), "publisher did not finish"
        deadline = time.monotonic() + 90
        while len(stored_up(db)) < N:
            assert gw.poll() is None, f"restarted gateway exited; see {tmp_path / 'gateway.log'}"
            assert time.monotonic() < deadline, f"only {len(stored_up(db))} of {N} stored"
            time.sleep(0.05)
        publisher.loop_stop()
        publisher.disconnect()

        gw.send_signal(signal.SIGTERM)  # graceful
        assert gw.wait(30) == 0
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait()
        log.close()

    ids = stored_up(db)
    assert len(ids) == N and sorted(ids) == sorted(f"{app}-{i}" for i in range(1, N + 1))
    with Store.open(db) as s:
        assert len(s.readings(limit=100000)) == N * 8  # no reading stored twice
        assert s.dead_letters() == []
