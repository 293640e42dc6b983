"""Parsing ChirpStack v4 integration events, JSON and protobuf, into Uplinks; bad bodies name the reason."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from gateway.errors import DecodeError
from gateway.service.ingest.events import (
    encoding_for_content_type,
    parse_event,
    parse_mqtt_topic,
    parse_routing_key,
    uplink_from_event,
)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_uplink_event_becomes_an_uplink_with_best_gateway(events, encoding):
    msg = events.up(
        f_cnt=42,
        data=b"\x01\x02",
        f_port=10,
        rx=[("0016c001ff10a236", -110, -3.0), ("0016C001FF10A235", -87, 7.5)],
    )
    up = uplink_from_event(parse_event("up", events.body(msg, encoding), encoding))
    assert (up.dev_eui, up.f_port, up.f_cnt, up.data) == ("0004a30b001c0530", 10, 42, b"\x01\x02")
    assert up.deduplication_id == msg.deduplication_id
    assert up.received_at == datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    assert up.tags == {"district": "altstadt"} and up.device_name == "node-0530"
    assert up.device_profile_name == "citynode-eu868"
    r = up.radio
    assert (r.rssi, r.snr, r.gateway_id, r.spreading_factor, r.frequency, r.gateway_count) == (
        -87,
        7.5,
        "0016c001ff10a235",
        7,
        868100000,
        2,
    )


def test_json_is_chirpstacks_camel_case_with_base64_data(events):
    body = json.loads(events.body(events.up(data=b"\xde\xad"), "json"))
    assert body["deviceInfo"]["devEui"] == "0004a30b001c0530"
    assert body["data"] == base64.b64encode(b"\xde\xad").decode()
    assert body["txInfo"]["modulation"]["lora"]["spreadingFactor"] == 7
    assert {"deduplicationId", "time", "fPort", "fCnt", "rxInfo"} <= body.keys()


def test_unknown_json_fields_from_a_newer_chirpstack_are_ignored(events):
    body = json.loads(events.body(events.up(), "json"))
    body["someFutureField"] = {"x": 1}
    assert parse_event("up", json.dumps(body), "json").dev_eui == "0004a30b001c0530"


def test_uplink_without_rx_info_has_empty_radio(events):
    up = uplink_from_event(parse_event("up", events.body(events.up(rx=[]), "protobuf"), "protobuf"))
    assert (up.radio.rssi, up.radio.snr, up.radio.gateway_count) == (None, None, 0)


@pytest.mark.parametrize(
    ("kind", "encoding", "body", "reason"),
    [
        ("up", "json", b"{not json", "invalid JSON"),
        ("up", "json", b"[1, 2]", "not an object"),
        ("up", "json", b'{"data": "***not base64***"}', "data is not valid base64"),
        ("up", "json", b'{"data": "QUJDR"}', "data is not valid base64"),  # 5 chars: impossible length
        ("up", "json", b'{"data": 12}', "data is not valid base64"),
        ("up", "json", b'{"fCnt": "many"}', "invalid JSON"),
        ("up", "json", b"\xff\xfe", "not UTF-8"),
        ("up", "protobuf", b"\xff\xff\xff\xff", "invalid protobuf UplinkEvent"),
        ("up", "protobuf", b"\x0a\x05ab", "invalid protobuf"),  # truncated length-delimited field
        ("bogus", "json", b"{}", "unknown ChirpStack event type 'bogus'"),
        ("up", "xml", b"<up/>", "unknown event encoding"),
    ],
)
def test_unparsable_bodies_raise_decode_error_with_reason(kind, encoding, body, reason):
    with pytest.raises(DecodeError, match=reason):
        parse_event(kind, body, encoding)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda m: setattr(m.device_info, "dev_eui", "xyz"), "devEui must be 16 hex digits"),
        (lambda m: setattr(m, "deduplication_id", ""), "deduplicationId missing"),
    ],
)
def test_uplink_lacking_identity_is_rejected(events, mutate, reason):
    msg = events.up()
    mutate(msg)
    with pytest.raises(DecodeError, match=reason):
        uplink_from_event(parse_event("up", events.body(msg, "protobuf"), "protobuf"))


@pytest.mark.parametrize(
    ("kind", "dedup"),
    [("join", "join-1"), ("status", "status-1"), ("ack", "ack-1"), ("txack", "99"), ("log", None)],
)
@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_other_events_parse_with_their_dedup_id(events, kind, dedup, encoding):
    ev = parse_event(kind, events.body(getattr(events, kind)(), encoding), encoding)
    assert (ev.kind, ev.dev_eui, ev.dedup_id) == (kind, "0004a30b001c0530", dedup)


def test_topics_and_routing_keys():
    assert parse_mqtt_topic("application/abc/device/0004A30B001C0530/event/up") == (
        "abc",
        "0004a30b001c0530",
        "up",
    )
    assert parse_routing_key("application.abc.device.0004a30b001c0530.event.join") == (
        "abc",
        "0004a30b001c0530",
        "join",
    )
    with pytest.raises(DecodeError, match="not a ChirpStack event topic"):
        parse_mqtt_topic("application/abc/device/x/command/down")


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/octet-stream", "protobuf"),
        ("application/x-protobuf", "protobuf"),
        (None, "json"),
    ],
)
def test_content_types(content_type, encoding):
    assert encoding_for_content_type(content_type) == encoding


def test_unsupported_content_type_is_named():
    with pytest.raises(DecodeError, match="text/html"):
        encoding_for_content_type("text/html")
