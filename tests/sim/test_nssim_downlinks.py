"""Downlinks into the network-server simulator the ways they reach ChirpStack v4, delivered in the device's
next receive window: ChirpStack's MQTT ``command/down`` (a real mosquitto) and the API simulator's
``DeviceService.Enqueue`` (a real gRPC server, the provisioning client calling it)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from chirpstack_api import api, common

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nssim_harness import KEYS, PyDevice

from gateway.contract import codec
from gateway.errors import ConfigError
from gateway.field.chirpstack_client import ChirpStackClient
from gateway.sim.chirpstack import DEFAULT_TENANT_ID, ChirpStackSimulator
from gateway.sim.nssim import NetworkServerSim
from gateway.sim.nssim._firmware import frames
from gateway.sim.nssim.commands import MqttCommands, command_topic, connect_api_queue, take_command

EUI = KEYS.dev_eui


@pytest.fixture
def sim() -> Iterator[NetworkServerSim]:
    s = NetworkServerSim([KEYS], port=0)
    with s.run_in_thread():
        yield s


def downlink_after_uplink(sim: NetworkServerSim) -> Any:
    dev = PyDevice(sim.port)
    try:
        dev.join(0)
        phy = dev.uplink(0, 10, b"\x01")
        assert phy is not None, "no downlink in the receive window"
        return frames.parse_downlink(phy, dev.nwk_skey, dev.app_skey, dev.dev_addr)
    finally:
        dev.close()


def command_json(dev_eui: str, fport: int, data: bytes, **extra: object) -> bytes:
    """ChirpStack's JSON form of ``integration.DownlinkCommand``."""
    body = {"devEui": dev_eui, "confirmed": False, "fPort": fport, "data": base64.b64encode(data).decode()}
    body.update(extra)
    return json.dumps(body).encode()


def test_a_downlink_command_is_queued_and_sent_in_the_next_receive_window(sim):
    fport, data = codec.encode_downlink({"interval": 600})
    topic = command_topic(sim.app.application_id, EUI)
    item = take_command(sim, topic, command_json(EUI, fport, data, id="0b1f9c3e-3e5c-4c1a-9d7e-1a2b3c4d5e6f"))
    assert item == "0b1f9c3e-3e5c-4c1a-9d7e-1a2b3c4d5e6f"  # the command's id names its txack
    frame = downlink_after_uplink(sim)
    assert (frame.fport, frame.payload) == (fport, data)
    assert codec.decode_downlink(frame.fport, frame.payload) == {"interval": 600}
    txacks = sim.events_of("txack", EUI)
    assert [t.message.queue_item_id for t in txacks] == [item]


@pytest.mark.parametrize(
    ("topic_eui", "body", "message"),
    [
        (EUI, b"not json", "not a DownlinkCommand in JSON"),
        (EUI, command_json("0000000000000001", 2, b"\x01"), "does not match the topic's"),
        (EUI, command_json(EUI, 2, b""), "data is empty"),
        (EUI, json.dumps({"devEui": EUI, "fPort": 2, "object": {"interval": 600}}).encode(), "object needs"),
        ("0000000000000002", command_json("0000000000000002", 2, b"\x01"), "is not in the simulator's registry"),
        (EUI, command_json(EUI, 0, b"\x01"), "fport: 0 not in 1..223"),
    ],
)
def test_a_bad_command_is_refused_naming_what_is_wrong(sim, topic_eui, body, message):
    with pytest.raises(ConfigError, match=message):
        take_command(sim, command_topic(sim.app.application_id, topic_eui), body)


@pytest.mark.mqtt
def test_commands_published_on_the_broker_reach_the_device(sim, mosquitto):
    fport, data = codec.encode_downlink({"interval": 900})

    async def main() -> MqttCommands:
        async with MqttCommands(f"mqtt://{mosquitto.host}:{mosquitto.port}", sim) as commands:
            publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
            publisher.connect(mosquitto.host, mosquitto.port)
            publisher.loop_start()
            try:
                topic = command_topic(sim.app.application_id, EUI)
                publisher.publish(topic, command_json("0000000000000009", fport, data), qos=1).wait_for_publish()
                publisher.publish(topic, command_json(EUI, fport, data), qos=1).wait_for_publish()
                for _ in range(100):
                    if commands.taken:
                        break
                    await asyncio.sleep(0.05)
            finally:
                publisher.loop_stop()
                publisher.disconnect()
            return commands

    commands = asyncio.run(main())
    assert len(commands.taken) == 1
    assert commands.errors and "does not match the topic's" in commands.errors[0]
    frame = downlink_after_uplink(sim)
    assert codec.decode_downlink(frame.fport, frame.payload) == {"interval": 900}


def test_the_api_simulators_queue_is_handed_over_and_emptied_once_sent(sim):
    fport, data = codec.encode_downlink({"interval": 1200})
    with ChirpStackSimulator(token="t0ken") as chirpstack:
        sync = connect_api_queue(chirpstack.state, sim)
        sim.sinks.append(sync)  # the running simulator reads its sinks per event
        with ChirpStackClient(chirpstack.address, "t0ken") as client:
            app = client.create_application(api.Application(tenant_id=DEFAULT_TENANT_ID, name="city"))
            profile = client.create_device_profile(
                api.DeviceProfile(tenant_id=DEFAULT_TENANT_ID, name="citynode-air_quality", region=common.EU868)
            )
            client.create_device(
                api.Device(dev_eui=EUI, name="aq-test-1", application_id=app, device_profile_id=profile)
            )
            item = client.enqueue(EUI, fport, data)
            assert [q.id for q in client.get_queue(EUI)] == [item]  # pending until sent, as in ChirpStack
            frame = downlink_after_uplink(sim)
            assert codec.decode_downlink(frame.fport, frame.payload) == {"interval": 1200}
            assert [t.message.queue_item_id for t in sim.events_of("txack", EUI)] == [item]
            sim.wait_for(lambda: not chirpstack.state.queued_items(), 5)
            assert client.get_queue(EUI) == []


@pytest.mark.mqtt
def test_with_mqtt_events_the_simulator_takes_commands_on_the_same_broker(mosquitto):
    """``citynode ns-sim --mqtt URL`` (and the demo with --mqtt): like ChirpStack's MQTT integration, the
    events go out on event/<kind> and downlinks come in on command/down."""
    from gateway.sim.nssim import MqttDelivery

    delivery = MqttDelivery(f"mqtt://{mosquitto.host}:{mosquitto.port}")
    s = NetworkServerSim([KEYS], port=0, sinks=[delivery])
    fport, data = codec.encode_downlink({"interval": 1800})
    with s.run_in_thread():
        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        try:
            topic = command_topic(s.app.application_id, EUI)
            publisher.publish(topic, command_json(EUI, fport, data), qos=1).wait_for_publish()
            s.wait_for(lambda: delivery.commands is not None and delivery.commands.taken, 10)
        finally:
            publisher.loop_stop()
            publisher.disconnect()
        frame = downlink_after_uplink(s)
        assert codec.decode_downlink(frame.fport, frame.payload) == {"interval": 1800}
