"""The JSON fast path makes exactly the Uplink the general path makes, or steps aside.

``uplink_from_json(body)`` either returns ``None`` (the pipeline then takes ``parse_event`` +
``uplink_from_event``) or the very Uplink the general path makes of that body; it never accepts a
body the general path refuses. Checked on ChirpStack's own shapes (which it must take: that is
its point), on a table of unusual and broken forms, and on randomly mutated bodies.
"""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import DecodeError
from gateway.service.ingest import events as chirpstack
from gateway.service.ingest.json_fast import uplink_from_json

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
REFUSED = "refused"


def general(body: bytes) -> Any:
    """What the general path makes of ``body``: an Uplink, or REFUSED."""
    try:
        return chirpstack.uplink_from_event(chirpstack.parse_event("up", body, "json"), received_at=NOW)
    except DecodeError:
        return REFUSED


def assert_same_or_steps_aside(body: bytes) -> Any:
    fast = uplink_from_json(body, NOW)
    if fast is not None:
        assert fast == general(body), body
    return fast


# ChirpStack's ``object`` for a device with a codec: what the device profile's JavaScript codec returned
# as ``data`` (citynode's decoded form; the generated codec decodes exactly as gateway.contract.codec,
# tests/contract/test_codec_vectors.py), carried as a google.protobuf.Struct.
OBJECT = {
    "type": "passenger_count",
    "version": 1,
    "readings": [
        {"interval": 300, "doors": [{"door": 0, "boardings": 12, "alightings": 9},
                                    {"door": 1, "boardings": 7, "alightings": 15}],
         "occupancy": 45, "battery": 3.9, "latitude": 51.50548, "longitude": 7.10211},
    ],
}


def full_up(events, with_object: bool = False) -> dict[str, Any]:
    """An uplink with every part a real ChirpStack v4 writes: tags, two gateways with times, context,
    metadata, location and GPS time, LoRa modulation, region, relay-free; with ``object`` if asked."""
    from chirpstack_api import common, gw

    msg = events.up(data=b"\x86\x01\x83\x00\x01\x00", tags={"district": "buer", "bin_type": "paper"})
    if with_object:
        msg.object.update(OBJECT)
    for rx in msg.rx_info:
        rx.gw_time.FromDatetime(datetime(2026, 5, 4, 11, 59, 59, 123456, tzinfo=UTC))
        rx.ns_time.FromDatetime(datetime(2026, 5, 4, 12, 0, 0, 4000, tzinfo=UTC))
        rx.time_since_gps_epoch.FromSeconds(1_430_395_217)
        rx.context = b"\x01\x02\x03\x04"
        rx.metadata["region_config_id"] = "eu868"
        rx.crc_status = gw.CRCStatus.CRC_OK
        rx.location.latitude, rx.location.longitude = 51.5055, 7.1021
        rx.location.source = common.LocationSource.GPS
    msg.region_config_id = "eu868"
    msg.confirmed = True
    return json.loads(json_format.MessageToJson(msg))


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# -------------------------------------------------------------------- what it must take itself


def test_chirpstack_shapes_take_the_fast_path_and_equal_the_general_one(events):
    for doc in (json.loads(json_format.MessageToJson(events.up())), full_up(events), full_up(events, True)):
        compact, indented = dumps(doc), json.dumps(doc, indent=2, ensure_ascii=False).encode()
        for body in (compact, indented, json_format.MessageToJson(events.up()).encode()):
            fast = uplink_from_json(body, NOW)
            assert fast is not None
            assert fast == general(body)


def test_float32_snr_is_rounded_as_the_protobuf_message_stores_it(events):
    doc = full_up(events)
    doc["rxInfo"][0]["snr"] = 7.3  # not a float32: the message holds 7.300000190734863
    doc["rxInfo"][1]["snr"] = 7.300000190734863
    doc["rxInfo"][1]["rssi"] = -80  # equal SNR as float32: the higher RSSI wins, as in the general path
    fast = assert_same_or_steps_aside(dumps(doc))
    assert fast is not None and fast.radio.rssi == -80 and fast.radio.snr == 7.3


def test_an_event_without_time_takes_the_receive_time(events):
    doc = full_up(events)
    del doc["time"]
    assert assert_same_or_steps_aside(dumps(doc)).received_at == NOW


# ------------------------------------------------------------------------------ the table

# (what, a change to a full uplink's document: path -> value (DELETE drops the key))
DELETE = object()
VARIANTS: list[tuple[str, dict[tuple[Any, ...], Any]]] = [
    ("time with nanoseconds", {("time",): "2026-05-04T12:00:00.123456789Z"}),
    ("time with an offset", {("time",): "2026-05-04T14:00:00.5+02:00"}),
    ("time on a leap day", {("time",): "2024-02-29T12:00:00Z"}),
    ("time on 29 February of a common year", {("time",): "2026-02-29T12:00:00Z"}),
    ("time on 29 February 1900 (not a leap year)", {("time",): "1900-02-29T12:00:00Z"}),
    ("time on 29 February 2000 (a leap year)", {("time",): "2000-02-29T12:00:00Z"}),
    ("time on 31 April", {("time",): "2026-04-31T12:00:00Z"}),
    ("time with a leap second", {("time",): "2016-12-31T23:59:60Z"}),
    ("time with lower-case t", {("time",): "2026-05-04t12:00:00Z"}),
    ("time with lower-case z", {("time",): "2026-05-04T12:00:00z"}),
    ("time with a final newline", {("time",): "2026-05-04T12:00:00Z\n"}),
    ("time with 10 decimals", {("time",): "2026-05-04T12:00:00.1234567891Z"}),
    ("time in year 1 with an offset", {("time",): "0001-01-01T00:00:00+01:00"}),
    ("time with an offset of 24 hours", {("time",): "2026-05-04T12:00:00+24:00"}),
    ("time with Arabic-Indic digits", {("time",): "٢٠٢٦-05-04T12:00:00Z"}),
    ("time is a number", {("time",): 1714824000}),
    ("gwTime on 30 February", {("rxInfo", 0, "gwTime"): "2026-02-30T12:00:00Z"}),
    ("nsTime is not a time", {("rxInfo", 1, "nsTime"): "yesterday"}),
    ("GPS time with decimals", {("rxInfo", 0, "timeSinceGpsEpoch"): "1430395217.5s"}),
    ("GPS time negative", {("rxInfo", 0, "timeSinceGpsEpoch"): "-0.5s"}),
    ("GPS time beyond a Duration", {("rxInfo", 0, "timeSinceGpsEpoch"): "999999999999s"}),
    ("GPS time without s", {("rxInfo", 0, "timeSinceGpsEpoch"): "12"}),
    ("fCnt as a string", {("fCnt",): "7"}),
    ("fCnt as 7.0", {("fCnt",): 7.0}),
    ("fCnt is a bool", {("fCnt",): True}),
    ("fCnt negative", {("fCnt",): -1}),
    ("fCnt at 2**32 - 1", {("fCnt",): 2**32 - 1}),
    ("fCnt at 2**32", {("fCnt",): 2**32}),
    ("fPort null", {("fPort",): None}),
    ("fPort by its proto name", {("fPort",): DELETE, ("f_port",): 11}),
    (
        "devEui by its proto name",
        {("deviceInfo", "devEui"): DELETE, ("deviceInfo", "dev_eui"): "0004a30b001c0530"},
    ),
    ("gatewayId by both names", {("rxInfo", 0, "gateway_id"): "0016c001ff10a299"}),
    ("devEui upper case", {("deviceInfo", "devEui"): "0004A30B001C0530"}),
    ("devEui too short", {("deviceInfo", "devEui"): "0004a30b"}),
    ("devEui with a final newline", {("deviceInfo", "devEui"): "0004a30b001c0530\n"}),
    ("no deviceInfo", {("deviceInfo",): DELETE}),
    ("no deduplicationId", {("deduplicationId",): DELETE}),
    ("data url-safe base64", {("data",): "AQID_g=="}),
    ("data unpadded base64", {("data",): "AQID/g"}),
    ("data with a space", {("data",): "AQI D/g=="}),
    ("data not base64", {("data",): "not base64!"}),
    ("data with non-zero padding bits", {("data",): "AR=="}),
    ("data empty", {("data",): ""}),
    ("context url-safe", {("rxInfo", 0, "context"): "AQID_g=="}),
    ("snr beyond float32", {("rxInfo", 0, "snr"): 1e39}),
    ("snr at the float32 maximum", {("rxInfo", 0, "snr"): 3.4028234663852886e38}),
    ("snr as a string", {("rxInfo", 0, "snr"): "NaN"}),
    ("snr as an integer", {("rxInfo", 0, "snr"): 9}),
    ("rssi as a float", {("rxInfo", 0, "rssi"): -87.5}),
    ("rxInfo not a list", {("rxInfo",): {"rssi": -80}}),
    ("rxInfo empty", {("rxInfo",): []}),
    ("enum by number", {("txInfo", "modulation", "lora", "codeRate"): 1}),
    ("unknown enum name", {("txInfo", "modulation", "lora", "codeRate"): "CR_9_9"}),
    ("two oneof members", {("txInfo", "modulation", "fsk"): {"datarate": 50000}}),
    ("oneof member by both names", {("txInfo", "modulation", "lr_fhss"): {}}),
    ("empty txInfo", {("txInfo",): {}}),
    ("no txInfo", {("txInfo",): DELETE}),
    ("trusted object present", {("object",): {"type": "air_quality", "readings": []}}),
    ("object not an object", {("object",): [1, 2]}),
    ("unknown field", {("futureField",): {"x": [1, {"y": None}]}}),
    ("unknown field with a colon in a string", {("futureField",): "a:b:c"}),
    ("tag with a colon", {("deviceInfo", "tags", "note"): "bin 7: paper"}),
    ("tag value not a string", {("deviceInfo", "tags", "floor"): 3}),
    ("tag named like a proto field", {("deviceInfo", "tags", "dev_eui"): "x"}),
    ("device name with escapes", {("deviceInfo", "deviceName"): 'bin "7"\\\t\u00e9\u2603'}),
    ("device name with a lone surrogate", {("deviceInfo", "deviceName"): "\ud800"}),
    ("metadata value not a string", {("rxInfo", 0, "metadata", "n"): 1}),
]


def apply(doc: dict[str, Any], changes: dict[tuple[Any, ...], Any]) -> dict[str, Any]:
    for path, value in changes.items():
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
        if value is DELETE:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return doc


@pytest.mark.parametrize("with_object", [False, True], ids=["no object", "with object"])
@pytest.mark.parametrize("what,changes", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_unusual_bodies_are_taken_alike_or_left_to_the_general_path(events, what, changes, with_object):
    body = dumps(apply(full_up(events, with_object), changes))
    assert_same_or_steps_aside(body)
    if general(body) == REFUSED:
        assert uplink_from_json(body, NOW) is None


@pytest.mark.parametrize("with_object", [False, True], ids=["no object", "with object"])
def test_ordinary_variants_still_take_the_fast_path(events, with_object):
    taken = {
        "time with nanoseconds", "time with an offset", "time on a leap day",
        "time on 29 February 2000 (a leap year)",
        "GPS time with decimals", "GPS time negative", "fCnt at 2**32 - 1", "data with non-zero padding bits",
        "data empty", "snr at the float32 maximum", "snr as an integer", "rxInfo empty", "empty txInfo",
        "no txInfo", "unknown field", "unknown field with a colon in a string", "tag with a colon",
        "tag named like a proto field", "device name with escapes", "trusted object present",
    }
    for what, changes in VARIANTS:
        if what in taken:
            body = dumps(apply(full_up(events, with_object), changes))
            assert uplink_from_json(body, NOW) is not None, what


# Duplicate keys: json_format refuses them anywhere in the body; so does the fast path (it steps aside).
DUPLICATES = [
    ("top level", '"fCnt": 1,', '"fCnt": 2,'),
    ("in deviceInfo", '"deviceName": "a",', '"deviceName": "b",'),
    ("in tags", '"x": "1",', '"x": "2",'),
    ("in an rxInfo entry", '"rssi": -1,', '"rssi": -2,'),
    ("in an unknown field", '"u": {"k": 1, "k": 2},', ""),
    ("with colons in the dropped value", '"fCnt": 1,', '"fCnt": 2, "futureField": {"a": "b:c"},'),
    ("a key written with an escape", '"fCnt": 1,', '"f\\u0043nt": 2,'),
    ("masked by an escaped colon", '"fCnt": 1,', '"fCnt": 2, "futureField": "\\u003a",'),
    ("masked by an upper-case escaped colon", '"fCnt": 1,', '"fCnt": 2, "futureField": "\\u003A",'),
    ("in object", '"type": "x",', ""),  # object already has "type"
    ("in object, nested", '"door": 5,', ""),  # the first door already has "door"
    ("in object, both values equal", '"version": 1,', ""),
]


@pytest.mark.parametrize("where,first,second", DUPLICATES, ids=[d[0] for d in DUPLICATES])
def test_duplicate_keys_are_never_taken(events, where, first, second):
    text = json.dumps(full_up(events, with_object=where.startswith("in object")))
    if where in ("in object", "in object, both values equal"):
        text = text.replace('"object": {', '"object": {' + first + second, 1)
    elif where == "in object, nested":
        text = text.replace('"doors": [{', '"doors": [{' + first + second, 1)
    elif where == "in deviceInfo":
        text = text.replace('"deviceInfo": {', '"deviceInfo": {' + first + second, 1)
    elif where == "in tags":
        text = text.replace('"tags": {', '"tags": {' + first + second, 1)
    elif where == "in an rxInfo entry":
        text = text.replace('"rxInfo": [{', '"rxInfo": [{' + first + second, 1)
    else:
        text = "{" + first + second + text[1:]
    body = text.encode()
    assert general(body) == REFUSED, "json_format refuses duplicate keys"
    assert uplink_from_json(body, NOW) is None


# ``object`` (a google.protobuf.Struct): json_format takes any JSON object whose numbers fit a double
# and whose nesting stays within its recursion limit (100 messages: about 49 levels of object).
# (what, the object, taken by the fast path: True, False, or None for "either, as long as it agrees")
def _nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """An object ``depth`` levels deep (the object itself is level 1)."""
    node: Any = leaf
    for _ in range(depth - 1):
        node = [node]
    return {"deep": node}


OBJECTS: list[tuple[str, Any, bool | None]] = [
    ("a citynode decoded message", OBJECT, True),
    ("empty", {}, True),
    ("every JSON type", {"s": "x", "i": -3, "f": 2.5, "t": True, "n": None, "l": [1, "a", None], "o": {}}, True),
    ("keys named like uplink fields", {"fCnt": 1, "devEui": "x", "object": {"data": "AQ=="}}, True),
    ("a key that is empty", {"": 1}, True),
    ("colons in keys and strings", {"a:b": "c:d", "url": "http://x:80/"}, True),
    ("escapes and non-ASCII", {"name": 'bin "7"\\\t\u00e9\u2603\U0001f600', "\u00fc": "\x00"}, True),
    ("an integer beyond 64 bits", {"n": 2**70}, True),
    ("an integer of 308 digits", {"n": 10**307}, True),
    ("an integer of 309 digits that fits a double", {"n": 10**308}, None),
    ("an integer beyond a double", {"n": 10**400}, False),
    ("a negative integer beyond a double", {"n": -(10**400)}, False),
    ("an integer beyond Python's digit limit", {"n": "<5000 digits>"}, False),
    ("a float that overflows to infinity", {"n": 1e400}, None),
    ("NaN", {"n": float("nan")}, None),
    ("Infinity", {"n": float("inf")}, None),
    ("-0.0 and a float that underflows", {"z": -0.0, "u": 1e-400}, True),
    ("a string with a lone surrogate", {"s": "\ud800"}, False),
    ("a key with a lone surrogate", {"\udc00": 1}, False),
    ("nested 32 deep", _nested(32), True),
    ("nested 33 deep", _nested(33), None),
    ("nested 49 deep", _nested(49), None),
    ("nested 50 deep", _nested(50), False),
    ("nested 60 deep, empty", _nested(60, []), False),
    ("wide but shallow", {f"k{i}": [i, {"v": i}] for i in range(80)}, True),
    ("null", None, None),
    ("an array", [1, 2], False),
    ("a string", "x", False),
    ("a number", 3, False),
    ("true", True, False),
]


@pytest.mark.parametrize("what,obj,taken", OBJECTS, ids=[o[0] for o in OBJECTS])
def test_chirpstack_object_is_taken_alike_or_left_to_the_general_path(events, what, obj, taken):
    doc = full_up(events)
    doc["object"] = obj
    body = dumps(doc).replace(b'"<5000 digits>"', b"9" * 5000)  # json.dumps would refuse to write it
    fast = assert_same_or_steps_aside(body)
    if general(body) == REFUSED:
        assert fast is None
    if taken is not None:
        assert (fast is not None) == taken, what


@pytest.mark.parametrize(
    "body",
    [b"", b"null", b"[]", b"{}", b'"up"', b"{", b'{"fCnt": 1} x', b"\xff\xfe", b'{"data": "\xff"}',
     b'{"deduplicationId": "a\tb", "deviceInfo": {"devEui": "0004a30b001c0530"}}'],
    ids=["empty", "null", "array", "empty object", "string", "truncated", "trailing bytes", "not UTF-8",
         "bad UTF-8", "raw control character"],
)
def test_broken_bodies_are_left_to_the_general_path(body):
    assert uplink_from_json(body, NOW) is None


@pytest.mark.parametrize("depth", [100, 2000, 100_000])
def test_deep_nesting_is_left_to_the_general_path_and_never_raises(events, depth):
    doc = full_up(events)
    body = (json.dumps(doc)[:-1] + ', "futureField": ' + "[" * depth + "]" * depth + "}").encode()
    fast = assert_same_or_steps_aside(body)  # and no exception escapes either path
    assert (fast is None) == (depth > 200)


def test_a_deeply_nested_uplink_is_a_dead_letter_not_a_stuck_ingest(events, store):
    from gateway.service.pipeline import Pipeline

    body = json.dumps(full_up(events))[:-1] + ', "futureField": ' + "[" * 5000 + "]" * 5000 + "}"
    result = Pipeline(store).handle("up", body.encode(), "json", "mqtt")
    assert result.outcome == "dead_letter" and "nested too deeply" in (result.reason or "")


# ------------------------------------------------------------------------- random mutations

_VALUES = st.sampled_from(
    [None, True, False, 0, -1, 1, 7, 2**31, 2**32, 2**40, -(2**31) - 1, 1.5, 7.25, -3.0, 1e39, 1e-50, "",
     "abc", "AQID/g==", "AQID_g", "AQ==", "2026-05-04T12:00:00Z", "2026-02-30T00:00:00Z",
     "2024-02-29T23:59:59.5-01:30",
     "1.5s", "-2s", "CR_4_5", "GPS", "0004a30b001c0530", [], [1], {}, {"a": 1}, {"lora": {}}, "x:y",
     10**400, 2**70, float("nan"), float("inf"), "\ud800", [[[[{"a": [None]}]]]]]
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


# ``events`` only builds messages: sharing it between examples is safe.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    values=st.lists(_VALUES, min_size=1, max_size=3),
    how=st.integers(0, 3),
    with_object=st.booleans(),
)
def test_randomly_mutated_bodies_are_taken_alike_or_left_to_the_general_path(
    events, seed, values, how, with_object
):
    rng = random.Random(seed)
    doc = full_up(events, with_object)
    for value in values:
        value = copy.deepcopy(value)  # sampled values are shared between examples
        path = rng.choice(_paths(doc))
        node = doc
        for key in path[:-1]:
            node = node[key]
        if how == 0 or not isinstance(node, dict):
            node[path[-1]] = value  # replace a value
        elif how == 1:
            key = rng.choice(["futureField", "f_cnt", "lrFhss", "gw_time", "object", "tags"])
            node[key] = value  # add a key
        elif how == 2:
            node.pop(path[-1])  # drop a key
        else:
            node[path[-1] + "_x"] = value
    assert_same_or_steps_aside(dumps(doc))
