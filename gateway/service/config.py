"""The gateway's configuration: one TOML file, secrets from the environment, frozen and validated.

``load_config(path)`` reads the file with :mod:`tomllib`, applies environment overrides and returns a
:class:`Config`. Every invalid or unknown key raises :class:`gateway.errors.ConfigError` naming it
(``mqtt.port: expected an integer in 1..65535, got 'abc'``), so a typo fails at start-up, not at 3 a.m.

Secrets (passwords, tokens, the AMQP URL with its credentials) are :class:`Secret` values: their
``repr`` and ``str`` are ``***``, so logging a config object never leaks them. Each may be given in the
file or, preferably, in the environment, which wins:

=================================  ==============================
environment variable               config key
=================================  ==============================
``CITYNODE_MQTT_USERNAME``         ``mqtt.username``
``CITYNODE_MQTT_PASSWORD``         ``mqtt.password``
``CITYNODE_HTTP_TOKEN``            ``http.token``
``CITYNODE_HTTP_SECRET``           ``http.secret``
``CITYNODE_API_TOKEN``             ``http.api_token``
``CITYNODE_AMQP_URL``              ``amqp.url``
``CITYNODE_CHIRPSTACK_TOKEN``      ``chirpstack.api_token``
``CITYNODE_STORE_PATH``            ``store.path``
=================================  ==============================

Sections this module does not know (``[sinks.*]``) are kept as plain data in :attr:`Config.sinks`
for the sink workers to validate.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.service.pipeline import PipelineOptions

__all__ = [
    "AmqpConfig",
    "ChirpStackConfig",
    "Config",
    "HttpConfig",
    "LogConfig",
    "MqttConfig",
    "Secret",
    "StoreConfig",
    "TlsConfig",
    "load_config",
    "parse_config",
]


class Secret:
    """A secret string that never shows itself in ``repr``/``str``/logs. ``.get()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class StoreConfig:
    # A SQLite file, or a PostgreSQL URL ("postgresql://user@host/db"; put its password in
    # CITYNODE_STORE_PATH or PGPASSWORD, not in the file). Not shown by repr: a URL may hold a password.
    path: str = field(default="citynode-gateway.sqlite", repr=False)
    synchronous: str = "FULL"  # see gateway.service.store: FULL because acks follow commits


@dataclass(frozen=True)
class TlsConfig:
    ca: str | None = None  # CA bundle that signed the broker's certificate
    cert: str | None = None  # client certificate (mutual TLS)
    key: str | None = None
    insecure: bool = False  # skip host-name verification (test brokers only)


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = False
    host: str = "localhost"
    port: int = 1883
    client_id: str = "citynode-gateway"  # stable: the broker keeps the QoS 1 session under it
    username: Secret = field(default_factory=Secret)
    password: Secret = field(default_factory=Secret)
    encoding: str = "json"  # ChirpStack's MQTT integration marshaler: json or protobuf
    topic: str = "application/+/device/+/event/+"
    shared_group: str = ""  # "$share/<group>/<topic>": instances of one group split the messages
    qos: int = 1
    keepalive: int = 30  # s
    session_expiry: int = 7 * 24 * 3600  # s the broker keeps the session while we are away
    tls: TlsConfig | None = None
    command_topic: str = "application/{application_id}/device/{dev_eui}/command/down"
    batch: int = 500  # events stored per transaction, at most (as many as the broker has in flight)
    # MQTT ingest processes of this gateway (one core each), splitting ``shared_group``'s messages.
    processes: int = 1

    @property
    def subscription(self) -> str:
        return f"$share/{self.shared_group}/{self.topic}" if self.shared_group else self.topic


@dataclass(frozen=True)
class HttpConfig:
    """One aiohttp server: ChirpStack's HTTP integration (``POST /chirpstack``) and the read API."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8090
    ingest: bool = True  # serve POST /chirpstack
    token: Secret = field(default_factory=Secret)  # "Authorization: Bearer <token>" for /chirpstack
    secret_header: str = "X-Citynode-Secret"  # ChirpStack HTTP integration: custom header
    secret: Secret = field(default_factory=Secret)
    api_token: Secret = field(default_factory=Secret)  # Bearer token for /api/* (empty: open)
    max_body: int = 64 * 1024  # bytes; an uplink event is about 1-2 kB
    default_encoding: str = "json"  # when a request has no Content-Type


@dataclass(frozen=True)
class AmqpConfig:
    enabled: bool = False
    url: Secret = field(default_factory=lambda: Secret("amqp://guest:guest@127.0.0.1:5672/"))
    exchange: str = "amq.topic"  # ChirpStack's AMQP integration publishes here by default
    queue: str = "citynode-gateway"
    routing_key: str = "application.*.device.*.event.*"
    prefetch: int = 100
    encoding: str = "json"


@dataclass(frozen=True)
class ChirpStackConfig:
    """How downlinks reach ChirpStack: its gRPC API or the MQTT command topic."""

    downlink: str = "mqtt"  # mqtt | grpc
    grpc_target: str = "localhost:8080"
    grpc_tls: bool = False
    api_token: Secret = field(default_factory=Secret)
    application_id: str = ""  # for the MQTT command topic


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    format: str = "text"  # text | json (one JSON object per line)


@dataclass(frozen=True)
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    decode: PipelineOptions = field(default_factory=PipelineOptions)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    amqp: AmqpConfig = field(default_factory=AmqpConfig)
    chirpstack: ChirpStackConfig = field(default_factory=ChirpStackConfig)
    log: LogConfig = field(default_factory=LogConfig)
    sinks: Mapping[str, Any] = field(default_factory=dict)  # validated by the sink workers
    source: str = ""  # the file it came from


_ENV = {
    ("mqtt", "username"): "CITYNODE_MQTT_USERNAME",
    ("mqtt", "password"): "CITYNODE_MQTT_PASSWORD",
    ("http", "token"): "CITYNODE_HTTP_TOKEN",
    ("http", "secret"): "CITYNODE_HTTP_SECRET",
    ("http", "api_token"): "CITYNODE_API_TOKEN",
    ("amqp", "url"): "CITYNODE_AMQP_URL",
    ("chirpstack", "api_token"): "CITYNODE_CHIRPSTACK_TOKEN",  # as citynode provision
    ("store", "path"): "CITYNODE_STORE_PATH",
}


class _Section:
    """Typed access to one TOML table; remembers which keys were read to report unknown ones."""

    def __init__(self, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{name}: expected a table, got {type(data).__name__}")
        self.name = name
        self.data = data
        self.used: set[str] = set()

    def _raw(self, key: str, default: Any) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def str(self, key: str, default: str, choices: tuple[str, ...] = (), *, upper: bool = False) -> str:
        value = self._raw(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"{self.name}.{key}: expected a string, got {value!r}")
        if upper:  # keywords such as SQLite's PRAGMA values are case-insensitive
            value = value.upper()
        if choices and value not in choices:
            raise ConfigError(f"{self.name}.{key}: must be one of {', '.join(choices)}, got {value!r}")
        return value

    def opt_str(self, key: str) -> str | None:
        value = self._raw(key, None)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{self.name}.{key}: expected a string, got {value!r}")
        return value or None

    def int(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self._raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"{self.name}.{key}: expected an integer in {lo}..{hi}, got {value!r}")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self._raw(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.name}.{key}: expected true or false, got {value!r}")
        return value

    def secret(self, key: str, default: str = "") -> Secret:
        env = _ENV.get((self.name, key))
        value = self._raw(key, default)
        if env and os.environ.get(env):
            return Secret(os.environ[env])
        if not isinstance(value, str):
            raise ConfigError(f"{self.name}.{key}: expected a string")  # never echo a secret
        return Secret(value)

    def table(self, key: str) -> dict[str, Any] | None:
        value = self._raw(key, None)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{self.name}.{key}: expected a table, got {type(value).__name__}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.name}: unknown key(s) {', '.join(unknown)}")


_ENCODINGS = ("json", "protobuf")


def parse_config(doc: Mapping[str, Any], source: str = "") -> Config:
    """Validate a parsed TOML document (plus the environment) into a :class:`Config`."""
    known = {"store", "decode", "mqtt", "http", "amqp", "chirpstack", "log", "sinks"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")

    s = _Section("store", doc.get("store", {}))
    env_path = os.environ.get(_ENV[("store", "path")])
    store = StoreConfig(
        path=env_path or s.str("path", StoreConfig.path),
        synchronous=s.str("synchronous", "FULL", ("FULL", "NORMAL", "EXTRA"), upper=True),
    )
    s.used.add("path")
    s.done()

    s = _Section("decode", doc.get("decode", {}))
    profile_codecs = s.table("profile_codecs") or {}
    for name, codec in profile_codecs.items():
        if not isinstance(codec, str):
            raise ConfigError(f"decode.profile_codecs.{name}: expected a codec name, got {codec!r}")
    decode = PipelineOptions(
        default_codec=s.str("default_codec", "citynode"),
        trust_object=s.bool("trust_object", False),
        codec_tag=s.str("codec_tag", "codec"),
        profile_codecs=dict(profile_codecs),
    )
    s.done()

    s = _Section("mqtt", doc.get("mqtt", {}))
    tls_table = s.table("tls")
    tls = None
    if tls_table is not None:
        t = _Section("mqtt.tls", tls_table)
        tls = TlsConfig(
            ca=t.opt_str("ca"),
            cert=t.opt_str("cert"),
            key=t.opt_str("key"),
            insecure=t.bool("insecure", False),
        )
        t.done()
        for key in ("ca", "cert", "key"):
            path = getattr(tls, key)
            if path and not Path(path).is_file():
                raise ConfigError(f"mqtt.tls.{key}: no such file {path}")
        if bool(tls.cert) != bool(tls.key):
            raise ConfigError("mqtt.tls.cert and mqtt.tls.key: give both or neither")
    mqtt = MqttConfig(
        enabled=s.bool("enabled", False),
        host=s.str("host", "localhost"),
        port=s.int("port", 8883 if tls else 1883, 1, 65535),
        client_id=s.str("client_id", "citynode-gateway"),
        username=s.secret("username"),
        password=s.secret("password"),
        encoding=s.str("encoding", "json", _ENCODINGS),
        topic=s.str("topic", MqttConfig.topic),
        shared_group=s.str("shared_group", ""),
        qos=s.int("qos", 1, 0, 2),
        keepalive=s.int("keepalive", 30, 5, 3600),
        session_expiry=s.int("session_expiry", MqttConfig.session_expiry, 0, 2**32 - 1),
        tls=tls,
        command_topic=s.str("command_topic", MqttConfig.command_topic),
        batch=s.int("batch", MqttConfig.batch, 1, 10_000),
        processes=s.int("processes", 1, 1, 64),
    )
    s.done()
    if not mqtt.client_id:
        raise ConfigError("mqtt.client_id: must not be empty (the persistent session is keyed by it)")
    if mqtt.shared_group and any(c in mqtt.shared_group for c in "/+#"):
        raise ConfigError(f"mqtt.shared_group: must not contain / + or #, got {mqtt.shared_group!r}")
    if mqtt.processes > 1 and not mqtt.shared_group:
        raise ConfigError(
            f"mqtt.processes = {mqtt.processes} needs mqtt.shared_group: the processes split the "
            "events as members of one shared subscription"
        )

    s = _Section("http", doc.get("http", {}))
    http = HttpConfig(
        enabled=s.bool("enabled", True),
        host=s.str("host", "127.0.0.1"),
        port=s.int("port", 8090, 0, 65535),
        ingest=s.bool("ingest", True),
        token=s.secret("token"),
        secret_header=s.str("secret_header", HttpConfig.secret_header),
        secret=s.secret("secret"),
        api_token=s.secret("api_token"),
        max_body=s.int("max_body", HttpConfig.max_body, 1024, 16 * 1024 * 1024),
        default_encoding=s.str("default_encoding", "json", _ENCODINGS),
    )
    s.done()

    s = _Section("amqp", doc.get("amqp", {}))
    amqp = AmqpConfig(
        enabled=s.bool("enabled", False),
        url=s.secret("url", AmqpConfig().url.get()),
        exchange=s.str("exchange", "amq.topic"),
        queue=s.str("queue", "citynode-gateway"),
        routing_key=s.str("routing_key", AmqpConfig.routing_key),
        prefetch=s.int("prefetch", 100, 1, 65535),
        encoding=s.str("encoding", "json", _ENCODINGS),
    )
    s.done()

    s = _Section("chirpstack", doc.get("chirpstack", {}))
    cs = ChirpStackConfig(
        downlink=s.str("downlink", "mqtt", ("mqtt", "grpc")),
        grpc_target=s.str("grpc_target", "localhost:8080"),
        grpc_tls=s.bool("grpc_tls", False),
        api_token=s.secret("api_token"),
        application_id=s.str("application_id", ""),
    )
    s.done()

    s = _Section("log", doc.get("log", {}))
    log = LogConfig(
        level=s.str("level", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        format=s.str("format", "text", ("text", "json")),
    )
    s.done()

    sinks = doc.get("sinks", {})
    if not isinstance(sinks, dict):
        raise ConfigError("sinks: expected a table of sink tables")
    if not (mqtt.enabled or amqp.enabled or (http.enabled and http.ingest)):
        raise ConfigError("no ingest enabled: set mqtt.enabled, amqp.enabled or http.ingest")
    return Config(
        store=store,
        decode=decode,
        mqtt=mqtt,
        http=http,
        amqp=amqp,
        chirpstack=cs,
        log=log,
        sinks=sinks,
        source=source,
    )


def load_config(path: str | Path) -> Config:
    """Read and validate the TOML file at ``path``; raises :class:`ConfigError` naming the problem."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from exc
    return parse_config(doc, str(path))
