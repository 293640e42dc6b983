"""The gateway's codec: citynode payloads to the decoded JSON form and back, driven by ``codecs/schema.json``.

Wire format (the README has a byte-by-byte example). A payload is one CBOR array::

    [header, value, value, ...]                      one reading
    [header | 0x10, [delta_s, value, ...], ...]      a batch, newest reading first

``header`` holds the schema version in its low four bits. Values follow the schema's field order: a
``number`` is the integer ``round(value * 10**decimals) - offset * 10**decimals``, a ``bool`` is CBOR
true/false, an ``enum`` is the index of its name, ``flags`` is a bit mask, a ``semver`` is
``[major, minor, patch]``, a ``list`` is the flat sequence of its items' values, and ``null`` means the
node could not measure that field. Optional fields at the end may be left out. In a batch each reading
starts with the seconds between it and the (newer) reading before it; decoded readings carry
``offset_s``, the seconds before the newest reading.

The downlink ``config`` message is ``[header, {field index: value, ...}]``: only the settings present
are changed on the node.

Only one CBOR serialisation is accepted: preferred (shortest) integer encodings, definite lengths, no
tags, no floats, no strings, and the simple values false, true and null only. Every decoder (this
module, the firmware and the ChirpStack JavaScript codec) enforces the same profile, so a payload is
either valid everywhere or rejected everywhere.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cbor2

from gateway.contract.schema import FieldSpec, MessageSpec, Schema, load_schema
from gateway.errors import DecodeError, EncodeError

__all__ = [
    "DR0_MAX_PAYLOAD",
    "MAX_PAYLOAD",
    "decode",
    "decode_downlink",
    "encode_batch",
    "encode_downlink",
    "encode_uplink",
]

# RP002-1.0.3 §2.4.6: EU868 DR0..DR2 carry at most 51 bytes of application payload.
DR0_MAX_PAYLOAD = 51
# RP002-1.0.3 §2.4.6: the largest EU868 application payload (DR5..DR7) is 242 bytes.
MAX_PAYLOAD = 242
_UINT32_MAX = 0xFFFFFFFF


def _brief(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error message never carries a whole payload."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------- decoding


def decode(fport: int, payload: bytes) -> dict[str, Any]:
    """Decode an uplink ``payload`` received on ``fport`` into ``{"type", "version", "readings"}``.

    Raises :class:`DecodeError` naming the reason for any input that is not a valid citynode payload;
    no other exception escapes, whatever the bytes.
    """
    schema = load_schema()
    msg = _message_for_port(schema, fport, "uplink")
    items = _load(payload, msg.name)
    version, batch = _header(schema, msg, items)
    fields = msg.versions[version]
    if not batch:
        readings = [_decode_reading(msg.name, fields, items[1:])]
    else:
        if len(items) < 2:
            raise DecodeError(f"{msg.name}: batch with no readings")
        readings = []
        offset = 0
        for index, entry in enumerate(items[1:]):
            where = f"{msg.name}: batch reading {index}"
            if not isinstance(entry, list) or not entry:
                raise DecodeError(f"{where}: expected an array starting with the seconds since the newer reading")
            delta = entry[0]
            if type(delta) is not int or not 0 <= delta <= _UINT32_MAX:
                raise DecodeError(f"{where}: time delta must be an unsigned integer of seconds, got {_brief(delta)}")
            if index == 0 and delta != 0:
                raise DecodeError(f"{where}: the newest reading must have a time delta of 0, got {delta}")
            offset += delta
            reading = {"offset_s": offset}
            reading.update(_decode_reading(msg.name, fields, entry[1:]))
            readings.append(reading)
    return {"type": msg.name, "version": version, "readings": readings}


def decode_downlink(fport: int, payload: bytes) -> dict[str, Any]:
    """Decode a downlink (the ``config`` message) into its flat settings dict, e.g. ``{"interval": 900}``."""
    schema = load_schema()
    msg = _message_for_port(schema, fport, "downlink")
    items = _load(payload, msg.name)
    version, batch = _header(schema, msg, items)
    if batch or len(items) != 2 or not isinstance(items[1], dict):
        raise DecodeError(f"{msg.name}: expected [header, {{setting index: value}}]")
    fields = msg.versions[version]
    settings: dict[str, Any] = {}
    previous = -1
    for key, raw in items[1].items():
        if type(key) is not int or not 0 <= key < len(fields):
            raise DecodeError(f"{msg.name}: unknown setting index {_brief(key)}")
        if key <= previous:
            raise DecodeError(f"{msg.name}: setting indexes must be rising")
        previous = key
        spec = fields[key]
        if raw is None:
            raise DecodeError(f"{msg.name}.{spec.name}: a setting cannot be null")
        settings[spec.name] = _decode_value(f"{msg.name}.{spec.name}", spec, raw)
    if not settings:
        raise DecodeError(f"{msg.name}: message has no settings")
    return settings


def _message_for_port(schema: Schema, fport: int, direction: str) -> MessageSpec:
    if type(fport) is not int:
        raise DecodeError(f"fPort must be an integer, got {_brief(fport)}")
    msg = schema.by_fport(fport, direction)
    if msg is None:
        known = ", ".join(f"{m.fport} ({m.name})" for m in schema.messages.values() if m.direction == direction)
        raise DecodeError(f"no citynode {direction} message on fPort {fport} (known: {known})")
    return msg


def _load(payload: bytes, name: str) -> list[Any]:
    """Parse ``payload`` as one CBOR array in citynode's strict profile."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{name}: payload must be bytes, got {type(payload).__name__}")
    data = bytes(payload)
    if not data:
        raise DecodeError(f"{name}: empty payload")
    if len(data) > MAX_PAYLOAD:
        raise DecodeError(f"{name}: payload of {len(data)} bytes exceeds the LoRaWAN maximum of {MAX_PAYLOAD}")
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several types for bad input; all of them mean the same here
        raise DecodeError(f"{name}: not valid CBOR ({exc})") from None
    if stream.tell() != len(data):
        raise DecodeError(f"{name}: {len(data) - stream.tell()} unexpected byte(s) after the CBOR array")
    if not isinstance(value, list):
        raise DecodeError(f"{name}: payload must be a CBOR array, got {type(value).__name__}")
    _check_profile(value, name)
    try:
        canonical = cbor2.dumps(value)
    except Exception as exc:
        raise DecodeError(f"{name}: unsupported CBOR content ({exc})") from None
    if canonical != data:
        raise DecodeError(
            f"{name}: CBOR not in citynode's profile (shortest integers, definite lengths, no tags or duplicate keys)"
        )
    return value


def _check_profile(value: Any, name: str) -> None:
    """Reject item kinds outside the profile before re-encoding (floats, strings, tags' objects...)."""
    if value is None or type(value) in (bool, int):
        return
    if type(value) is list:
        for item in value:
            _check_profile(item, name)
        return
    if type(value) is dict:
        for key, item in value.items():
            _check_profile(key, name)
            _check_profile(item, name)
        return
    raise DecodeError(f"{name}: CBOR item of type {type(value).__name__} is not allowed (integers, booleans, "
                      "null, arrays and maps only)")


def _header(schema: Schema, msg: MessageSpec, items: list[Any]) -> tuple[int, bool]:
    if not items:
        raise DecodeError(f"{msg.name}: empty array, expected a header")
    header = items[0]
    if type(header) is not int or header < 0 or header & ~(schema.version_mask | schema.batch_flag):
        raise DecodeError(f"{msg.name}: invalid header {_brief(header)}")
    version = header & schema.version_mask
    if version not in msg.versions:
        known = ", ".join(str(v) for v in sorted(msg.versions))
        raise DecodeError(f"{msg.name}: unsupported schema version {version} (known: {known})")
    return version, bool(header & schema.batch_flag)


def _decode_reading(name: str, fields: Sequence[FieldSpec], values: Sequence[Any]) -> dict[str, Any]:
    required = sum(1 for spec in fields if not spec.optional)
    if not required <= len(values) <= len(fields):
        if len(values) < required:
            raise DecodeError(f"{name}: reading has {len(values)} values, at least {required} required")
        raise DecodeError(f"{name}: reading has {len(values)} values, at most {len(fields)} defined")
    reading: dict[str, Any] = {}
    missing: list[str] = []
    for spec, raw in zip(fields, values):
        if raw is None:
            if spec.type == "flags":
                raise DecodeError(f"{name}.{spec.name}: cannot be null")
            missing.append(spec.name)
            continue
        reading[spec.name] = _decode_value(f"{name}.{spec.name}", spec, raw)
    faults_field = next((spec for spec in fields if spec.type == "flags" and spec.name == "faults"), None)
    if faults_field is not None and "faults" in reading:
        reading["faults"] = reading["faults"] + missing
    elif missing:
        reading["faults"] = missing
    return reading


def _decode_value(where: str, spec: FieldSpec, raw: Any) -> Any:
    kind = spec.type
    if kind == "bool":
        if type(raw) is not bool:
            raise DecodeError(f"{where}: expected true or false, got {_brief(raw)}")
        return raw
    if kind == "number":
        if type(raw) is not int:
            raise DecodeError(f"{where}: expected an integer, got {_brief(raw)}")
        units = raw + spec.offset_units
        value: float | int = units if spec.decimals == 0 else units / spec.multiplier
        assert spec.min is not None and spec.max is not None
        if not spec.min <= value <= spec.max:
            raise DecodeError(f"{where}: {value} outside {spec.min}..{spec.max}")
        return value
    if kind == "enum":
        if type(raw) is not int or not 0 <= raw < len(spec.values):
            raise DecodeError(f"{where}: enum index {_brief(raw)} outside 0..{len(spec.values) - 1}")
        return spec.values[raw]
    if kind == "flags":
        if type(raw) is not int or raw < 0 or raw >> len(spec.values):
            raise DecodeError(f"{where}: flag mask {_brief(raw)} has bits beyond the {len(spec.values)} defined")
        return [flag for bit, flag in enumerate(spec.values) if raw >> bit & 1]
    if kind == "semver":
        if (
            type(raw) is not list
            or len(raw) != 3
            or any(type(part) is not int or not 0 <= part <= 255 for part in raw)
        ):
            raise DecodeError(f"{where}: expected [major, minor, patch] with each part 0..255, got {_brief(raw)}")
        return ".".join(str(part) for part in raw)
    if kind == "list":
        width = len(spec.items)
        if type(raw) is not list or len(raw) % width:
            raise DecodeError(f"{where}: expected a flat array of {width}-value items")
        count = len(raw) // width
        if count > spec.max_items:
            raise DecodeError(f"{where}: {count} items, at most {spec.max_items}")
        out = []
        for index in range(count):
            item = {}
            for offset, sub in enumerate(spec.items):
                value = raw[index * width + offset]
                if value is None:
                    raise DecodeError(f"{where}[{index}].{sub.name}: cannot be null")
                item[sub.name] = _decode_value(f"{where}[{index}].{sub.name}", sub, value)
            out.append(item)
        return out
    raise DecodeError(f"{where}: unsupported field type {kind}")  # pragma: no cover (schema is validated)


# --------------------------------------------------------------------------------------------- encoding


def encode_uplink(
    msg_type: str, reading_or_list: Mapping[str, Any] | Sequence[Mapping[str, Any]], max_len: int = DR0_MAX_PAYLOAD
) -> bytes:
    """Encode one reading (a dict) or a batch (a list of dicts, newest first) of ``msg_type``.

    Raises :class:`EncodeError` naming the field for a value out of range or of the wrong type, and
    when the payload would exceed ``max_len`` bytes (51 by default, the EU868 DR0 limit).
    """
    schema = load_schema()
    msg = _uplink_message(schema, msg_type)
    header = msg.current_version
    if isinstance(reading_or_list, Mapping):
        items: list[Any] = [header, *_encode_reading(msg, reading_or_list)]
    else:
        readings = list(reading_or_list)
        if not readings:
            raise EncodeError(f"{msg.name}: a batch needs at least one reading")
        items = [header | schema.batch_flag, *_batch_items(msg, readings)]
    data = cbor2.dumps(items)
    if len(data) > max_len:
        raise EncodeError(f"{msg.name}: payload of {len(data)} bytes exceeds the limit of {max_len}")
    return data


def encode_batch(
    msg_type: str, readings: Sequence[Mapping[str, Any]], max_len: int = DR0_MAX_PAYLOAD
) -> tuple[bytes, int]:
    """Pack as many of ``readings`` (newest first) as fit in ``max_len`` bytes; returns (payload, count)."""
    schema = load_schema()
    msg = _uplink_message(schema, msg_type)
    if not readings:
        raise EncodeError(f"{msg.name}: a batch needs at least one reading")
    entries = _batch_items(msg, readings)
    count = len(entries)
    while count:
        data = cbor2.dumps([msg.current_version | schema.batch_flag, *entries[:count]])
        if len(data) <= max_len:
            return data, count
        count -= 1
    raise EncodeError(f"{msg.name}: a single reading does not fit in {max_len} bytes")


def encode_downlink(msg: Mapping[str, Any]) -> tuple[int, bytes]:
    """Encode a ``config`` downlink from its settings, e.g. ``{"interval": 900, "adr": True}``.

    Returns ``(fport, payload)``. Unknown settings and out-of-range values raise :class:`EncodeError`.
    """
    schema = load_schema()
    spec = schema.message("config")
    fields = spec.fields
    index = {field.name: i for i, field in enumerate(fields)}
    if not isinstance(msg, Mapping) or not msg:
        raise EncodeError("config: give at least one setting, e.g. {\"interval\": 900}")
    settings: dict[int, Any] = {}
    for name, value in msg.items():
        if name not in index:
            raise EncodeError(f"config: unknown setting {_brief(name)} (known: {', '.join(index)})")
        field = fields[index[name]]
        settings[index[name]] = _encode_value(f"config.{name}", field, value)
    data = cbor2.dumps([spec.current_version, dict(sorted(settings.items()))])
    if len(data) > DR0_MAX_PAYLOAD:
        raise EncodeError(f"config: payload of {len(data)} bytes exceeds the DR0 limit of {DR0_MAX_PAYLOAD}")
    return spec.fport, data


def _uplink_message(schema: Schema, msg_type: str) -> MessageSpec:
    msg = schema.messages.get(msg_type)
    if msg is None or msg.direction != "uplink":
        known = ", ".join(name for name, m in schema.messages.items() if m.direction == "uplink")
        raise EncodeError(f"unknown uplink message type {_brief(msg_type)} (known: {known})")
    return msg


def _batch_items(msg: MessageSpec, readings: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    entries: list[list[Any]] = []
    previous: int | None = None
    first = 0
    for index, reading in enumerate(readings):
        if not isinstance(reading, Mapping):
            raise EncodeError(f"{msg.name}: batch reading {index} must be an object")
        raw = reading.get("offset_s", 0)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw < 0:
            raise EncodeError(f"{msg.name}: batch reading {index}: offset_s must be seconds >= 0, got {_brief(raw)}")
        offset = int(raw + 0.5)
        if previous is None:
            first = previous = offset
        if offset < previous:
            raise EncodeError(f"{msg.name}: batch reading {index}: readings must be newest first (offset_s rising)")
        if offset - first > _UINT32_MAX:
            raise EncodeError(f"{msg.name}: batch reading {index}: offset_s too large")
        entries.append([offset - previous, *_encode_reading(msg, reading)])
        previous = offset
    return entries


def _encode_reading(msg: MessageSpec, reading: Mapping[str, Any]) -> list[Any]:
    fields = msg.fields
    names = {spec.name for spec in fields}
    faults_field = next((spec for spec in fields if spec.type == "flags" and spec.name == "faults"), None)
    for key in reading:
        if key not in names and key not in ("faults", "offset_s"):
            raise EncodeError(f"{msg.name}: unknown field {_brief(key)}")
    faults = reading.get("faults", [])
    if not isinstance(faults, (list, tuple)):
        raise EncodeError(f"{msg.name}.faults: expected a list of names, got {_brief(faults)}")
    unmeasured = set()
    flags = []
    for fault in faults:
        if fault in names and fault != "faults":
            if fault in reading:
                raise EncodeError(f"{msg.name}.{fault}: has a value but is also listed in faults")
            unmeasured.add(fault)
        elif faults_field is not None and fault in faults_field.values:
            flags.append(fault)
        else:
            raise EncodeError(f"{msg.name}.faults: unknown fault {_brief(fault)}")
    values: list[Any] = []
    for spec in fields:
        if spec is faults_field:
            values.append(_encode_value(f"{msg.name}.faults", spec, flags))
        elif spec.name in reading:
            values.append(_encode_value(f"{msg.name}.{spec.name}", spec, reading[spec.name]))
        elif spec.optional and spec.name not in unmeasured:
            values.append(_OMITTED)
        else:
            values.append(None)  # could not be measured
    while values and values[-1] is _OMITTED:
        values.pop()
    return [None if value is _OMITTED else value for value in values]


_OMITTED = object()


def _encode_value(where: str, spec: FieldSpec, value: Any) -> Any:
    kind = spec.type
    if kind == "bool":
        if type(value) is not bool:
            raise EncodeError(f"{where}: expected true or false, got {_brief(value)}")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise EncodeError(f"{where}: expected a number, got {_brief(value)}")
        assert spec.min is not None and spec.max is not None
        if not spec.min <= value <= spec.max:
            raise EncodeError(f"{where}: {value} outside {spec.min}..{spec.max}")
        scaled = value * spec.multiplier
        units = int(scaled + 0.5) if scaled >= 0 else -int(-scaled + 0.5)  # half away from zero
        return units - spec.offset_units
    if kind == "enum":
        if value not in spec.values:
            raise EncodeError(f"{where}: {_brief(value)} is not one of {', '.join(spec.values)}")
        return spec.values.index(value)
    if kind == "flags":
        mask = 0
        for flag in value:
            if flag not in spec.values:
                raise EncodeError(f"{where}: unknown flag {_brief(flag)}")
            mask |= 1 << spec.values.index(flag)
        return mask
    if kind == "semver":
        parts = value.split(".") if isinstance(value, str) else []
        if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
            raise EncodeError(f"{where}: expected \"MAJOR.MINOR.PATCH\" with parts 0..255, got {_brief(value)}")
        return [int(p) for p in parts]
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            raise EncodeError(f"{where}: expected a list, got {_brief(value)}")
        if len(value) > spec.max_items:
            raise EncodeError(f"{where}: {len(value)} items, at most {spec.max_items}")
        flat: list[Any] = []
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise EncodeError(f"{where}[{index}]: expected an object")
            extra = set(item) - {sub.name for sub in spec.items}
            if extra:
                raise EncodeError(f"{where}[{index}]: unknown key(s) {', '.join(sorted(extra))}")
            for sub in spec.items:
                if sub.name not in item:
                    raise EncodeError(f"{where}[{index}].{sub.name}: missing")
                flat.append(_encode_value(f"{where}[{index}].{sub.name}", sub, item[sub.name]))
        return flat
    raise EncodeError(f"{where}: unsupported field type {kind}")  # pragma: no cover
