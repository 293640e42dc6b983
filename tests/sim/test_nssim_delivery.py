"""Integration events leave the simulator the way ChirpStack v4's HTTP and MQTT integrations send them."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from chirpstack_api import integration
from google.protobuf import json_format

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nssim_harness import KEYS, PyDevice

from gateway.errors import ConfigError
from gateway.sim.nssim import HttpDelivery, MqttDelivery, NetworkServerSim

EUI = KEYS.dev_eui


class Receiver:
    """A stand-in for the HTTP endpoint ChirpStack posts to: records (query, content type, headers, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.query.get("event", ""), request.content_type, dict(request.headers),
                              await request.read()))
        return web.json_response({"outcome": "stored"})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/chirpstack", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _join_and_send(sim: NetworkServerSim) -> None:
    d = PyDevice(sim.port)
    try:
        assert d.join(0) is not None
        d.uplink(0, 10, b"\x81\x01")
    finally:
        d.close()


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_http_integration_form_post_event_up(receiver: Receiver, encoding: str) -> None:
    url = f"http://127.0.0.1:{receiver.port}/chirpstack"
    sink = HttpDelivery(url, encoding, headers={"Authorization": "Bearer t0ken"})
    sim = NetworkServerSim([KEYS], port=0, sinks=[sink])
    with sim.run_in_thread():
        _join_and_send(sim)
    # stop() waits until every event was delivered
    assert [r[0] for r in receiver.requests] == ["join", "up"]
    kind, ctype, headers, body = receiver.requests[1]
    assert headers["Authorization"] == "Bearer t0ken"
    if encoding == "json":
        assert ctype == "application/json"
        doc = json.loads(body)
        assert doc["deviceInfo"]["devEui"] == EUI and doc["fPort"] == 10
        up = json_format.Parse(body, integration.UplinkEvent())
    else:
        assert ctype == "application/octet-stream"
        up = integration.UplinkEvent.FromString(body)
    assert up.data == b"\x81\x01" and up.device_info.application_id == sim.app.application_id
    assert sink.errors == [] and sink.delivered == 2


def test_http_delivery_failure_is_recorded_and_the_simulator_goes_on() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    sink = HttpDelivery(f"http://127.0.0.1:{port}/chirpstack", timeout_s=2)
    sim = NetworkServerSim([KEYS], port=0, sinks=[sink])
    with sim.run_in_thread():
        _join_and_send(sim)
    assert len(sim.events_of("up")) == 1
    assert len(sink.errors) == 2 and "http delivery of join for 70b3d57ed0060001" in sink.errors[0]


def test_delivery_urls_are_checked() -> None:
    with pytest.raises(ConfigError, match="--http: 'ftp://x' is not an http"):
        HttpDelivery("ftp://x")
    with pytest.raises(ConfigError, match="--mqtt: 'http://x' is not an mqtt://host"):
        MqttDelivery("http://x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is not installed (needed by tests marked mqtt)")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.mark.mqtt
def test_mqtt_integration_topics_and_json(mosquitto: int) -> None:
    import paho.mqtt.client as mqtt

    got: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect("127.0.0.1", mosquitto)
    client.subscribe("application/#")
    client.loop_start()
    try:
        assert subscribed.wait(10)
        sim = NetworkServerSim([KEYS], port=0, sinks=[MqttDelivery(f"mqtt://127.0.0.1:{mosquitto}")])
        with sim.run_in_thread():
            _join_and_send(sim)
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        client.loop_stop()
        client.disconnect()
    app = sim.app.application_id
    assert [t for t, _ in got] == [f"application/{app}/device/{EUI}/event/join",
                                   f"application/{app}/device/{EUI}/event/up"]
    up = json_format.Parse(got[1][1], integration.UplinkEvent())
    assert up.data == b"\x81\x01" and up.f_port == 10
