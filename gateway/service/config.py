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

The ``[sinks.*]`` tables are kept as plain data in :attr:`Config.sinks` and validated, by the same
:class:`Section` machinery (same error wording, :class:`Secret` for their tokens, passwords and
user names, the environment first), when the sinks are built
(:func:`gateway.service.sinks.config.build_sinks`); their secrets' variables are
``CITYNODE_SINKS_<NAME>_<KEY>``.

Every error names the key by its dotted path and says what was expected: ``<section>.<key>: expected
<what>, got <value>`` (never the value of a secret), ``<section>.<key>: required``, and for keys not
known ``<section>: unknown key(s) <keys> (<section>.<key>: unknown key; known: ...)``.
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
    "Section",
    "StoreConfig",
    "SHARED_SUBSCRIPTION_LOSS",
    "TlsConfig",
    "load_config",
    "parse_config",
]


class Secret:
    """A secret string that never shows itself in ``repr``/``str``/logs. ``.get()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    @classmethod
    def of(cls, value: Secret | str | None) -> Secret:
        """``value`` as a Secret (``None``: the empty secret); for dataclasses that also take strings."""
        if isinstance(value, Secret):
            return value
        return cls(value or "")

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
    # A message larger than this (bytes) is dead-lettered by its size, first bytes and SHA-256.
    max_message: int = 64 * 1024
    # mosquitto 2.0 delivers nothing published while every member of a shared subscription was
    # offline (broker restart, gateway restart): "$share/..." is refused unless this says the
    # operator accepts that loss (docs/reliability.md).
    allow_shared_subscription_loss: bool = False

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
    # s a connection may take to deliver a complete request (head and body), and stay idle between
    # requests; then it is closed (slow or partial requests hold no descriptor for long).
    request_timeout: int = 15
    max_headers: int = 32  # header lines per request; each at most max_header_size bytes
    max_header_size: int = 4096


@dataclass(frozen=True)
class AmqpConfig:
    enabled: bool = False
    url: Secret = field(default_factory=lambda: Secret("amqp://guest:guest@127.0.0.1:5672/"))
    exchange: str = "amq.topic"  # ChirpStack's AMQP integration publishes here by default
    queue: str = "citynode-gateway"
    routing_key: str = "application.*.device.*.event.*"
    prefetch: int = 100
    encoding: str = "json"
    max_message: int = 64 * 1024  # bytes; larger: dead-lettered by size, first bytes and SHA-256


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


class Section:
    """Typed access to one TOML table, the one validator of every part of the gateway's file.

    Each accessor names the key by its dotted path when the value is wrong (``mqtt.port: expected an
    integer in 1..65535, got 'abc'``); :meth:`done` reports the keys no accessor read. Secrets come
    from the environment first: the variable is ``_ENV``'s for the gateway's own sections, else
    ``env_prefix`` + the key in upper case (the sinks' ``CITYNODE_SINKS_<NAME>_``).
    """

    def __init__(
        self, name: str, data: Any, *, environ: Mapping[str, str] | None = None, env_prefix: str = ""
    ) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{name}: expected a table, got {type(data).__name__}")
        self.name = name
        self.data = data
        self.used: set[str] = set()
        self.environ = os.environ if environ is None else environ
        self.env_prefix = env_prefix

    def _raw(self, key: str, default: Any) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def error(self, key: str, expected: str) -> ConfigError:
        """``<section>.<key>: expected <expected>, got <value>`` (for checks beyond the accessors')."""
        return ConfigError(f"{self.name}.{key}: expected {expected}, got {self.data.get(key)!r}")

    def str(self, key: str, default: str, choices: tuple[str, ...] = (), *, upper: bool = False) -> str:
        value = self._raw(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"{self.name}.{key}: expected a string, got {value!r}")
        if upper:  # keywords such as SQLite's PRAGMA values are case-insensitive
            value = value.upper()
        if choices and value not in choices:
            raise ConfigError(f"{self.name}.{key}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    def opt_str(
        self, key: str, default: str | None = None, *, required: bool = False, nonempty: bool = False
    ) -> str | None:
        """A string or ``None`` (absent; empty too unless ``nonempty``, which refuses it)."""
        value = self._raw(key, default)
        if value is None and required:
            raise ConfigError(f"{self.name}.{key}: required")
        if value is not None and (not isinstance(value, str) or (nonempty and not value)):
            raise self.error(key, "a non-empty string" if nonempty else "a string")
        return value or None

    def int(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self._raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"{self.name}.{key}: expected an integer in {lo}..{hi}, got {value!r}")
        return value

    def float(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self._raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise ConfigError(f"{self.name}.{key}: expected a number in {lo}..{hi}, got {value!r}")
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self._raw(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.name}.{key}: expected true or false, got {value!r}")
        return value

    def secret(self, key: str, default: str = "") -> Secret:
        env = _ENV.get((self.name, key)) or (
            f"{self.env_prefix}{key.upper()}" if self.env_prefix else None
        )
        value = self._raw(key, default)
        if env and self.environ.get(env):
            return Secret(self.environ[env])
        if not isinstance(value, str):
            raise ConfigError(f"{self.name}.{key}: expected a string")  # never echo a secret
        return Secret(value)

    def table(self, key: str) -> dict[str, Any] | None:
        value = self._raw(key, None)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{self.name}.{key}: expected a table, got {type(value).__name__}")
        return value

    def done(self, known: set[str] | frozenset[str] | None = None) -> None:
        """Refuse the keys no accessor read (and not in ``known``: keys read elsewhere)."""
        unknown = sorted(set(self.data) - self.used - (known or set()))
        if unknown:
            first = f"{self.name}.{unknown[0]}"
            allowed = ", ".join(sorted(self.used | (known or set())))
            raise ConfigError(
                f"{self.name}: unknown key(s) {', '.join(unknown)} ({first}: unknown key; known: {allowed})"
            )


_ENCODINGS = ("json", "protobuf")

SHARED_SUBSCRIPTION_LOSS = (
    "mqtt.shared_group loses events on this broker: mosquitto 2.0 delivers "
    "nothing published while every member of a shared subscription is offline (a broker restart, a "
    "gateway restart or kill), even to persistent sessions. Safe alternatives: one gateway without "
    "shared_group (a persistent session, QoS 1), or ChirpStack's AMQP integration with [amqp] and several "
    "gateways on one durable queue (competing consumers). To run it anyway, set "
    "mqtt.allow_shared_subscription_loss = true (see docs/reliability.md)"
)


def _owner_only(path: str, key: str) -> None:
    """Refuse a secret file (a private key, a token) that its group or others may read."""
    mode = Path(path).stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"{key}: {path} is readable by group or others (mode {mode:04o}); fix it with: chmod 600 {path}"
        )


def parse_config(doc: Mapping[str, Any], source: str = "") -> Config:
    """Validate a parsed TOML document (plus the environment) into a :class:`Config`."""
    known = {"store", "decode", "mqtt", "http", "amqp", "chirpstack", "log", "sinks"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")

    s = Section("store", doc.get("store", {}))
    env_path = os.environ.get(_ENV[("store", "path")])
    store = StoreConfig(
        path=env_path or s.str("path", StoreConfig.path),
        synchronous=s.str("synchronous", "FULL", ("FULL", "NORMAL", "EXTRA"), upper=True),
    )
    s.used.add("path")
    s.done()

    s = Section("decode", doc.get("decode", {}))
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

    s = Section("mqtt", doc.get("mqtt", {}))
    tls_table = s.table("tls")
    tls = None
    if tls_table is not None:
        t = Section("mqtt.tls", tls_table)
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
        if tls.key:
            _owner_only(tls.key, "mqtt.tls.key")
        if bool(tls.cert) != bool(tls.key):
            raise ConfigError("mqtt.tls.cert and mqtt.tls.key: give both or neither")
    s.used.add("processes")  # accepted as 1 only (see below)
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
        max_message=s.int("max_message", MqttConfig.max_message, 1024, 256 * 1024 * 1024),
        allow_shared_subscription_loss=s.bool("allow_shared_subscription_loss", False),
    )
    s.done()
    if not mqtt.client_id:
        raise ConfigError("mqtt.client_id: must not be empty (the persistent session is keyed by it)")
    if mqtt.shared_group and any(c in mqtt.shared_group for c in "/+#"):
        raise ConfigError(f"mqtt.shared_group: must not contain / + or #, got {mqtt.shared_group!r}")
    if s.data.get("processes", 1) != 1:
        # Removed: it split the stream through a shared subscription (which loses events across a
        # broker restart on mosquitto 2.0) and gained nothing over a second instance (bench/RESULTS.md).
        raise ConfigError(
            "mqtt.processes was removed: its processes shared a subscription, which loses events when the "
            "broker restarts, and they were no faster than a second gateway (docs/reliability.md); use one "
            "gateway per store, or [amqp] with several gateways on one durable queue"
        )
    if mqtt.shared_group and not mqtt.allow_shared_subscription_loss:
        raise ConfigError(SHARED_SUBSCRIPTION_LOSS)

    s = Section("http", doc.get("http", {}))
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
        request_timeout=s.int("request_timeout", HttpConfig.request_timeout, 1, 3600),
        max_headers=s.int("max_headers", HttpConfig.max_headers, 8, 1024),
        max_header_size=s.int("max_header_size", HttpConfig.max_header_size, 1024, 65536),
    )
    s.done()

    s = Section("amqp", doc.get("amqp", {}))
    amqp = AmqpConfig(
        enabled=s.bool("enabled", False),
        url=s.secret("url", AmqpConfig().url.get()),
        exchange=s.str("exchange", "amq.topic"),
        queue=s.str("queue", "citynode-gateway"),
        routing_key=s.str("routing_key", AmqpConfig.routing_key),
        prefetch=s.int("prefetch", 100, 1, 65535),
        encoding=s.str("encoding", "json", _ENCODINGS),
        max_message=s.int("max_message", AmqpConfig.max_message, 1024, 256 * 1024 * 1024),
    )
    s.done()

    s = Section("chirpstack", doc.get("chirpstack", {}))
    cs = ChirpStackConfig(
        downlink=s.str("downlink", "mqtt", ("mqtt", "grpc")),
        grpc_target=s.str("grpc_target", "localhost:8080"),
        grpc_tls=s.bool("grpc_tls", False),
        api_token=s.secret("api_token"),
        application_id=s.str("application_id", ""),
    )
    s.done()

    s = Section("log", doc.get("log", {}))
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
