"""Downlinks into the network-server simulator, the ways they reach ChirpStack v4.

* :class:`MqttCommands`: ChirpStack's MQTT integration takes a ``DownlinkCommand`` (``chirpstack-api``
  ``integration.DownlinkCommand``, JSON marshaling: ``{"devEui", "confirmed", "fPort", "data"}``, data
  base64) on ``application/<application_id>/device/<dev_eui>/command/down`` and enqueues it for the
  device. This subscribes to that topic (for the simulator's application) and queues each command in
  the simulator, which sends it in the device's next receive window after its next uplink.
* :func:`connect_api_queue`: the ChirpStack API simulator (:mod:`gateway.sim.chirpstack`) hands each
  ``DeviceService.Enqueue`` item to the network-server simulator (same item id), and the item leaves
  the API's queue (``GetQueue``) when the simulator transmits it (its ``txack`` event), as in ChirpStack.

A command the simulator cannot take (not JSON, a DevEUI other than the topic's, an unknown device, an
``object`` to encode: the simulator runs no codec) is logged with the reason and dropped, as ChirpStack
logs and drops a bad command.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError
from gateway.sim.nssim.events import Event

if TYPE_CHECKING:
    from gateway.sim.chirpstack import SimState
    from gateway.sim.nssim.server import NetworkServerSim

__all__ = ["ApiQueueSync", "MqttCommands", "command_topic", "connect_api_queue", "take_command"]

log = logging.getLogger("citynode.nssim.commands")


def command_topic(application_id: str, dev_eui: str = "+") -> str:
    return f"application/{application_id}/device/{dev_eui}/command/down"


def take_command(sim: NetworkServerSim, topic: str, payload: bytes) -> str:
    """Queue the ``DownlinkCommand`` JSON ``payload`` received on ``topic``; returns the queue item id.

    Raises :class:`ConfigError` saying what is wrong with the command.
    """
    from chirpstack_api import integration
    from google.protobuf import json_format

    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "application" or parts[2] != "device" or parts[4:] != ["command", "down"]:
        raise ConfigError(f"{topic}: not an application/<id>/device/<DevEUI>/command/down topic")
    try:
        command = json_format.Parse(payload, integration.DownlinkCommand(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{topic}: not a DownlinkCommand in JSON: {exc}") from None
    if command.dev_eui and command.dev_eui.lower() != parts[3].lower():
        raise ConfigError(f"{topic}: devEui {command.dev_eui} does not match the topic's {parts[3]}")
    if command.HasField("object"):
        raise ConfigError(f"{topic}: object needs the device profile's codec; the simulator takes data (base64)")
    if not command.data:
        raise ConfigError(f"{topic}: data is empty")
    return sim.queue_downlink(parts[3], command.f_port, command.data, command.confirmed, item_id=command.id or None)


class MqttCommands:
    """Subscribe to ``command/down`` of ``sim``'s application on the broker at ``url`` and queue what comes.

    Start it after the simulator (:meth:`start`), stop it with :meth:`close`. ``taken`` and
    ``errors`` say what happened to each command.
    """

    def __init__(self, url: str, sim: NetworkServerSim) -> None:
        from urllib.parse import urlparse

        u = urlparse(url)
        if u.scheme not in ("mqtt", "tcp") or not u.hostname:
            raise ConfigError(f"--mqtt: {url!r} is not an mqtt://host[:port] URL")
        self.host, self.port = u.hostname, u.port or 1883
        self.username, self.password = u.username, u.password
        self.sim = sim
        self.taken: list[str] = []  # queue item ids
        self.errors: list[str] = []
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        import aiomqtt

        client = aiomqtt.Client(self.host, self.port, username=self.username, password=self.password,
                                identifier="citynode-nssim-commands")
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise ConfigError(f"--mqtt: cannot connect to {self.host}:{self.port}: {exc}") from None
        self._client = client
        await client.subscribe(command_topic(self.sim.app.application_id), qos=1)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._client.messages:
            topic = str(message.topic)
            try:
                item = take_command(self.sim, topic, bytes(message.payload))
            except ConfigError as exc:
                self.errors.append(str(exc))
                log.warning("downlink command dropped: %s", exc)
                continue
            self.taken.append(item)
            log.info("downlink command queued for %s (item %s)", topic.split("/")[3], item)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
            self._client = None

    async def __aenter__(self) -> MqttCommands:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ApiQueueSync:
    """An event sink for the simulator: a transmitted queue item (``txack``) leaves the API's queue."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def start(self) -> None:
        return None

    async def deliver(self, application_id: str, event: Event) -> None:
        if event.kind == "txack":
            self.state.remove_queue_item(event.dev_eui, event.message.queue_item_id)

    async def close(self) -> None:
        return None


def connect_api_queue(state: SimState, sim: NetworkServerSim) -> ApiQueueSync:
    """Hand every ``DeviceService.Enqueue`` of the API simulator to ``sim``; returns the sink that
    clears transmitted items (pass it among ``sim``'s sinks, or append it to ``sim.sinks`` before start).
    Items already queued are handed over at once."""

    def hand_over(item: Any) -> None:
        try:
            sim.queue_downlink(item.dev_eui, item.f_port, item.data, item.confirmed, item_id=item.id)
        except ConfigError as exc:
            log.warning("queue item %s not handed to the network-server simulator: %s", item.id, exc)

    for item in state.queued_items():
        hand_over(item)
    state.queue_listeners.append(hand_over)
    return ApiQueueSync(state)
