"""Sinks from the ``[sinks.<name>]`` tables of the gateway's TOML file.

Each table names one sink; its ``type`` (``ngsild``, ``sensorthings`` or ``mqtt``) defaults to the
table's name, so ``[sinks.ngsild]`` is enough, and ``[sinks.partner] type = "ngsild"`` adds a second
NGSI-LD sink with its own cursor. Secrets are best given in the environment, which wins over the file:
``CITYNODE_SINKS_<NAME>_TOKEN``, ``..._PASSWORD``, ``..._USERNAME`` (``<NAME>`` is the table name in
upper case, ``-`` as ``_``). Every invalid key raises :class:`gateway.errors.ConfigError` naming it.

Keys every sink takes (the outbox worker's settings): ``enabled`` (true), ``batch_size`` (100),
``retry_initial_s`` (1.0), ``retry_max_s`` (300), ``max_row_attempts`` (8).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.delivery import Backoff
from gateway.errors import ConfigError
from gateway.sinks.base import Sink
from gateway.sinks.mqtt import MqttConfig, MqttSink
from gateway.sinks.ngsild import DEFAULT_CITYNODE_CONTEXT_URL, NgsiLdConfig, NgsiLdSink
from gateway.sinks.sensorthings import SensorThingsConfig, SensorThingsSink

__all__ = ["SinkSpec", "build_sinks"]

_COMMON = {"type", "enabled", "batch_size", "retry_initial_s", "retry_max_s", "max_row_attempts"}
_KEYS = {
    "ngsild": {"url", "context", "citynode_context_url", "tenant", "token", "timeout_s", "id_prefix",
               "burning_temperature", "default_location", "battery_empty_v", "battery_full_v"},
    "sensorthings": {"url", "id_cache", "username", "password", "token", "timeout_s", "default_location"},
    "mqtt": {"host", "port", "topic_prefix", "username", "password", "tls", "ca_file", "client_id", "qos",
             "retain", "timeout_s"},
}
_SECRETS = ("token", "password", "username")


@dataclass(frozen=True)
class SinkSpec:
    """A configured sink and the options of its outbox worker (``DeliveryWorker`` keyword arguments)."""

    sink: Sink
    worker_options: Mapping[str, Any]


class _Table:
    def __init__(self, name: str, data: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.name, self.data, self.environ = name, data, environ

    def _err(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"sinks.{self.name}.{key}: {what}, got {self.data.get(key)!r}")

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.data.get(key, default)
        if value is None and required:
            raise ConfigError(f"sinks.{self.name}.{key}: required")
        if value is not None and (not isinstance(value, str) or not value):
            raise self._err(key, "expected a non-empty string")
        return value

    def secret(self, key: str) -> str | None:
        env = f"CITYNODE_SINKS_{self.name.upper().replace('-', '_')}_{key.upper()}"
        return self.environ.get(env) or self.text(key)

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self._err(key, f"expected a number in {lo}..{hi}")
        return float(value)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self._err(key, f"expected an integer in {lo}..{hi}")
        return value

    def location(self, key: str) -> tuple[float, float] | None:
        value = self.data.get(key)
        if value is None:
            return None
        ok = (isinstance(value, list) and len(value) == 2
              and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
              and -180 <= value[0] <= 180 and -90 <= value[1] <= 90)
        if not ok:
            raise self._err(key, "expected [longitude, latitude] in degrees")
        return (float(value[0]), float(value[1]))

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self._err(key, "expected true or false")
        return value


def build_sinks(sinks: Mapping[str, Any], *, store_path: str, environ: Mapping[str, str] | None = None,
                citynode_context_url: str = DEFAULT_CITYNODE_CONTEXT_URL) -> list[SinkSpec]:
    """The enabled sinks of a ``[sinks]`` table, validated, in file order.

    ``store_path`` is the gateway's SQLite file; the SensorThings id mapping goes there unless
    ``id_cache`` names another file. ``citynode_context_url`` is where this gateway serves the citynode
    JSON-LD context (an NGSI-LD sink's ``citynode_context_url`` overrides it, e.g. behind a proxy).
    """
    env = os.environ if environ is None else environ
    specs: list[SinkSpec] = []
    for name, data in sinks.items():
        if not isinstance(data, Mapping):
            raise ConfigError(f"sinks.{name}: expected a table")
        t = _Table(name, data, env)
        kind = t.text("type", name)
        if kind not in _KEYS:
            raise ConfigError(f"sinks.{name}.type: expected one of {', '.join(sorted(_KEYS))}, got {kind!r}")
        unknown = sorted(set(data) - _COMMON - _KEYS[kind])
        if unknown:
            raise ConfigError(f"sinks.{name}.{unknown[0]}: unknown key for a {kind} sink")
        if not t.flag("enabled", True):
            continue
        initial = t.number("retry_initial_s", 1.0, 0.01, 3600)
        options = {
            "batch_size": t.integer("batch_size", 100, 1, 10_000),
            "backoff": Backoff(initial_s=initial, max_s=t.number("retry_max_s", 300.0, initial, 86_400)),
            "max_row_attempts": t.integer("max_row_attempts", 8, 1, 1000),
        }
        sink: Sink
        if kind == "ngsild":
            context = data.get("context")
            if isinstance(context, str):
                context = [context]
            if context is not None and (not isinstance(context, list) or not context
                                        or not all(isinstance(c, str) for c in context)):
                raise t._err("context", "expected a URL or a list of URLs")
            empty_v = t.number("battery_empty_v", 3.0, 0, 5)
            sink = NgsiLdSink(NgsiLdConfig(
                url=t.text("url", required=True) or "", name=name, context=tuple(context) if context else None,
                citynode_context_url=t.text("citynode_context_url", citynode_context_url) or citynode_context_url,
                tenant=t.text("tenant"), token=t.secret("token"), timeout_s=t.number("timeout_s", 10.0, 0.1, 600),
                id_prefix=t.text("id_prefix", "urn:ngsi-ld:") or "urn:ngsi-ld:",
                burning_temperature=t.number("burning_temperature", 60.0, -40, 200),
                default_location=t.location("default_location"), battery_empty_v=empty_v,
                battery_full_v=t.number("battery_full_v", max(4.2, empty_v + 0.1), empty_v + 0.01, 6)))
        elif kind == "sensorthings":
            sink = SensorThingsSink(SensorThingsConfig(
                url=t.text("url", required=True) or "", name=name, id_cache=t.text("id_cache", store_path),
                username=t.secret("username"), password=t.secret("password"), token=t.secret("token"),
                timeout_s=t.number("timeout_s", 10.0, 0.1, 600), default_location=t.location("default_location")))
        else:
            sink = MqttSink(MqttConfig(
                host=t.text("host", required=True) or "", port=t.integer("port", 1883, 1, 65535), name=name,
                topic_prefix=t.text("topic_prefix", "citynode/readings") or "citynode/readings",
                username=t.secret("username"), password=t.secret("password"), tls=t.flag("tls", False),
                ca_file=t.text("ca_file"), client_id=t.text("client_id"), qos=t.integer("qos", 1, 0, 2),
                retain=t.flag("retain", False), timeout_s=t.number("timeout_s", 10.0, 0.1, 600)))
        specs.append(SinkSpec(sink, options))
    return specs
