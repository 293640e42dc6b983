"""Property tests: the three codec implementations agree on random input.

Random valid readings are encoded by the firmware on MicroPython; the bytes must equal the gateway
encoder's, decode on CPython and in QuickJS to the same data, and give back every value that was
sent (values are drawn on the field's resolution grid). Random bytes never make a decoder raise
anything but its DecodeError, and the gateway and the ChirpStack codec accept and reject alike.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.contract import codec
from gateway.contract.schema import FieldSpec, load_schema
from gateway.errors import DecodeError, EncodeError

SCHEMA = load_schema()
UPLINK_TYPES = [name for name, msg in SCHEMA.messages.items() if msg.direction == "uplink"]
FIXTURE_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def value_strategy(spec: FieldSpec) -> st.SearchStrategy[Any]:
    if spec.type == "number":
        assert spec.min is not None and spec.max is not None
        low = math.ceil(spec.min * spec.multiplier)
        high = math.floor(spec.max * spec.multiplier)
        units = st.integers(low, high)
        return units if spec.decimals == 0 else units.map(lambda u: u / spec.multiplier)
    if spec.type == "bool":
        return st.booleans()
    if spec.type == "enum":
        return st.sampled_from(spec.values)
    if spec.type == "flags":
        return st.lists(st.sampled_from(spec.values), unique=True).map(
            lambda names: [v for v in spec.values if v in names]
        )
    if spec.type == "semver":
        part = st.integers(0, 255)
        return st.tuples(part, part, part).map(lambda t: "%d.%d.%d" % t)
    item = st.fixed_dictionaries({sub.name: value_strategy(sub) for sub in spec.items})
    return st.lists(item, max_size=spec.max_items)


@st.composite
def readings(draw: st.DrawFn, msg_type: str) -> dict[str, Any]:
    """A reading with each field present, or missing (the node could not measure it)."""
    reading: dict[str, Any] = {}
    for spec in SCHEMA.message(msg_type).fields:
        if spec.type == "flags" or draw(st.integers(0, 5)):  # present 5 times in 6
            reading[spec.name] = draw(value_strategy(spec))
    return reading


@st.composite
def typed_reading(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    msg_type = draw(st.sampled_from(UPLINK_TYPES))
    return msg_type, draw(readings(msg_type))


@st.composite
def typed_batch(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    msg_type = draw(st.sampled_from(UPLINK_TYPES))
    batch = draw(st.lists(readings(msg_type), min_size=1, max_size=4))
    offsets = sorted(draw(st.lists(st.integers(0, 7 * 86400), min_size=len(batch), max_size=len(batch))))
    base = offsets[0]
    return msg_type, [{**r, "offset_s": o - base} for r, o in zip(batch, offsets)]


def gateway_encode(msg_type: str, value: Any) -> str:
    try:
        return codec.encode_uplink(msg_type, value).hex()
    except EncodeError as exc:
        return f"error: {exc}"


def assert_round_trip(sent: dict[str, Any], got: dict[str, Any]) -> None:
    for name, value in sent.items():
        if name != "faults":
            assert got.get(name) == value, f"{name}: sent {value!r}, decoded {got.get(name)!r}"
    for name in got:
        assert name in sent or name in ("faults", "offset_s"), f"decoded {name} that was not sent"


@FIXTURE_SETTINGS
@given(typed_reading())
def test_firmware_bytes_decode_alike_on_cpython_and_quickjs(
    firmware_codec: Any, chirpstack_codec: Any, case: tuple[str, dict[str, Any]]
) -> None:
    msg_type, reading = case
    node = firmware_codec.encode(msg_type, reading)
    expected = gateway_encode(msg_type, reading)
    if "error" in node:
        assert expected.startswith("error:"), f"firmware refused what the gateway encodes: {node['error']}"
        return
    assert node["hex"] == expected
    payload = bytes.fromhex(node["hex"])
    assert len(payload) <= codec.DR0_MAX_PAYLOAD
    fport = SCHEMA.message(msg_type).fport
    decoded = codec.decode(fport, payload)
    assert chirpstack_codec.decode_uplink(fport, payload) == {"data": decoded}
    assert decoded["type"] == msg_type and len(decoded["readings"]) == 1
    assert_round_trip(reading, decoded["readings"][0])


@FIXTURE_SETTINGS
@given(typed_batch())
def test_batches_round_trip_with_their_offsets(
    firmware_codec: Any, chirpstack_codec: Any, case: tuple[str, list[dict[str, Any]]]
) -> None:
    msg_type, batch = case
    node = firmware_codec.encode(msg_type, batch)
    expected = gateway_encode(msg_type, batch)
    if "error" in node:
        assert expected.startswith("error:") and "exceeds" in node["error"]
        return
    assert node["hex"] == expected
    fport = SCHEMA.message(msg_type).fport
    decoded = codec.decode(fport, bytes.fromhex(node["hex"]))
    assert chirpstack_codec.decode_uplink(fport, bytes.fromhex(node["hex"])) == {"data": decoded}
    for sent, got in zip(batch, decoded["readings"], strict=True):
        assert got["offset_s"] == sent["offset_s"]
        assert_round_trip(sent, got)


@FIXTURE_SETTINGS
@given(typed_batch(), st.sampled_from([51, 115, 242]))
def test_batch_packing_fits_as_many_readings_as_possible(
    firmware_codec: Any, case: tuple[str, list[dict[str, Any]]], max_len: int
) -> None:
    msg_type, batch = case
    node = firmware_codec.encode_batch(msg_type, batch, max_len)
    try:
        data, count = codec.encode_batch(msg_type, batch, max_len)
    except EncodeError:
        assert "error" in node
        return
    assert node == {"hex": data.hex(), "count": count}
    assert len(data) <= max_len
    if count < len(batch):  # one more reading would not have fitted
        try:
            codec.encode_uplink(msg_type, batch[: count + 1], max_len=max_len)
            raise AssertionError("a larger batch fits: packing stopped early")
        except EncodeError:
            pass


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([0, 1, 2, 10, 11, 12, 13, 99]), st.binary(max_size=64))
def test_random_bytes_are_rejected_alike_and_never_crash(chirpstack_codec: Any, fport: int, payload: bytes) -> None:
    js = chirpstack_codec.decode_uplink(fport, payload)
    try:
        decoded = codec.decode(fport, payload)
    except DecodeError as exc:
        assert str(exc)
        assert set(js) == {"errors"}, f"QuickJS accepted what the gateway rejected ({exc}): {js}"
    else:
        assert js == {"data": decoded}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([1, 2, 3]), st.one_of(st.binary(max_size=24), st.binary(max_size=8).map(lambda b: b"\x82\x01" + b)))
def test_random_downlinks_are_rejected_alike_by_node_gateway_and_chirpstack(
    firmware_codec: Any, chirpstack_codec: Any, fport: int, payload: bytes
) -> None:
    node = firmware_codec.decode_downlink(fport, payload)
    js = chirpstack_codec.decode_downlink(fport, payload)
    try:
        settings_ = codec.decode_downlink(fport, payload)
    except DecodeError:
        assert "error" in node and node["error"].startswith("DecodeError")
        assert set(js) == {"errors"}
    else:
        assert node == {"data": settings_}
        assert js == {"data": settings_}
