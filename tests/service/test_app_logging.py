"""Structured logs: JSON lines with the context as fields, payloads only as hex, secrets never."""

from __future__ import annotations

import io
import json
import logging

from gateway.service.config import LogConfig, parse_config
from gateway.service.pipeline import Pipeline
from gateway.service.runtime import configure_logging


def test_json_log_lines_carry_context_and_no_secrets_or_raw_bytes(store, events, monkeypatch):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(LogConfig(format="json"), stream)
        monkeypatch.setenv("CITYNODE_MQTT_PASSWORD", "pw-should-not-leak")
        cfg = parse_config({"mqtt": {"enabled": True}})
        logging.getLogger("citynode.test").info("config loaded", extra={"config": cfg})
        payload = b"\x82\x01\xfe\xed"
        Pipeline(store).handle("up", events.body(events.up(data=payload)), "json", "mqtt")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    text = stream.getvalue()
    assert "pw-should-not-leak" not in text
    warning = next(line for line in lines if line["message"] == "uplink not decoded")
    assert warning["level"] == "WARNING" and warning["dev_eui"] == "0004a30b001c0530"
    assert payload.hex() in warning["reason"]  # the payload appears as hex only
    assert "\\u00fe" not in text and "\\ufffd" not in text
