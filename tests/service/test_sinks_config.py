"""``[sinks.*]`` tables of the gateway's TOML file become sinks; bad keys fail naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.service.config import Secret, parse_config
from gateway.service.outbox import Delivery
from gateway.service.sinks import MqttSink, NgsiLdSink, SensorThingsSink
from gateway.service.sinks.config import build_sinks
from gateway.service.store import Store

EXAMPLE = """
[sinks.ngsild]
url = "http://orion-ld:1026"
tenant = "gelsenkirchen"
default_location = [7.0857, 51.5177]
batch_size = 50

[sinks.sensorthings]
url = "http://frost:8080/FROST-Server/v1.1"
default_location = [7.0857, 51.5177]
username = "citynode"

[sinks.mqtt]
host = "mqtt.example.org"
port = 8883
tls = true
topic_prefix = "gelsenkirchen/citynode"

[sinks.partner]
type = "ngsild"
url = "https://partner.example.org"
enabled = false
"""


def build(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> list[Any]:
    return build_sinks(tomllib.loads(text)["sinks"], store_path=str(tmp_path / "gw.sqlite"), environ=environ or {})


def test_the_readme_example_builds_three_sinks_with_defaults(tmp_path: Path) -> None:
    specs = build(EXAMPLE, tmp_path)
    ngsild, sta, mqtt = (s.sink for s in specs)
    assert isinstance(ngsild, NgsiLdSink) and ngsild.name == "ngsild"
    assert ngsild.config.context is None and ngsild.config.tenant == "gelsenkirchen"  # per type: subject + citynode
    assert ngsild.config.default_location == (7.0857, 51.5177)
    assert specs[0].worker_options["batch_size"] == 50 and specs[1].worker_options["batch_size"] == 100
    assert isinstance(sta, SensorThingsSink) and sta.config.id_cache == str(tmp_path / "gw.sqlite")
    assert sta.config.default_location == (7.0857, 51.5177)
    assert isinstance(mqtt, MqttSink) and (mqtt.config.port, mqtt.config.tls, mqtt.config.qos) == (8883, True, 1)
    assert [s.sink.name for s in specs] == ["ngsild", "sensorthings", "mqtt"]  # partner is disabled


def test_secrets_come_from_the_environment_first(tmp_path: Path) -> None:
    env = {"CITYNODE_SINKS_NGSILD_TOKEN": "from-env", "CITYNODE_SINKS_SENSORTHINGS_PASSWORD": "pw",
           "CITYNODE_SINKS_MQTT_PASSWORD": "mq"}
    text = EXAMPLE.replace('tenant = "gelsenkirchen"', 'token = "from-file"')
    ngsild, sta, mqtt = (s.sink for s in build(text, tmp_path, env))
    assert ngsild.config.token.get() == "from-env"
    assert (sta.config.username.get(), sta.config.password.get()) == ("citynode", "pw")
    assert mqtt.config.password.get() == "mq"


def test_sink_secrets_are_secrets_never_shown(tmp_path: Path) -> None:
    env = {"CITYNODE_SINKS_NGSILD_TOKEN": "tok-123", "CITYNODE_SINKS_MQTT_PASSWORD": "pw-456"}
    text = EXAMPLE.replace('username = "citynode"', 'username = "citynode"\npassword = "pw-789"')
    specs = build(text, tmp_path, env)
    ngsild, sta, mqtt = (s.sink for s in specs)
    assert all(isinstance(v, Secret) for v in (ngsild.config.token, sta.config.username,
                                               sta.config.password, sta.config.token, mqtt.config.password))
    shown = repr(specs)
    assert "tok-123" not in shown and "pw-456" not in shown and "pw-789" not in shown


def test_a_bad_sink_secret_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sinks\.ngsild\.token: expected a string") as info:
        build('[sinks.ngsild]\nurl = "u"\ntoken = ["hunter2"]', tmp_path)
    assert "hunter2" not in str(info.value)


def test_sink_errors_read_like_the_rest_of_the_file(tmp_path: Path) -> None:
    """One validator: the same words for the same mistake in [mqtt] and in [sinks.mqtt]."""
    with pytest.raises(ConfigError) as sink_error:
        build('[sinks.mqtt]\nhost = "h"\nport = "abc"', tmp_path)
    with pytest.raises(ConfigError) as ingest_error:
        parse_config({"mqtt": {"enabled": True, "port": "abc"}})
    assert str(sink_error.value) == "sinks." + str(ingest_error.value)
    with pytest.raises(ConfigError, match=r"^sinks\.mqtt: unknown key\(s\) prot \(sinks\.mqtt\.prot: unknown key"):
        build('[sinks.mqtt]\nhost = "h"\nprot = 1', tmp_path)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[sinks.ngsild]\ntenant = "x"', "sinks.ngsild.url: required"),
        ('[sinks.ngsild]\nurl = "http://b"\ntimeout = 3', "sinks.ngsild.timeout: unknown key"),
        ('[sinks.kafka]\nurl = "http://b"', "sinks.kafka.type: expected one of mqtt, ngsild, sensorthings"),
        ('[sinks.mqtt]\nhost = "h"\nport = 70000', "sinks.mqtt.port: expected an integer in 1..65535"),
        ('[sinks.mqtt]\nhost = "h"\nqos = 3', "sinks.mqtt.qos"),
        ('[sinks.mqtt]\nhost = "h"\ntls = "yes"', "sinks.mqtt.tls: expected true or false"),
        ('[sinks.sensorthings]\nurl = "u"\ndefault_location = [51.5, 700]', "sinks.sensorthings.default_location"),
        ('[sinks.ngsild]\nurl = "u"\nbatch_size = 0', "sinks.ngsild.batch_size"),
        ('[sinks.ngsild]\nurl = "u"\ncontext = []', "sinks.ngsild.context"),
        ('[sinks.ngsild]\nurl = "u"\nretry_initial_s = 10\nretry_max_s = 5', "sinks.ngsild.retry_max_s"),
    ],
)
def test_bad_keys_fail_naming_the_key(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build(table, tmp_path)


def test_per_sink_worker_options_reach_the_workers(tmp_path: Path) -> None:
    specs = build(EXAMPLE, tmp_path)
    store = Store.open(tmp_path / "gw.sqlite")
    try:
        delivery = Delivery(store, specs, poll_interval_s=0.5)
        sizes = {w.name: (w.batch_size, w.poll_interval_s) for w in delivery.workers}
        assert sizes == {"ngsild": (50, 0.5), "sensorthings": (100, 0.5), "mqtt": (100, 0.5)}
    finally:
        store.close()
