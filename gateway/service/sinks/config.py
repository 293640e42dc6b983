"""Sinks from the ``[sinks.<name>]`` tables of the gateway's TOML file.

Each table names one sink; its ``type`` (``ngsild``, ``sensorthings`` or ``mqtt``) defaults to the
table's name, so ``[sinks.ngsild]`` is enough, and ``[sinks.partner] type = "ngsild"`` adds a second
NGSI-LD sink with its own cursor. Secrets (tokens, passwords, user names) are
:class:`gateway.service.config.Secret` values, best given in the environment, which wins over the file:
``CITYNODE_SINKS_<NAME>_TOKEN``, ``..._PASSWORD``, ``..._USERNAME`` (``<NAME>`` is the table name in
upper case, ``-`` as ``_``). The tables are read by the gateway configuration's own validator
(:class:`gateway.service.config.Section`): every invalid key raises
:class:`gateway.errors.ConfigError` naming it as ``sinks.<name>.<key>``, in the same words as the
rest of the file.

Keys every sink takes (the outbox worker's settings): ``enabled`` (true), ``batch_size`` (100),
``retry_initial_s`` (1.0), ``retry_max_s`` (300), ``max_row_attempts`` (8).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.service.config import Section
from gateway.service.outbox import Backoff
from gateway.service.sinks.base import Sink

__all__ = ["SinkSpec", "build_sinks"]

_COMMON = frozenset({"type", "enabled", "batch_size", "retry_initial_s", "retry_max_s", "max_row_attempts"})
_KEYS = {
    "ngsild": frozenset({"url", "context", "citynode_context_url", "tenant", "token", "timeout_s", "id_prefix",
                         "burning_temperature", "default_location", "battery_empty_v", "battery_full_v"}),
    "sensorthings": frozenset(
        {"url", "id_cache", "username", "password", "token", "timeout_s", "default_location"}
    ),
    "mqtt": frozenset({"host", "port", "topic_prefix", "username", "password", "tls", "ca_file", "client_id",
                       "qos", "retain", "timeout_s"}),
}


@dataclass(frozen=True)
class SinkSpec:
    """A configured sink and the options of its outbox worker (``DeliveryWorker`` keyword arguments)."""

    sink: Sink
    worker_options: Mapping[str, Any]


def _text(t: Section, key: str, default: str | None = None, *, required: bool = False) -> str | None:
    return t.opt_str(key, default, required=required, nonempty=True)


def _location(t: Section, data: Mapping[str, Any]) -> tuple[float, float] | None:
    """``default_location``: ``[longitude, latitude]`` in degrees, or None."""
    location = data.get("default_location")
    if location is None:
        return None
    ok = (isinstance(location, list) and len(location) == 2
          and all(isinstance(v, int | float) and not isinstance(v, bool) for v in location)
          and -180 <= location[0] <= 180 and -90 <= location[1] <= 90)
    if not ok:
        raise t.error("default_location", "[longitude, latitude] in degrees")
    return (float(location[0]), float(location[1]))


def build_sinks(sinks: Mapping[str, Any], *, store_path: str, environ: Mapping[str, str] | None = None,
                citynode_context_url: str | None = None) -> list[SinkSpec]:
    """The enabled sinks of a ``[sinks]`` table, validated, in file order.

    ``store_path`` is the gateway's SQLite file; the SensorThings id mapping goes there unless
    ``id_cache`` names another file. ``environ`` (default: the process environment) holds the secrets.
    ``citynode_context_url`` is where this gateway serves the citynode JSON-LD context (an NGSI-LD
    sink's ``citynode_context_url`` overrides it, e.g. behind a proxy); default
    :data:`gateway.service.sinks.ngsild.DEFAULT_CITYNODE_CONTEXT_URL`.

    A sink type's module is imported only when a sink of that type is configured.
    """
    env = os.environ if environ is None else environ
    specs: list[SinkSpec] = []
    for name, data in sinks.items():
        prefix = f"CITYNODE_SINKS_{name.upper().replace('-', '_')}_"
        t = Section(f"sinks.{name}", data, environ=env, env_prefix=prefix)
        kind = _text(t, "type", name)
        if kind not in _KEYS:
            raise t.error("type", f"one of {', '.join(sorted(_KEYS))}")
        t.done(_COMMON | _KEYS[kind])  # unknown keys fail even in a disabled sink
        if not t.bool("enabled", True):
            continue
        initial = t.float("retry_initial_s", 1.0, 0.01, 3600)
        options = {
            "batch_size": t.int("batch_size", 100, 1, 10_000),
            "backoff": Backoff(initial_s=initial, max_s=t.float("retry_max_s", 300.0, initial, 86_400)),
            "max_row_attempts": t.int("max_row_attempts", 8, 1, 1000),
        }
        sink: Sink
        if kind == "ngsild":
            from gateway.service.sinks.ngsild import DEFAULT_CITYNODE_CONTEXT_URL, NgsiLdConfig, NgsiLdSink

            citynode_context_url = citynode_context_url or DEFAULT_CITYNODE_CONTEXT_URL
            context = data.get("context")
            if isinstance(context, str):
                context = [context]
            if context is not None and (not isinstance(context, list) or not context
                                        or not all(isinstance(c, str) for c in context)):
                raise t.error("context", "a URL or a list of URLs")
            empty_v = t.float("battery_empty_v", 3.0, 0, 5)
            sink = NgsiLdSink(NgsiLdConfig(
                url=_text(t, "url", required=True) or "", name=name, context=tuple(context) if context else None,
                citynode_context_url=_text(t, "citynode_context_url", citynode_context_url) or citynode_context_url,
                tenant=_text(t, "tenant"), token=t.secret("token"),
                timeout_s=t.float("timeout_s", 10.0, 0.1, 600),
                id_prefix=_text(t, "id_prefix", "urn:ngsi-ld:") or "urn:ngsi-ld:",
                burning_temperature=t.float("burning_temperature", 60.0, -40, 200),
                default_location=_location(t, data), battery_empty_v=empty_v,
                battery_full_v=t.float("battery_full_v", max(4.2, empty_v + 0.1), empty_v + 0.01, 6)))
        elif kind == "sensorthings":
            from gateway.service.sinks.sensorthings import SensorThingsConfig, SensorThingsSink

            sink = SensorThingsSink(SensorThingsConfig(
                url=_text(t, "url", required=True) or "", name=name, id_cache=_text(t, "id_cache", store_path),
                username=t.secret("username"), password=t.secret("password"), token=t.secret("token"),
                timeout_s=t.float("timeout_s", 10.0, 0.1, 600), default_location=_location(t, data)))
        else:
            from gateway.service.sinks.mqtt import MqttSink, MqttSinkConfig

            sink = MqttSink(MqttSinkConfig(
                host=_text(t, "host", required=True) or "", port=t.int("port", 1883, 1, 65535), name=name,
                topic_prefix=_text(t, "topic_prefix", "citynode/readings") or "citynode/readings",
                username=t.secret("username"), password=t.secret("password"), tls=t.bool("tls", False),
                ca_file=_text(t, "ca_file"), client_id=_text(t, "client_id"), qos=t.int("qos", 1, 0, 2),
                retain=t.bool("retain", False), timeout_s=t.float("timeout_s", 10.0, 0.1, 600)))
        specs.append(SinkSpec(sink, options))
    return specs
