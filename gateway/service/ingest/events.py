"""ChirpStack v4 integration events: parse them from JSON or protobuf, turn ``up`` events into Uplinks.

ChirpStack's MQTT, HTTP and AMQP integrations all carry the same messages, defined in
``chirpstack_api.integration`` (``integration/integration.proto``): ``UplinkEvent``, ``JoinEvent``,
``StatusEvent``, ``AckEvent``, ``TxAckEvent``, ``LogEvent`` and ``LocationEvent``. The event type travels beside the body: the last MQTT topic level
(``application/<id>/device/<devEui>/event/<type>``), the AMQP routing key
(``application.<id>.device.<devEui>.event.<type>``) or the HTTP ``?event=<type>`` query parameter.

With ``json`` marshaling ChirpStack writes the protobuf JSON mapping (camelCase field names such as
``deviceInfo.devEui``, ``bytes`` as base64, enums by name, timestamps as RFC 3339); with ``protobuf``
it sends the serialised message. Both are parsed with the protobuf runtime, never with a hand-kept
field list. Anything that cannot be parsed raises :class:`gateway.errors.DecodeError` naming the reason.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from chirpstack_api import integration
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from gateway.contract.records import RadioMeta, Uplink
from gateway.errors import DecodeError

__all__ = [
    "DEV_EUI",
    "EVENT_TYPES",
    "FLOAT32_MAX",
    "ChirpStackEvent",
    "Encoding",
    "encode_event",
    "encoding_for_content_type",
    "parse_event",
    "parse_mqtt_topic",
    "parse_routing_key",
    "uplink_from_event",
]

Encoding = Literal["json", "protobuf"]

# Event type (as in topics, routing keys and ?event=) -> protobuf message class.
EVENT_TYPES: dict[str, type[Message]] = {
    "up": integration.UplinkEvent,
    "join": integration.JoinEvent,
    "status": integration.StatusEvent,
    "ack": integration.AckEvent,
    "txack": integration.TxAckEvent,
    "log": integration.LogEvent,
    "location": integration.LocationEvent,
}

# A DevEUI as the gateway keeps it: 16 lower-case hex digits (\Z: $ would let a final newline through).
DEV_EUI = re.compile(r"^[0-9a-f]{16}\Z")
_TOPIC = re.compile(r"^application/([^/]+)/device/([^/]+)/event/([^/]+)$")
_ROUTING_KEY = re.compile(r"^application\.([^.]+)\.device\.([^.]+)\.event\.([^.]+)$")


@dataclass(frozen=True)
class ChirpStackEvent:
    """One parsed integration event."""

    kind: str  # "up", "join", ...
    message: Any  # the chirpstack_api.integration message (typed as Any: generated classes)
    encoding: Encoding

    @property
    def dev_eui(self) -> str | None:
        """The device EUI, lower-case hex, or ``None`` when the event carries no device."""
        info = getattr(self.message, "device_info", None)
        if info is None or not info.dev_eui:
            return None
        return info.dev_eui.lower()

    @property
    def dedup_id(self) -> str | None:
        """What makes a redelivery recognisable: ``deduplicationId``, ``downlinkId`` for txack, else None."""
        if self.kind == "txack":
            return str(self.message.downlink_id) if self.message.downlink_id else None
        value = getattr(self.message, "deduplication_id", "")
        return value or None

    def time(self, default: datetime) -> datetime:
        """The event's ``time`` (UTC), or ``default`` when ChirpStack left it unset."""
        if self.message.HasField("time"):
            return self.message.time.ToDatetime(tzinfo=UTC)
        return default


def parse_event(kind: str, body: bytes | str, encoding: Encoding) -> ChirpStackEvent:
    """Parse one event body of type ``kind`` in ``encoding`` ("json" or "protobuf").

    Unknown JSON fields are ignored (a newer ChirpStack may add some); everything else that does not
    fit the message raises :class:`DecodeError` naming the event type, the encoding and the reason.
    """
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise DecodeError(f"unknown ChirpStack event type {kind!r} (known: {', '.join(EVENT_TYPES)})")
    message = cls()
    if encoding == "json":
        try:
            text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{kind} event: JSON body is not UTF-8: {exc}") from None
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
            if not isinstance(doc, dict):
                raise DecodeError(f"{kind} event: JSON body is not an object")
            _check_base64(kind, doc.get("data"))
            try:
                _fill_message(message, doc)
            except (_NotFast, ValueError, TypeError, AttributeError, KeyError, json_format.Error):
                # Anything the fast path does not take as it is (nulls, numbers as strings, custom
                # enum values, ...) goes through the protobuf runtime's own parser, which either
                # accepts it or names what is wrong: the result is the same as if it always did.
                message = cls()
                json_format.ParseDict(doc, message, ignore_unknown_fields=True)
        except DecodeError:
            raise
        except RecursionError:
            raise DecodeError(f"{kind} event: JSON nested too deeply") from None
        except (ValueError, json_format.Error, TypeError, AttributeError, KeyError) as exc:
            # json.JSONDecodeError, json_format.ParseError (bad base64, wrong types) and the odd
            # TypeError the protobuf runtime raises for exotic shapes: all mean "not this message".
            raise DecodeError(f"{kind} event: invalid JSON: {_short(exc)}") from None
    elif encoding == "protobuf":
        if isinstance(body, str):
            raise DecodeError(f"{kind} event: protobuf body must be bytes")
        try:
            message.ParseFromString(bytes(body))
        except (ProtobufDecodeError, ValueError, RuntimeError, TypeError) as exc:
            raise DecodeError(f"{kind} event: invalid protobuf {cls.__name__}: {_short(exc)}") from None
    else:
        raise DecodeError(f"unknown event encoding {encoding!r} (json or protobuf)")
    return ChirpStackEvent(kind=kind, message=message, encoding=encoding)


# -------------------------------------------------------------------------------- fast JSON parsing
#
# google.protobuf.json_format walks the JSON in pure Python with a general converter (about 1 ms per
# ChirpStack uplink event on the benchmark machine, the gateway's largest single cost). The fast path
# below fills the same chirpstack-api message from the already-parsed dict, driven by the message's
# own descriptor (never a hand-kept field list), for the shapes ChirpStack's JSON marshaler writes
# (proto3 JSON mapping: lowerCamelCase names, enums by name, bytes as padded standard base64,
# Timestamps in RFC 3339). It takes only values whose type is exactly what the mapping prescribes
# and raises _NotFast for everything else, so json_format stays the judge of every unusual input.


class _NotFast(Exception):
    """The fast JSON path does not handle this input: use json_format."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json_format rejects duplicate keys (RFC 8259 4: names SHOULD be unique); so do we.
    doc = dict(pairs)
    if len(doc) != len(pairs):
        names = [k for k, _ in pairs]
        raise DecodeError(f"duplicate JSON key {next(k for k in names if names.count(k) > 1)!r}")
    return doc


_F = FieldDescriptor
_INT_CPP = frozenset({_F.CPPTYPE_INT32, _F.CPPTYPE_INT64, _F.CPPTYPE_UINT32, _F.CPPTYPE_UINT64})
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: the bound of float fields in JSON
_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads leaves only unpaired surrogates
_STD_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
# ASCII digits only, and \Z (not $, which also matches before a final newline json_format refuses).
_RFC3339 = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})\Z"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How one field is filled (built once per message type from its descriptor).
_MAP, _REPEATED_MESSAGE, _MESSAGE, _REPEATED, _SCALAR = range(5)
_STRING, _BYTES, _INT, _BOOL, _DOUBLE, _FLOAT, _ENUM = range(7)


@dataclass(frozen=True)
class _Plan:
    name: str  # the proto field name (attribute of the Python message)
    number: int
    oneof: str | None
    shape: int  # _MAP, _REPEATED_MESSAGE, _MESSAGE, _REPEATED or _SCALAR
    scalar: int  # _STRING ... _ENUM for scalar fields and map values
    message: str = ""  # full name of a message field's type
    enum: dict[str, int] | None = None


# message full name -> {JSON key (JSON name and proto name): plan}
_PLANS: dict[str, dict[str, _Plan]] = {}


def _scalar_kind(fd: Any) -> tuple[int, dict[str, int] | None]:
    cpp = fd.cpp_type
    if cpp == _F.CPPTYPE_STRING:
        return (_BYTES if fd.type == _F.TYPE_BYTES else _STRING), None
    if cpp in _INT_CPP:
        return _INT, None
    if cpp == _F.CPPTYPE_BOOL:
        return _BOOL, None
    if cpp == _F.CPPTYPE_DOUBLE:
        return _DOUBLE, None
    if cpp == _F.CPPTYPE_FLOAT:
        return _FLOAT, None
    if cpp == _F.CPPTYPE_ENUM:
        return _ENUM, {v.name: v.number for v in fd.enum_type.values}
    return -1, None


def _plans_of(desc: Any) -> dict[str, _Plan]:
    table = _PLANS.get(desc.full_name)
    if table is not None:
        return table
    table = {}
    for fd in desc.fields:
        oneof = fd.containing_oneof.name if fd.containing_oneof is not None else None
        msg = fd.message_type
        if msg is not None and msg.GetOptions().map_entry:
            key, value = msg.fields_by_name["key"], msg.fields_by_name["value"]
            scalar, enum = _scalar_kind(value) if value.message_type is None else (-1, None)
            if key.type != _F.TYPE_STRING:
                scalar = -1  # non-string keys: json_format's rules
            plan = _Plan(fd.name, fd.number, oneof, _MAP, scalar, enum=enum)
        elif msg is not None:
            shape = _REPEATED_MESSAGE if fd.is_repeated else _MESSAGE
            plan = _Plan(fd.name, fd.number, oneof, shape, -1, msg.full_name)
        else:
            scalar, enum = _scalar_kind(fd)
            shape = _REPEATED if fd.is_repeated else _SCALAR
            plan = _Plan(fd.name, fd.number, oneof, shape, scalar, enum=enum)
        table[fd.name] = table[fd.json_name] = plan
    _PLANS[desc.full_name] = table
    return table


def _fill_message(message: Any, doc: dict[str, Any]) -> None:
    """Merge the proto3-JSON ``doc`` into ``message``; raises :class:`_NotFast` when unsure."""
    plans = _plans_of(message.DESCRIPTOR)
    seen: set[int] = set()
    oneofs: set[str] | None = None
    for key, value in doc.items():
        plan = plans.get(key)
        if plan is None:
            continue  # ignore_unknown_fields: a newer ChirpStack may add fields
        if plan.number in seen or value is None:
            raise _NotFast  # the same field twice (JSON and proto name), or null: json_format decides
        seen.add(plan.number)
        if plan.oneof is not None:
            oneofs = oneofs or set()
            if plan.oneof in oneofs:
                raise _NotFast
            oneofs.add(plan.oneof)
        shape = plan.shape
        if shape == _SCALAR:
            setattr(message, plan.name, _scalar(plan, value))
        elif shape == _MESSAGE:
            sub = getattr(message, plan.name)
            sub.SetInParent()  # an empty object still marks the field present, as json_format does
            _fill_submessage(sub, plan.message, value)
        elif shape == _REPEATED_MESSAGE:
            if type(value) is not list:
                raise _NotFast
            container = getattr(message, plan.name)
            for item in value:
                if type(item) is not dict:
                    raise _NotFast
                _fill_message(container.add(), item)
        elif shape == _MAP:
            if type(value) is not dict or plan.scalar < 0:
                raise _NotFast
            container = getattr(message, plan.name)
            for k, v in value.items():
                if not k.isascii() and _SURROGATE.search(k):
                    raise _NotFast
                container[k] = _scalar(plan, v)
        else:  # repeated scalar
            if type(value) is not list:
                raise _NotFast
            getattr(message, plan.name).extend([_scalar(plan, v) for v in value])


def _fill_submessage(sub: Any, full_name: str, value: Any) -> None:
    if full_name == "google.protobuf.Timestamp":
        _set_timestamp(sub, value)
    elif full_name.startswith("google.protobuf."):  # Struct, Duration, wrappers: rare, json_format's
        json_format.ParseDict(value, sub, ignore_unknown_fields=True)
    elif type(value) is dict:
        _fill_message(sub, value)
    else:
        raise _NotFast


def _scalar(plan: _Plan, value: Any) -> Any:
    kind = type(value)
    scalar = plan.scalar
    if scalar == _STRING:
        if kind is not str or (not value.isascii() and _SURROGATE.search(value)):
            raise _NotFast
        return value
    if scalar == _INT:
        if kind is not int:
            raise _NotFast  # numbers as strings (64-bit), 1.0, true: json_format's rules
        return value
    if scalar == _BYTES:
        if kind is not str or not _STD_BASE64.match(value):
            raise _NotFast  # URL-safe or unpadded base64: json_format's lenient decoder
        return base64.b64decode(value)
    if scalar == _BOOL:
        if kind is not bool:
            raise _NotFast
        return value
    if scalar == _DOUBLE or scalar == _FLOAT:
        if kind is not float and kind is not int:
            raise _NotFast  # "NaN", "Infinity" as strings
        if scalar == _FLOAT and not -FLOAT32_MAX <= value <= FLOAT32_MAX:
            raise _NotFast
        return value
    if scalar == _ENUM and kind is str and plan.enum is not None:
        number = plan.enum.get(value)
        if number is not None:
            return number
    raise _NotFast


def _set_timestamp(ts: Any, value: Any) -> None:
    """RFC 3339 (what proto3 JSON writes for a Timestamp) without json_format's strptime."""
    ts.seconds, ts.nanos = rfc3339_timestamp(value)


def rfc3339_timestamp(value: Any) -> tuple[int, int]:
    """``(seconds, nanos)`` since the epoch of an RFC 3339 string in the form proto3 JSON writes.

    Raises :class:`_NotFast` for anything else (json_format's own parser then decides).
    """
    match = _RFC3339.match(value) if type(value) is str else None
    if match is None:
        raise _NotFast
    year, month, day, hour, minute, second, frac, zone = match.groups()
    try:
        when = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError:
        raise _NotFast from None  # e.g. a leap second: json_format's rules
    delta = when - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    if zone != "Z":
        if int(zone[1:3]) > 23 or int(zone[4:6]) > 59:
            raise _NotFast
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    return seconds, int(frac.ljust(9, "0")) if frac else 0


def encode_event(message: Message, encoding: Encoding) -> bytes:
    """Serialise an event the way ChirpStack's integrations do (for tests, the simulator and replays)."""
    if encoding == "json":
        return json_format.MessageToJson(message).encode("utf-8")
    return message.SerializeToString()


def uplink_from_event(event: ChirpStackEvent, *, received_at: datetime | None = None) -> Uplink:
    """Turn a parsed ``up`` event into an :class:`Uplink`.

    The radio metadata is that of the best gateway (highest SNR, then RSSI: SNR is what decides the
    demodulation margin of a LoRa frame near the noise floor). Raises :class:`DecodeError` when the
    event lacks what an uplink needs: a 16-digit DevEUI and a deduplicationId.
    """
    if event.kind != "up":
        raise DecodeError(f"not an uplink event: {event.kind}")
    up = event.message
    info = up.device_info
    dev_eui = info.dev_eui.lower()
    if not DEV_EUI.match(dev_eui):
        raise DecodeError(f"up event: deviceInfo.devEui must be 16 hex digits, got {info.dev_eui!r}")
    if not up.deduplication_id:
        raise DecodeError(f"up event of {dev_eui}: deduplicationId missing (needed for exactly-once)")
    # Each attribute of a upb message is a C call that builds a Python object: read each once.
    rx_info = up.rx_info
    best = None
    best_key = (0.0, 0)
    for rx in rx_info:
        key = (rx.snr, rx.rssi)
        if best is None or key > best_key:
            best, best_key = rx, key
    tx_info = up.tx_info
    modulation = tx_info.modulation
    lora = modulation.lora if modulation.HasField("lora") else None
    if best is not None:
        gateway_id = best.gateway_id
        rssi, snr, gateway = int(best_key[1]), round(float(best_key[0]), 2), gateway_id.lower() or None
    else:
        rssi = snr = gateway = None
    sf = lora.spreading_factor if lora is not None else 0
    radio = RadioMeta(
        rssi=rssi,
        snr=snr,
        gateway_id=gateway,
        spreading_factor=int(sf) if sf else None,
        frequency=int(tx_info.frequency) or None,
        gateway_count=len(rx_info),
    )
    if up.HasField("time"):
        time = up.time
        # Timestamp.ToDatetime, without its generic conversion: seconds since the epoch + nanoseconds.
        try:
            received = _EPOCH + timedelta(seconds=time.seconds, microseconds=time.nanos // 1000)
        except OverflowError:  # a protobuf body can carry any int64
            raise DecodeError(f"up event of {dev_eui}: time out of range ({time.seconds} s)") from None
    else:
        received = received_at or datetime.now(UTC)
    return Uplink(
        dev_eui=dev_eui,
        device_name=info.device_name,
        application_id=info.application_id,
        f_port=int(up.f_port),
        f_cnt=int(up.f_cnt),
        data=bytes(up.data),
        received_at=received,
        deduplication_id=up.deduplication_id,
        tags={key: tags[key] for key in tags} if (tags := info.tags) else {},  # dict(map) is 3x slower
        radio=radio,
        device_profile_name=info.device_profile_name,
    )


def parse_mqtt_topic(topic: str) -> tuple[str, str, str]:
    """``application/<app>/device/<devEui>/event/<type>`` -> (application id, devEui, event type)."""
    match = _TOPIC.match(topic)
    if match is None:
        raise DecodeError(f"not a ChirpStack event topic: {topic!r}")
    app, eui, kind = match.groups()
    return app, eui.lower(), kind


def parse_routing_key(key: str) -> tuple[str, str, str]:
    """``application.<app>.device.<devEui>.event.<type>`` -> (application id, devEui, event type)."""
    match = _ROUTING_KEY.match(key)
    if match is None:
        raise DecodeError(f"not a ChirpStack event routing key: {key!r}")
    app, eui, kind = match.groups()
    return app, eui.lower(), kind


def encoding_for_content_type(content_type: str | None, default: Encoding = "json") -> Encoding:
    """``application/json`` -> json, ``application/octet-stream`` or ``application/x-protobuf`` -> protobuf."""
    ct = (content_type or "").split(";")[0].strip().lower()
    if not ct:
        return default
    if ct in ("application/json", "text/json") or ct.endswith("+json"):
        return "json"
    if ct in ("application/octet-stream", "application/protobuf", "application/x-protobuf"):
        return "protobuf"
    raise DecodeError(
        f"unsupported Content-Type {content_type!r} (application/json or application/octet-stream)"
    )


_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")


def _check_base64(kind: str, value: Any) -> None:
    """Reject a ``data`` string that is not base64.

    The protobuf JSON parser silently drops characters outside the alphabet, which would turn a
    corrupted body into a different, possibly valid payload; the proto3 JSON mapping allows standard or
    URL-safe base64, with or without padding, and nothing else.
    """
    if value is None:
        return
    if not isinstance(value, str) or not _BASE64.match(value) or len(value.rstrip("=")) % 4 == 1:
        shown = value if isinstance(value, str) and len(value) <= 40 else f"{str(value)[:40]}..."
        raise DecodeError(f"{kind} event: data is not valid base64: {shown!r}")


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
