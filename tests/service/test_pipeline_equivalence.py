"""The gateway's fast paths give exactly what the slow, general ones give.

* ``events.parse_event`` parses JSON events with ``google.protobuf.json_format`` (the one general
  path); for every body (ChirpStack's own shapes and the unusual ones the proto3 JSON mapping also
  allows) the message equals what ``json_format.Parse`` makes of it, and bodies json_format rejects
  are still rejected. The one JSON fast path, ``json_fast.uplink_from_json``, makes the same Uplink
  of ChirpStack's own shapes and steps aside for the rest (see also ``test_ingest_json_fast.py``).
* ``normalize`` handles plain scalar fields inline; the readings equal those of the generic flattener.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf import json_format

from gateway.errors import DecodeError
from gateway.service.ingest import events as chirpstack
from gateway.service.ingest.events import EVENT_TYPES, parse_event
from gateway.service.ingest.json_fast import uplink_from_json

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def slow_parse(kind: str, body: str):
    message = EVENT_TYPES[kind]()
    json_format.Parse(body, message, ignore_unknown_fields=True)
    return message


def general_uplink(body: str):
    return chirpstack.uplink_from_event(parse_event("up", body, "json"), received_at=NOW)


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
def test_every_chirpstack_event_type_takes_the_fast_path_and_equals_json_format(events, kind):
    if kind == "location":
        from chirpstack_api import integration

        msg = integration.LocationEvent(deduplication_id="loc-1", device_info=events.device_info())
        msg.location.latitude, msg.location.longitude = 51.5055, 7.1021
    else:
        msg = getattr(events, kind)()
    body = json_format.MessageToJson(msg)
    assert parse_event(kind, body, "json").message == slow_parse(kind, body) == msg
    if kind == "up":
        assert uplink_from_json(body.encode(), NOW) == general_uplink(body)


FPORTS = {"device_status": 1, "air_quality": 10, "bin_fill": 11, "passenger_count": 12, "crowd_count": 13}
GATEWAYS = [("0016c001ff10a235", -87, 7.25), ("0016c001ff10a236", -104, 1.5), ("0016c001ff10a237", -117, -6.75)]


@pytest.fixture(scope="module")
def js_codec():
    """``codecs/chirpstack/citynode.js`` in QuickJS, called as ChirpStack calls a device profile's codec."""
    import quickjs

    ctx = quickjs.Context()
    ctx.eval((Path(__file__).resolve().parents[2] / "codecs" / "chirpstack" / "citynode.js").read_text("utf-8"))

    def decode_uplink(f_port: int, data: bytes) -> dict:
        arg = json.dumps({"fPort": f_port, "bytes": list(data), "variables": {}})
        return json.loads(ctx.eval(f"JSON.stringify(decodeUplink({arg}))"))

    return decode_uplink


def chirpstack_up(events, js_codec, kind: str = "air_quality", gateways: int = 1):
    """An up event as ChirpStack v4 sends it for a citynode device: the payload a node sends, ``object``
    as the device profile's JS codec decodes it, ``gateways`` receiving gateways with their metadata,
    ``txInfo``, tags, region."""
    from chirpstack_api import common, gw

    from gateway.contract import codec

    samples = json.loads((Path(__file__).resolve().parents[2] / "codecs" / "samples.json").read_text("utf-8"))
    payload = codec.encode_uplink(kind, samples[kind])
    msg = events.up(data=payload, f_port=FPORTS[kind], rx=GATEWAYS[:gateways],
                    tags={"district": "buer", "role": kind})
    msg.object.update(js_codec(FPORTS[kind], payload)["data"])
    msg.region_config_id = "eu868"
    msg.device_info.device_class_enabled = common.DeviceClass.CLASS_A
    for rx in msg.rx_info:
        rx.gw_time.CopyFrom(msg.time)
        rx.ns_time.CopyFrom(msg.time)
        rx.context = b"\x12\x34\x56\x78"
        rx.crc_status = gw.CRCStatus.CRC_OK
        rx.metadata["region_config_id"] = "eu868"
        rx.metadata["region_common_name"] = "EU868"
        rx.location.latitude, rx.location.longitude = 51.5055, 7.1021
    return msg


@pytest.mark.parametrize("gateways", [1, 2, 3])
@pytest.mark.parametrize("kind", sorted(FPORTS))
def test_chirpstack_uplinks_with_object_take_the_fast_path_and_equal_json_format(events, js_codec, kind, gateways):
    msg = chirpstack_up(events, js_codec, kind, gateways)
    body = json_format.MessageToJson(msg)
    assert json.loads(body)["object"]["type"] == kind and len(json.loads(body)["rxInfo"]) == gateways
    assert parse_event("up", body, "json").message == slow_parse("up", body) == msg
    fast = uplink_from_json(body.encode(), NOW)
    assert fast is not None and fast == general_uplink(body)
    assert fast.radio.gateway_count == gateways and fast.radio.rssi == -87


def test_the_throughput_benchmark_publishes_such_uplinks():
    """bench/gateway_throughput.py's events: object, one to three gateways, txInfo, tags; fast path."""
    import importlib.util
    import sys

    bench = sys.modules.get("gateway_throughput")
    if bench is None:
        spec = importlib.util.spec_from_file_location(
            "gateway_throughput", Path(__file__).resolve().parents[2] / "bench" / "gateway_throughput.py"
        )
        assert spec and spec.loader
        bench = importlib.util.module_from_spec(spec)
        sys.modules["gateway_throughput"] = bench  # its dataclasses look their module up
        spec.loader.exec_module(bench)
    counts = set()
    for _topic, _dedup, body in bench.build_events(60, "json"):
        doc = json.loads(body)
        assert doc["object"]["type"] and doc["object"]["readings"] and doc["deviceInfo"]["tags"]
        assert doc["txInfo"]["modulation"]["lora"]["spreadingFactor"] in range(7, 13)
        counts.add(len(doc["rxInfo"]))
        fast = uplink_from_json(body, NOW)
        assert fast is not None and fast == general_uplink(body.decode())
    assert counts == {1, 2, 3}


def up_doc(events, js_codec, **changes):
    msg = chirpstack_up(events, js_codec)
    msg.data = b"\x01\x02\x03\xfe"  # the base64 cases below change this value
    doc = json.loads(json_format.MessageToJson(msg))
    for key, value in changes.items():
        if key.startswith("-"):  # "-fCnt": drop that key
            doc.pop(key[1:])
        else:
            doc[key] = value
    return doc


# (what, changes to the JSON document of an uplink, does the fast path take it itself)
CASES = [
    ("as ChirpStack writes it", {}, True),
    ("nanosecond time", {"time": "2026-05-04T12:00:00.123456789Z"}, True),
    ("time with an offset", {"time": "2026-05-04T14:00:00.5+02:00"}, True),
    ("time with a negative offset", {"time": "2026-05-04T09:30:00-02:30"}, True),
    ("unknown field (newer ChirpStack)", {"futureField": {"x": 1}}, True),
    # json_format accepts proto names; the fast path leaves them to it (ChirpStack writes JSON names).
    ("proto field names instead of JSON names", {"-fCnt": 0, "-fPort": 0, "f_cnt": 7, "f_port": 11}, False),
    ("same field by both names (json_format: the last wins)", {"fCnt": 1, "f_cnt": 2}, False),
    (
        "unknown enum name (ignored like an unknown field)",
        {"txInfo": {"modulation": {"lora": {"codeRate": "CR_9_9"}}}},
        False,
    ),
    ("url-safe base64", {"data": "AQID_g=="}, False),
    ("unpadded base64", {"data": "AQID/g"}, False),
    ("fCnt as a string (allowed for numbers)", {"fCnt": "7"}, False),
    ("fCnt as 7.0", {"fCnt": 7.0}, False),
    ("null field", {"fPort": None}, False),
    ("trusted object (Struct)", {"object": {"type": "air_quality", "readings": [{"pm10": 14.3}]}}, True),
    ("empty txInfo object still present", {"txInfo": {}}, True),
    ("enum by number", {"txInfo": {"modulation": {"lora": {"codeRate": 1}}}}, False),
]


@pytest.mark.parametrize("what,changes,fast", CASES, ids=[c[0] for c in CASES])
def test_uplink_variants_parse_exactly_like_json_format(events, js_codec, what, changes, fast):
    body = json.dumps(up_doc(events, js_codec, **changes))
    expected = slow_parse("up", body)
    assert parse_event("up", body, "json").message == expected
    fast_uplink = uplink_from_json(body.encode(), NOW)
    if fast:
        assert fast_uplink is not None and fast_uplink == general_uplink(body)
    else:
        assert fast_uplink is None


# Bodies json_format refuses: parse_event must refuse them too, naming the event type.
REJECTED = [
    ("fCnt is a bool", {"fCnt": True}),
    ("fCnt has a fraction", {"fCnt": 7.5}),
    ("fCnt out of range", {"fCnt": 2**40}),
    ("devAddr is a number", {"devAddr": 12}),
    ("lower-case time zone", {"time": "2026-05-04T12:00:00z"}),
    ("rxInfo is not a list", {"rxInfo": {"rssi": -80}}),
    ("time is not RFC 3339", {"time": "yesterday"}),
    ("time with a final newline", {"time": "2026-05-04T12:00:00Z\n"}),
    ("snr beyond float32", {"rxInfo": [{"snr": 1e39}]}),
    ("two oneof members", {"txInfo": {"modulation": {"lora": {}, "fsk": {}}}}),
]


@pytest.mark.parametrize("what,changes", REJECTED, ids=[c[0] for c in REJECTED])
def test_bodies_json_format_rejects_are_rejected(events, js_codec, what, changes):
    body = json.dumps(up_doc(events, js_codec, **changes))
    with pytest.raises(json_format.ParseError):
        slow_parse("up", body)
    with pytest.raises(DecodeError, match="up event"):
        parse_event("up", body, "json")


def test_duplicate_json_keys_are_rejected(events, js_codec):
    body = json.dumps(up_doc(events, js_codec))[:-1] + ', "fCnt": 9}'
    with pytest.raises(DecodeError, match="duplicate JSON key 'fCnt'"):
        parse_event("up", body, "json")


def test_normalize_fast_scalars_equal_the_generic_flattener(make_uplink):
    from gateway.contract import normalize as norm

    uplink = make_uplink(received_at=datetime(2026, 5, 4, 12, tzinfo=UTC))
    decoded = {
        "type": "passenger_count",
        "version": 1,
        "readings": [
            {"interval": 300, "doors": [{"door": 0, "boardings": 3, "alightings": 1}], "occupancy": 45,
             "battery": 3.9, "offset_s": 0},
            {"interval": 300, "occupancy": 40, "battery": 3.91, "offset_s": 300},
        ],
    }
    fast = norm.normalize(decoded, uplink)
    original = norm._PLAIN
    try:
        norm._PLAIN = frozenset()  # every field through _flatten
        slow = norm.normalize(decoded, uplink)
    finally:
        norm._PLAIN = original
    assert fast == slow
    assert [r.field for r in fast][:5] == [
        "interval",
        "doors.0.door",
        "doors.0.boardings",
        "doors.0.alightings",
        "occupancy",
    ]
    assert fast[-1].time == datetime(2026, 5, 4, 11, 55, tzinfo=UTC)


@pytest.mark.parametrize(
    "seconds,nanos",
    [(0, 0), (1777896000, 999_999_999), (-62135596800, 0), (253402300799, 999_999_999), (-1, 999_999_999)],
)
def test_uplink_time_equals_timestamp_to_datetime(events, seconds, nanos):
    msg = events.up()
    msg.time.seconds, msg.time.nanos = seconds, nanos
    up = chirpstack.uplink_from_event(parse_event("up", msg.SerializeToString(), "protobuf"))
    assert up.received_at == msg.time.ToDatetime(tzinfo=UTC)


def test_uplink_time_beyond_datetime_is_a_decode_error(events):
    msg = events.up()
    msg.time.seconds = 2**62  # protobuf carries any int64
    with pytest.raises(DecodeError, match="time out of range"):
        chirpstack.uplink_from_event(parse_event("up", msg.SerializeToString(), "protobuf"))


def test_an_uplink_with_chirpstacks_object_takes_the_fast_path_and_stores_what_protobuf_stores(events, store):
    """A device with a codec gets ``object`` in every up event; the pipeline still takes the fast path
    (no protobuf message is built) and prepares the readings the protobuf body gives."""
    from gateway.contract import codec
    from gateway.service.pipeline import Pipeline

    payload = codec.encode_uplink("bin_fill", {"distance": 850, "fill_level": 62, "temperature": 18.5,
                                               "tilt": False, "battery": 3.61})
    msg = events.up(data=payload, f_port=11)
    msg.object.update(codec.decode(11, payload))
    pipeline = Pipeline(store)
    fast = pipeline.prepare("up", events.body(msg, "json"), "json", "mqtt", received_at=NOW)
    slow = pipeline.prepare("up", events.body(msg, "protobuf"), "protobuf", "mqtt", received_at=NOW)
    assert fast.event is None, "the JSON fast path was not taken"
    assert fast.uplink == slow.uplink and fast.readings == slow.readings and len(fast.readings) == 5
