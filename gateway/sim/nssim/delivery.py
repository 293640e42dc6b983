"""Delivering integration events the way ChirpStack v4's integrations do.

* :class:`HttpDelivery`: ChirpStack's HTTP integration, ``POST <url>?event=<kind>`` with the JSON
  marshaling (``Content-Type: application/json``) or protobuf (``application/octet-stream``), optional
  extra headers (e.g. ``Authorization: Bearer ...``). Like ChirpStack it does not retry; a failure is
  recorded in ``errors`` and logged.
* :class:`MqttDelivery`: ChirpStack's MQTT integration, topic
  ``application/<application_id>/device/<dev_eui>/event/<kind>``, JSON payload, QoS 0. Like ChirpStack's
  MQTT integration it also takes downlinks on ``application/<application_id>/device/<dev_eui>/command/down``
  (:class:`gateway.sim.nssim.commands.MqttCommands`) once the simulator attaches it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlparse

from gateway.errors import ConfigError
from gateway.sim.nssim.events import Event

__all__ = ["EventSink", "HttpDelivery", "MqttDelivery", "topic_for"]

log = logging.getLogger("citynode.nssim.delivery")


class EventSink(Protocol):
    async def start(self) -> None: ...

    async def deliver(self, application_id: str, event: Event) -> None: ...

    async def close(self) -> None: ...


def topic_for(application_id: str, event: Event) -> str:
    return f"application/{application_id}/device/{event.dev_eui}/event/{event.kind}"


class HttpDelivery:
    """POST each event to ``url`` (``?event=<kind>`` appended). ``encoding``: ``json`` or ``protobuf``."""

    def __init__(self, url: str, encoding: str = "json", headers: Mapping[str, str] | None = None,
                 timeout_s: float = 5.0) -> None:
        if urlparse(url).scheme not in ("http", "https"):
            raise ConfigError(f"--http: {url!r} is not an http(s) URL")
        if encoding not in ("json", "protobuf"):
            raise ConfigError(f"encoding: {encoding!r} is not json or protobuf")
        self.url = url
        self.encoding = encoding
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.errors: list[str] = []
        self.delivered = 0
        self._session = None

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def deliver(self, application_id: str, event: Event) -> None:
        assert self._session is not None, "HttpDelivery.start() first"
        if self.encoding == "json":
            body, ctype = event.json().encode(), "application/json"
        else:
            body, ctype = event.message.SerializeToString(), "application/octet-stream"
        sep = "&" if "?" in self.url else "?"
        try:
            async with self._session.post(f"{self.url}{sep}event={event.kind}", data=body,
                                          headers={**self.headers, "Content-Type": ctype}) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise OSError(f"HTTP {resp.status}")
            self.delivered += 1
        except Exception as exc:
            msg = f"http delivery of {event.kind} for {event.dev_eui} to {self.url} failed: {exc}"
            self.errors.append(msg)
            log.warning(msg)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class MqttDelivery:
    """Publish each event to an MQTT broker at ``url`` (``mqtt://[user:pass@]host[:port]``)."""

    def __init__(self, url: str) -> None:
        u = urlparse(url)
        if u.scheme not in ("mqtt", "tcp") or not u.hostname:
            raise ConfigError(f"--mqtt: {url!r} is not an mqtt://host[:port] URL")
        self.host = u.hostname
        self.port = u.port or 1883
        self.username = u.username
        self.password = u.password
        self.url = url
        self.errors: list[str] = []
        self.delivered = 0
        self._client = None
        self.commands: Any = None  # MqttCommands, once attached to a simulator

    async def attach(self, sim: Any) -> None:
        """Take ``command/down`` downlinks for ``sim`` (called by the simulator when it starts)."""
        from gateway.sim.nssim.commands import MqttCommands

        self.commands = MqttCommands(self.url, sim)
        await self.commands.start()

    async def start(self) -> None:
        import aiomqtt

        client = aiomqtt.Client(self.host, self.port, username=self.username, password=self.password,
                                identifier="citynode-nssim")
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise ConfigError(f"--mqtt: cannot connect to {self.host}:{self.port}: {exc}") from None
        self._client = client

    async def deliver(self, application_id: str, event: Event) -> None:
        assert self._client is not None, "MqttDelivery.start() first"
        try:
            await self._client.publish(topic_for(application_id, event), event.json().encode(), qos=0)
            self.delivered += 1
        except Exception as exc:
            msg = f"mqtt publish of {event.kind} for {event.dev_eui} failed: {exc}"
            self.errors.append(msg)
            log.warning(msg)

    async def close(self) -> None:
        if self.commands is not None:
            await self.commands.close()
            self.commands = None
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
            self._client = None
