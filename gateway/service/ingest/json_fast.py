"""ChirpStack ``up`` events in JSON, straight to an :class:`Uplink` (the ingest's fast path).

The general path (:func:`gateway.service.ingest.events.parse_event` then :func:`~gateway.service.ingest.events.uplink_from_event`)
parses the JSON with the standard library and fills a ``chirpstack_api`` message with
``google.protobuf.json_format``: about 200 µs of CPU for an uplink as ChirpStack sends it (one to
three gateways, ``object``), the largest single cost of the MQTT ingest by far. Here msgspec
validates the whole body in C against types built from the same protobuf descriptors (never a
hand-kept field list) and the Uplink is read from the result: about 17 µs, 21 µs with ``object``
(``python bench/gateway_throughput.py --parse-only``).

The rule that makes it safe: :func:`uplink_from_json` returns an Uplink only when the general path
would accept the body and make the very same Uplink of it; for anything else (a body it is unsure
of, or a bad one) it returns ``None`` and the caller takes the
general path, which accepts the body by json_format's rules or names what is wrong. What it takes:

* the proto3 JSON mapping as ChirpStack writes it: lowerCamelCase names, enums by name, bytes as
  padded standard base64, Timestamps in RFC 3339 (``Z`` or an offset), Durations as ``"1.5s"``;
  integers as JSON integers within the field's range, float32 fields within float32's range (their
  values rounded to float32 as the protobuf message stores them); unknown fields are ignored.
* ChirpStack's ``object`` (the device codec's output, a ``google.protobuf.Struct``): any JSON object
  json_format's Struct conversion accepts, which is any object whose numbers fit a double and whose
  nesting stays within json_format's recursion limit. The fast path takes objects nested at most
  :data:`_MAX_OBJECT_DEPTH` deep and without an integer of 309 digits or more (the first that may not
  fit a double); NaN and Infinity are not JSON (msgspec refuses them, json's parser takes them), lone
  surrogates neither (msgspec refuses them, the protobuf runtime too). The Uplink does not carry
  ``object``: a device whose codec is ChirpStack's ``object`` still takes the general path (the
  pipeline needs the parsed message).
* not: ``null`` values (``object`` included), numbers as strings, enum numbers, other base64 forms,
  the same field twice or by its proto name, two members of a oneof, other well-known types, any
  duplicate key anywhere in the body. Those go the general way.

``tests/service/test_ingest_json_fast.py`` checks the rule on ChirpStack's shapes, on every unusual form the
general path's tests name, and on randomly mutated bodies.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from chirpstack_api import integration
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.contract.records import RadioMeta, Uplink
from gateway.service.ingest.events import DEV_EUI

__all__ = ["uplink_from_json"]

_F = FieldDescriptor
_FLOAT32 = struct.Struct("<f")
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: the bound of float fields in JSON
_INT_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}
# What the general path surely accepts, as patterns msgspec checks in C:
# * a Timestamp: RFC 3339 as proto3 JSON writes it, with a real date (leap days included) and time,
#   years 0002..9998 so that no offset takes it out of the Timestamp range;
_MONTH_DAY = (
    "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"  # every month has days 1..28
    "|(?:0[13-9]|1[0-2])-(?:29|30)"  # all but February have 29 and 30
    "|(?:0[13578]|1[02])-31)"
)
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_TIMESTAMP = (
    rf"^(?!0000|0001|9999)(?:[0-9]{{4}}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])\Z"
)
# * a Duration: seconds and up to 9 decimals, |seconds| < 10**11 (the range is +-315,576,000,000).
_DURATION = r"^-?[0-9]{1,11}(?:\.[0-9]{1,9})?s\Z"
_Timestamp = Annotated[str, msgspec.Meta(pattern=_TIMESTAMP)]
_Duration = Annotated[str, msgspec.Meta(pattern=_DURATION)]
# No JSON value is this (not a string: wrong type; a string: too long or too short). A field the fast
# path does not take (a proto name, a Struct, a 64-bit integer...) has this type: its mere presence
# fails the decode, and the body goes the general way.
_Never = Annotated[str, msgspec.Meta(min_length=1, max_length=0)]


_Children = tuple[tuple[str, bool], ...]


class _Types:
    """msgspec Struct types for a protobuf message and the messages it contains, from their descriptors.

    Each field is read under its JSON name; a field whose proto name differs gets a second attribute
    under that name (``<name>__proto``) of type ``_Never``, so that a body using it goes the general
    way. The one rule msgspec cannot check, at most one member of a oneof, is :meth:`check`'s.
    """

    def __init__(self, root: Descriptor) -> None:
        self.structs: dict[str, type[msgspec.Struct]] = {}
        # struct type -> (its oneofs' member attributes, (attribute, repeated) of children with oneofs)
        self.oneofs: dict[type[msgspec.Struct], tuple[tuple[tuple[str, ...], ...], _Children]] = {}
        self.root = self._struct(root)

    def _struct(self, desc: Descriptor) -> type[msgspec.Struct]:
        known = self.structs.get(desc.full_name)
        if known is not None:
            return known
        fields: list[tuple[str, Any, Any]] = []
        children: list[tuple[str, bool]] = []
        for fd in desc.fields:
            kind, default = self._field_type(fd)
            if fd.containing_oneof is not None:
                default = msgspec.UNSET  # presence, not value, tells which member is set
            fields.append((fd.name, kind, msgspec.field(default=default, name=fd.json_name)))
            if fd.name != fd.json_name:
                alias = msgspec.field(default=msgspec.UNSET, name=fd.name)
                fields.append((f"{fd.name}__proto", _Never, alias))
            sub = self.structs.get(fd.message_type.full_name) if fd.message_type is not None else None
            if sub is not None and any(self.oneofs[sub]):
                children.append((fd.name, fd.is_repeated))
        # gc=False: decoded values hold no reference cycles; untracked structs cost the collector nothing.
        # omit_defaults: encoded again, a struct shows only what the body gave (see _no_duplicate_keys).
        cls = msgspec.defstruct(desc.name, fields, kw_only=True, gc=False, omit_defaults=True)
        self.structs[desc.full_name] = cls
        members = tuple(tuple(fd.name for fd in oneof.fields) for oneof in desc.oneofs)
        self.oneofs[cls] = (members, tuple(children))
        return cls

    def _field_type(self, fd: FieldDescriptor) -> tuple[Any, Any]:
        """(msgspec type, default) of one field."""
        unset = msgspec.UNSET
        msg = fd.message_type
        if msg is not None and msg.GetOptions().map_entry:
            key, value = msg.fields_by_name["key"], msg.fields_by_name["value"]
            scalar = self._scalar(value) if value.message_type is None else None
            if key.type != _F.TYPE_STRING or scalar is None:
                return _Never, unset
            return dict[str, scalar], {}  # msgspec copies an empty mutable default per instance
        if msg is not None:
            if msg.full_name.startswith("google.protobuf."):
                if fd.is_repeated:
                    return _Never, unset
                if msg.full_name == "google.protobuf.Timestamp":
                    return _Timestamp | msgspec.UnsetType, unset
                if msg.full_name == "google.protobuf.Duration":
                    return _Duration | msgspec.UnsetType, unset
                if msg.full_name == "google.protobuf.Struct" and fd.full_name == _OBJECT_FIELD:
                    # ChirpStack's ``object``: any JSON object; uplink_from_json checks the rest
                    # (depth, numbers) only there, so no other Struct field may take this way.
                    return dict[str, Any] | msgspec.UnsetType, unset
                return _Never, unset  # other Structs, Value, wrappers, Any...
            struct = self._struct(msg)
            if fd.is_repeated:
                return list[struct], []
            return struct | msgspec.UnsetType, unset
        scalar = self._scalar(fd)
        if scalar is None:
            return _Never, unset
        if fd.is_repeated:
            return list[scalar], []
        return scalar, b"" if fd.type == _F.TYPE_BYTES else _DEFAULTS[fd.cpp_type]

    @staticmethod
    def _scalar(fd: FieldDescriptor) -> Any:
        """The msgspec type of a scalar field, or None where the fast path does not go."""
        if fd.type == _F.TYPE_STRING:
            return str
        if fd.type == _F.TYPE_BYTES:
            return bytes
        if fd.type in _INT_RANGES:
            low, high = _INT_RANGES[fd.type]
            if high > 2**32:
                return None  # 64-bit integers may travel as strings in proto3 JSON
            return Annotated[int, msgspec.Meta(ge=low, le=high)]
        if fd.type == _F.TYPE_BOOL:
            return bool
        if fd.type == _F.TYPE_DOUBLE:
            return float
        if fd.type == _F.TYPE_FLOAT:
            return Annotated[float, msgspec.Meta(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
        if fd.type == _F.TYPE_ENUM:
            return Literal[tuple(v.name for v in fd.enum_type.values)]
        return None

    def check(self, value: msgspec.Struct) -> bool:
        """Whether no oneof in ``value`` has two members set (json_format refuses that)."""
        members, children = self.oneofs[type(value)]
        for names in members:
            if sum(getattr(value, name) is not msgspec.UNSET for name in names) > 1:
                return False
        for name, repeated in children:
            child = getattr(value, name)
            if repeated:
                if not all(self.check(item) for item in child):
                    return False
            elif child is not msgspec.UNSET and not self.check(child):
                return False
        return True


_DEFAULTS = {
    _F.CPPTYPE_STRING: "",  # bytes fields: b"" (same C++ type)
    _F.CPPTYPE_INT32: 0,
    _F.CPPTYPE_UINT32: 0,
    _F.CPPTYPE_INT64: 0,
    _F.CPPTYPE_UINT64: 0,
    _F.CPPTYPE_BOOL: False,
    _F.CPPTYPE_DOUBLE: 0.0,
    _F.CPPTYPE_FLOAT: 0.0,
    _F.CPPTYPE_ENUM: msgspec.UNSET,  # never read here; absent and present both fine
}

# More objects and arrays than this (counted as "{" and "[" bytes, in strings too) and the body goes the
# general way: nesting that deep could hit Python's recursion limit on one path and not the other.
# ChirpStack's uplinks have about 10, 4 more per receiving gateway, plus those of ``object``.
_MAX_CONTAINERS = 256
# ``object`` nested deeper than this (the object itself is 1) goes the general way. json_format counts
# every message it enters and refuses the 101st: the event is 1, ``object`` 2, and a value k levels
# deep is a Value at 2k + 1 (its Struct or ListValue at 2k + 2), so it refuses objects from about
# 50 levels on; 32 keeps clear of that rule's details. A citynode codec's object is 3-4 deep.
_MAX_OBJECT_DEPTH = 32
# An integer of this many digits may not fit a double (10**308 does, 2**1024 does not); json_format
# sets a Struct number from it and fails. Shorter integers always fit (rounded, as both paths round).
_LONG_INTEGER = b"0" * 309
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))  # digit -> "0", else " "
_OBJECT_FIELD = "integration.UplinkEvent.object"

def _depth_at_most(value: Any, limit: int) -> bool:
    """Whether the JSON value ``value`` (an object or array) nests at most ``limit`` levels deep."""
    if limit <= 0:
        return False
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if (kind is dict or kind is list) and not _depth_at_most(item, limit - 1):
            return False
    return True


def _object_fits(body: bytes, containers: int, obj: dict[str, Any]) -> bool:
    """Whether json_format's Struct conversion surely accepts ``obj``, the ``object`` of ``body``."""
    if containers > _MAX_OBJECT_DEPTH and not _depth_at_most(obj, _MAX_OBJECT_DEPTH):
        return False
    # A long run of digits anywhere (in a string too, then the body merely goes the general way).
    return _LONG_INTEGER not in body.translate(_DIGITS)


_TYPES = _Types(integration.UplinkEvent.DESCRIPTOR)
_DECODER = msgspec.json.Decoder(_TYPES.root)
_ANY = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


def _no_duplicate_keys(body: bytes, up: msgspec.Struct) -> bool:
    """Whether no object in ``body`` (valid JSON, decoded as ``up``) repeats a key.

    Every ``:`` of a JSON text separates a key from its value or sits in a string. Decoded, a
    repeated key keeps only its last value, so encoded again the text has fewer of them: the
    separator of each dropped pair at least. Encoding ``up`` again gives only what the body gave
    (fields left at their defaults are omitted), less what the types ignore (unknown fields): the
    same count means nothing was dropped, which is the case for ChirpStack's own bodies. Otherwise
    the body is decoded without types (nothing ignored) and counted again. Only an escape could add a
    ``:`` (``\\u003a`` decodes to one, which msgspec writes plainly): such bodies go the general way.
    """
    if b"\\u003a" in body or b"\\u003A" in body:
        return False
    colons = body.count(b":")
    if _ENCODER.encode(up).count(b":") == colons:
        return True
    try:
        again = _ENCODER.encode(_ANY.decode(body))
    except (msgspec.DecodeError, msgspec.EncodeError, ValueError, OverflowError, RecursionError):
        return False
    return again.count(b":") == colons


def _float32(value: float) -> float:
    return _FLOAT32.unpack(_FLOAT32.pack(value))[0]


def uplink_from_json(body: bytes, received_at: datetime) -> Uplink | None:
    """The Uplink of a ChirpStack ``up`` event in JSON, or ``None``: take the general path.

    ``received_at`` stands in for an event without ``time``, as in
    :func:`gateway.service.ingest.events.uplink_from_event`. Never raises.
    """
    containers = body.count(b"{") + body.count(b"[")
    if containers > _MAX_CONTAINERS:
        return None  # deep or huge: the general path's recursion limits decide, as they always did
    try:
        up = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if not _TYPES.check(up) or not _no_duplicate_keys(body, up):
        return None
    if up.object is not msgspec.UNSET and not _object_fits(body, containers, up.object):
        return None
    info = up.device_info
    if info is msgspec.UNSET or not up.deduplication_id:
        return None
    dev_eui = info.dev_eui.lower()
    if not DEV_EUI.match(dev_eui):
        return None
    best = None
    best_key = (0.0, 0)
    for rx in up.rx_info:
        key = (_float32(rx.snr), rx.rssi)
        if best is None or key > best_key:
            best, best_key = rx, key
    if best is not None:
        rssi, snr, gateway = best_key[1], round(best_key[0], 2), best.gateway_id.lower() or None
    else:
        rssi = snr = gateway = None
    tx = up.tx_info
    sf = frequency = 0
    if tx is not msgspec.UNSET:
        frequency = tx.frequency
        modulation = tx.modulation
        if modulation is not msgspec.UNSET and modulation.lora is not msgspec.UNSET:
            sf = modulation.lora.spreading_factor
    if up.time is not msgspec.UNSET:
        # The pattern checked above is a subset of ISO 8601 that fromisoformat reads (3.11+: "Z", and
        # digits beyond the microsecond truncated, as the general path's nanos // 1000).
        received = datetime.fromisoformat(up.time).astimezone(UTC)
    else:
        received = received_at
    return Uplink(
        dev_eui=dev_eui,
        device_name=info.device_name,
        application_id=info.application_id,
        f_port=up.f_port,
        f_cnt=up.f_cnt,
        data=up.data,
        received_at=received,
        deduplication_id=up.deduplication_id,
        tags=dict(info.tags),
        radio=RadioMeta(
            rssi=rssi,
            snr=snr,
            gateway_id=gateway,
            spreading_factor=sf or None,
            frequency=frequency or None,
            gateway_count=len(up.rx_info),
        ),
        device_profile_name=info.device_profile_name,
    )
