"""ChirpStack v4 integration events: parse them from JSON or protobuf, turn ``up`` events into Uplinks.

ChirpStack's MQTT, HTTP and AMQP integrations all carry the same messages, defined in
``chirpstack_api.integration`` (``integration/integration.proto``): ``UplinkEvent``, ``JoinEvent``,
``StatusEvent``, ``AckEvent``, ``TxAckEvent``, ``LogEvent`` and ``LocationEvent``. The event type travels beside the body: the last MQTT topic level
(``application/<id>/device/<devEui>/event/<type>``), the AMQP routing key
(``application.<id>.device.<devEui>.event.<type>``) or the HTTP ``?event=<type>`` query parameter.

With ``json`` marshaling ChirpStack writes the protobuf JSON mapping (camelCase field names such as
``deviceInfo.devEui``, ``bytes`` as base64, enums by name, timestamps as RFC 3339); with ``protobuf``
it sends the serialised message. Both are parsed with the protobuf runtime, never with a hand-kept
field list: JSON by ``google.protobuf.json_format`` (the general path; the ingest's one fast path for
JSON ``up`` events is :mod:`gateway.service.ingest.json_fast`, which takes only what this path makes
the same Uplink of). Anything that cannot be parsed raises :class:`gateway.errors.DecodeError` naming
the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from chirpstack_api import integration
from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from gateway.contract.records import RadioMeta, Uplink
from gateway.errors import DecodeError

__all__ = [
    "DEV_EUI",
    "EVENT_TYPES",
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
            json_format.ParseDict(doc, message, ignore_unknown_fields=True)
        except DecodeError:
            raise
        except RecursionError:
            raise DecodeError(f"{kind} event: JSON nested too deeply") from None
        except (ValueError, json_format.Error, TypeError, AttributeError, KeyError, OverflowError) as exc:
            # json.JSONDecodeError, json_format.ParseError (bad base64, wrong types), the odd TypeError
            # the protobuf runtime raises for exotic shapes and the OverflowError of a number beyond a
            # double in ``object`` (a Struct, whose numbers are doubles): all mean "not this message".
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


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json_format rejects duplicate keys (RFC 8259 4: names SHOULD be unique); so do we.
    doc = dict(pairs)
    if len(doc) != len(pairs):
        names = [k for k, _ in pairs]
        raise DecodeError(f"duplicate JSON key {next(k for k in names if names.count(k) > 1)!r}")
    return doc


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
