"""A LoRaWAN network-server SIMULATOR for demos, tests and HIL rigs (never a replacement for ChirpStack).

It answers OTAA joins, checks and decrypts uplinks, sends downlinks and MAC commands (with a simple ADR)
to nodes on the virtual radio :mod:`citynode_sim.udp`, and turns what it receives into ChirpStack v4
integration events (``chirpstack_api.integration`` messages) delivered like ChirpStack's HTTP or MQTT
integration. Entry points: :class:`NetworkServerSim` and ``citynode ns-sim``.
"""

from __future__ import annotations

from gateway.sim.nssim.adr import AdrState, adr_decision
from gateway.sim.nssim.delivery import EventSink, HttpDelivery, MqttDelivery, topic_for
from gateway.sim.nssim.events import Application, Event, to_json
from gateway.sim.nssim.node import NodeError, VirtualNode, build_node_lib
from gateway.sim.nssim.registry import DeviceKeys, device_from_mapping, load_devices
from gateway.sim.nssim.server import DeviceState, LogEntry, NetworkServerSim, QueueItem, Session, SimHandle

__all__ = [
    "AdrState",
    "Application",
    "DeviceKeys",
    "DeviceState",
    "Event",
    "EventSink",
    "HttpDelivery",
    "LogEntry",
    "MqttDelivery",
    "NetworkServerSim",
    "NodeError",
    "QueueItem",
    "Session",
    "SimHandle",
    "VirtualNode",
    "build_node_lib",
    "adr_decision",
    "device_from_mapping",
    "load_devices",
    "to_json",
    "topic_for",
]
