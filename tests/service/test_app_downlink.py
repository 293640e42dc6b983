"""``citynode gateway downlink``: a config message encoded by the codec, sent through the MQTT command
topic (real mosquitto) or ChirpStack's gRPC ``DeviceService.Enqueue`` (a real gRPC server that checks
the request and the bearer token as ChirpStack does)."""

from __future__ import annotations

import base64
import json
import threading
import uuid

import paho.mqtt.client as paho
import pytest
from chirpstack_api import api

from gateway.cli import main as cli
from gateway.contract import codec


def write_config(tmp_path, text):
    path = tmp_path / "gw.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.mqtt
def test_mqtt_downlink_publishes_a_downlink_command(mosquitto, tmp_path, capsys):
    app = uuid.uuid4().hex
    cfg = write_config(
        tmp_path,
        f"""
[store]
path = "{tmp_path / "g.sqlite"}"
[mqtt]
enabled = true
host = "{mosquitto.host}"
port = {mosquitto.port}
[chirpstack]
application_id = "{app}"
""",
    )
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
        assert (
            cli(
                [
                    "gateway",
                    "downlink",
                    "0004A30B001C0530",
                    '{"interval": 900, "adr": true}',
                    "--config",
                    cfg,
                    "--confirmed",
                ]
            )
            == 0
        )
        assert received.wait(10)
    finally:
        sub.loop_stop()
        sub.disconnect()
    doc = json.loads(got[0])
    fport, data = codec.encode_downlink({"interval": 900, "adr": True})
    assert doc == {
        "devEui": "0004a30b001c0530",
        "confirmed": True,
        "fPort": fport,
        "data": base64.b64encode(data).decode(),
    }
    assert topic in capsys.readouterr().out


@pytest.fixture
def chirpstack_sim():
    """The project's ChirpStack API simulator with one provisioned device."""
    from gateway.field.chirpstack_client import ChirpStackClient
    from gateway.sim.chirpstack import DEFAULT_TENANT_ID, ChirpStackSimulator

    with (
        ChirpStackSimulator(token="cs-api-token") as sim,
        ChirpStackClient(sim.address, "cs-api-token") as cs,
    ):
        app = cs.create_application(api.Application(name="citynode", tenant_id=DEFAULT_TENANT_ID))
        profile = cs.create_device_profile(
            api.DeviceProfile(name="citynode-eu868", tenant_id=DEFAULT_TENANT_ID)
        )
        cs.create_device(
            api.Device(
                dev_eui="0004a30b001c0530", name="bin-7", application_id=app, device_profile_id=profile
            )
        )
        yield sim, cs


def test_grpc_downlink_enqueues_with_the_bearer_token(chirpstack_sim, tmp_path, monkeypatch, capsys):
    sim, cs = chirpstack_sim
    cfg = write_config(
        tmp_path,
        f"""
[store]
path = "{tmp_path / "g.sqlite"}"
[chirpstack]
downlink = "grpc"
grpc_target = "{sim.address}"
""",
    )
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_TOKEN", "cs-api-token")
    assert cli(["gateway", "downlink", "0004a30b001c0530", '{"reboot": true}', "--config", cfg]) == 0
    [item] = cs.get_queue("0004a30b001c0530")
    fport, data = codec.encode_downlink({"reboot": True})
    assert (item.dev_eui, item.f_port, item.data, item.confirmed) == ("0004a30b001c0530", fport, data, False)
    assert f"queued downlink {item.id}" in capsys.readouterr().out
    # an unknown device and a wrong token are one-line errors
    assert cli(["gateway", "downlink", "00000000000000ff", '{"reboot": true}', "--config", cfg]) == 2
    assert "NOT_FOUND" in capsys.readouterr().err
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_TOKEN", "wrong")
    assert cli(["gateway", "downlink", "0004a30b001c0530", '{"reboot": true}', "--config", cfg]) == 2
    assert "refused the API token" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("eui", "settings", "message"),
    [
        ("xyz", '{"interval": 900}', "devEui must be 16 hex digits"),
        ("0004a30b001c0530", "{not json", "not JSON"),
        ("0004a30b001c0530", "[1]", "must be a JSON object"),
        ("0004a30b001c0530", '{"interval": 5}', "interval"),
        ("0004a30b001c0530", '{"colour": "red"}', "unknown setting 'colour'"),
    ],
)
def test_bad_downlinks_are_one_line_errors(tmp_path, capsys, eui, settings, message):
    cfg = write_config(tmp_path, f'[store]\npath = "{tmp_path / "g.sqlite"}"\n')
    assert cli(["gateway", "downlink", eui, settings, "--config", cfg]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
