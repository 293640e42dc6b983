"""``citynode gateway downlink``: a config message encoded by the codec, sent through the MQTT command
topic (real mosquitto) or ChirpStack's gRPC ``DeviceService.Enqueue`` (a real gRPC server that checks
the request and the bearer token as ChirpStack does)."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from concurrent import futures

import grpc
import paho.mqtt.client as paho
import pytest
from chirpstack_api import api

from gateway import codec
from gateway.cli import main as cli


def write_config(tmp_path, text):
    path = tmp_path / "gw.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.mqtt
def test_mqtt_downlink_publishes_a_downlink_command(mosquitto, tmp_path, capsys):
    app = uuid.uuid4().hex
    cfg = write_config(tmp_path, f"""
[store]
path = "{tmp_path / 'g.sqlite'}"
[mqtt]
enabled = true
host = "{mosquitto.host}"
port = {mosquitto.port}
[chirpstack]
application_id = "{app}"
""")
    topic = f"application/{app}/device/0004a30b001c0530/command/down"
    got: list[bytes] = []
    subscribed, received = threading.Event(), threading.Event()
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"sub-{app[:8]}")
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: (got.append(m.payload), received.set())
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        assert cli(["gateway", "downlink", "0004A30B001C0530", '{"interval": 900, "adr": true}',
                    "--config", cfg, "--confirmed"]) == 0
        assert received.wait(10)
    finally:
        sub.loop_stop()
        sub.disconnect()
    doc = json.loads(got[0])
    fport, data = codec.encode_downlink({"interval": 900, "adr": True})
    assert doc == {"devEui": "0004a30b001c0530", "confirmed": True, "fPort": fport,
                   "data": base64.b64encode(data).decode()}
    assert topic in capsys.readouterr().out


class FakeChirpStackDevices(api.DeviceServiceServicer):
    """ChirpStack's DeviceService.Enqueue: checks the bearer token and the queue item like the real API."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.items: list[api.DeviceQueueItem] = []

    def Enqueue(self, request, context):  # noqa: N802 (gRPC method name)
        metadata = dict(context.invocation_metadata())
        if metadata.get("authorization") != f"Bearer {self.token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "authorization header invalid")
        item = request.queue_item
        if len(item.dev_eui) != 16 or not 1 <= item.f_port <= 223:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid queue item")
        self.items.append(item)
        return api.EnqueueDeviceQueueItemResponse(id=f"item-{len(self.items)}")


@pytest.fixture
def grpc_chirpstack(free_port):
    service = FakeChirpStackDevices("cs-api-token")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api.add_DeviceServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, port
    server.stop(None)


def test_grpc_downlink_enqueues_with_the_bearer_token(grpc_chirpstack, tmp_path, monkeypatch, capsys):
    service, port = grpc_chirpstack
    cfg = write_config(tmp_path, f"""
[store]
path = "{tmp_path / 'g.sqlite'}"
[chirpstack]
downlink = "grpc"
grpc_target = "127.0.0.1:{port}"
""")
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_API_TOKEN", "cs-api-token")
    assert cli(["gateway", "downlink", "0004a30b001c0530", '{"reboot": true}', "--config", cfg]) == 0
    [item] = service.items
    fport, data = codec.encode_downlink({"reboot": True})
    assert (item.dev_eui, item.f_port, item.data, item.confirmed) == ("0004a30b001c0530", fport, data, False)
    assert "queued downlink item-1" in capsys.readouterr().out
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_API_TOKEN", "wrong")
    assert cli(["gateway", "downlink", "0004a30b001c0530", '{"reboot": true}', "--config", cfg]) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err


@pytest.mark.parametrize(("eui", "settings", "message"), [
    ("xyz", '{"interval": 900}', "devEui must be 16 hex digits"),
    ("0004a30b001c0530", "{not json", "not JSON"),
    ("0004a30b001c0530", "[1]", "must be a JSON object"),
    ("0004a30b001c0530", '{"interval": 5}', "interval"),
    ("0004a30b001c0530", '{"colour": "red"}', "unknown setting 'colour'"),
])
def test_bad_downlinks_are_one_line_errors(tmp_path, capsys, eui, settings, message):
    cfg = write_config(tmp_path, f'[store]\npath = "{tmp_path / "g.sqlite"}"\n')
    assert cli(["gateway", "downlink", eui, settings, "--config", cfg]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
