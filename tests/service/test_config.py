"""The TOML configuration: defaults, validation naming the field, environment secrets, masking."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.service.config import load_config, parse_config

EXAMPLE = """
[store]
path = "/var/lib/citynode/gateway.sqlite"
synchronous = "FULL"

[decode]
trust_object = false
codec_tag = "codec"
profile_codecs = { "vendor-bins" = "chirpstack-object" }

[mqtt]
enabled = true
host = "mqtt.example.org"
client_id = "citynode-gw-1"
shared_group = "citynode"
allow_shared_subscription_loss = true  # docs/reliability.md: mosquitto 2.0 loses what a restart hides
encoding = "protobuf"
username = "gateway"
tls = { ca = "CA_PATH" }

[http]
host = "0.0.0.0"
port = 8090
token = "from-file"

[amqp]
enabled = true
queue = "citynode"
prefetch = 50

[chirpstack]
downlink = "grpc"
grpc_target = "chirpstack:8080"

[log]
format = "json"

[sinks.ngsi]
type = "ngsi-ld"
url = "http://orion:1026"
"""


def test_example_config_loads(tmp_path, monkeypatch):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    path = tmp_path / "gw.toml"
    path.write_text(EXAMPLE.replace("CA_PATH", str(ca)))
    monkeypatch.setenv("CITYNODE_MQTT_PASSWORD", "env-pw")
    monkeypatch.setenv("CITYNODE_HTTP_TOKEN", "env-token")
    cfg = load_config(path)
    assert cfg.mqtt.subscription == "$share/citynode/application/+/device/+/event/+"
    assert cfg.mqtt.port == 8883  # TLS default
    assert (cfg.mqtt.password.get(), cfg.http.token.get()) == ("env-pw", "env-token")  # environment wins
    assert cfg.decode.profile_codecs == {"vendor-bins": "chirpstack-object"}
    assert cfg.sinks["ngsi"]["type"] == "ngsi-ld"
    assert cfg.amqp.prefetch == 50 and cfg.chirpstack.downlink == "grpc" and cfg.log.format == "json"
    assert "env-pw" not in repr(cfg) and "env-token" not in repr(cfg) and "guest" not in repr(cfg)


@pytest.mark.parametrize(
    ("doc", "names"),
    [
        ({"mqtt": {"enabled": True, "port": "abc"}}, "mqtt.port"),
        ({"mqtt": {"enabled": True, "prot": 1883}}, "mqtt: unknown key(s) prot"),
        ({"mqtt": {"enabled": True, "encoding": "xml"}}, "mqtt.encoding"),
        ({"mqtt": {"enabled": True, "client_id": ""}}, "mqtt.client_id"),
        ({"mqtt": {"enabled": True, "shared_group": "a/b"}}, "mqtt.shared_group"),
        ({"mqtt": {"enabled": True, "tls": {"ca": "/nonexistent.pem"}}}, "mqtt.tls.ca"),
        ({"http": {"max_body": 10}}, "http.max_body"),
        ({"store": {"synchronous": "OFF"}}, "store.synchronous"),
        ({"amqp": {"enabled": "yes"}}, "amqp.enabled"),
        ({"decode": {"profile_codecs": {"p": 1}}}, "decode.profile_codecs.p"),
        ({"mqtt": {"password": 123}}, "mqtt.password"),
        ({"nonsense": {}}, "unknown section(s) nonsense"),
        ({"http": {"ingest": False}}, "no ingest enabled"),
    ],
)
def test_invalid_values_name_the_field(doc, names):
    with pytest.raises(ConfigError, match=names.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        parse_config(doc)


def test_a_bad_secret_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        parse_config({"mqtt": {"password": ["hunter2"]}})
    assert "hunter2" not in str(info.value)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_store_path_from_environment(monkeypatch):
    monkeypatch.setenv("CITYNODE_STORE_PATH", "/tmp/x.sqlite")
    assert parse_config({}).store.path == "/tmp/x.sqlite"
