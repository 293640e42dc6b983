"""What a bad publisher may cost the ingests, and checks the MQTT and AMQP ingests share.

* :func:`oversized`: a message over the configured size becomes a dead letter that names its size,
  its first :data:`HEAD_BYTES` bytes (hex) and its SHA-256; the body itself is never stored.
* :func:`check_topic`: the topic (or routing key) and the body must agree: the body's DevEUI is the
  topic's, and a body that carries fields of another event type and none its own type does not (an
  uplink body on ``.../event/join`` would otherwise restart that device's FCnt tracking) is a dead letter.
* :class:`RateLimitedLog`: one WARNING line per refused request, at most ``per_minute`` a minute; the
  rest are counted and reported with the next line that gets through.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from google.protobuf.unknown_fields import UnknownFieldSet

from gateway.service.ingest.events import EVENT_TYPES
from gateway.service.pipeline import Prepared

__all__ = ["HEAD_BYTES", "RateLimitedLog", "check_topic", "oversized"]

HEAD_BYTES = 64  # of an oversized message kept in its dead letter

# The JSON names of each event type's fields (ChirpStack's JSON marshaler uses protobuf JSON names).
_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(f.json_name for f in cls.DESCRIPTOR.fields) | frozenset(f.name for f in cls.DESCRIPTOR.fields)
    for kind, cls in EVENT_TYPES.items()
}


def oversized(source: str, kind: str, body: bytes, limit: int, dev_eui: str | None) -> Prepared:
    """A dead letter for a ``body`` over ``limit`` bytes: its size, first bytes and hash, never the body."""
    head = bytes(body[:HEAD_BYTES])
    digest = hashlib.sha256(body).hexdigest()
    reason = (
        f"message of {len(body)} bytes exceeds the limit of {limit} bytes "
        f"(sha256 {digest}, first {len(head)} bytes {head.hex()})"
    )
    return Prepared(kind, source, head, datetime.now(UTC), dead=(reason, head, dev_eui))


def check_topic(prepared: Prepared, dev_eui: str, kind: str) -> Prepared:
    """``prepared`` unchanged when its body agrees with the topic's DevEUI and event type, else a dead letter."""
    p = prepared
    if p.dead is not None:
        return p
    body_eui = p.uplink.dev_eui if p.uplink is not None else (p.event.dev_eui if p.event is not None else None)
    reason = None
    if body_eui is not None and body_eui != dev_eui.lower():
        reason = f"the topic's DevEUI {dev_eui.lower()} differs from the body's {body_eui}"
    elif kind != "up":  # an "up" body was checked field by field on its way to an Uplink
        other = _looks_like(p, kind)
        if other is not None:
            reason = f"the body does not fit the topic's event type {kind!r} ({other})"
    if reason is None:
        return p
    return Prepared(kind, p.source, p.raw, p.received_at, dead=(reason, p.raw, body_eui or dev_eui.lower()))


def _looks_like(p: Prepared, kind: str) -> str | None:
    """Why the body is not a ``kind`` event, or None when it may be one."""
    if p.event is None:
        return None
    if p.encoding == "protobuf":
        if not len(UnknownFieldSet(p.event.message)):
            return None
        # Fields the topic's type does not have: another type's body, or a newer ChirpStack's field.
        # Only the first is refused: the body parses as another event type, all its fields known.
        for other, cls in EVENT_TYPES.items():
            if other == kind:
                continue
            message = cls()
            try:
                message.ParseFromString(p.raw)
            except Exception:  # protobuf's DecodeError and friends: not that type
                continue
            if not len(UnknownFieldSet(message)):
                return f"it parses as the {other!r} event"
        return None
    try:
        doc: Any = json.loads(p.raw)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    keys = set(doc)
    own = _FIELDS[kind]
    foreign = sorted(keys - own)
    if not foreign:
        return None
    # Only fields of another event type count (a newer ChirpStack may add fields of its own).
    for other, fields in _FIELDS.items():
        if other != kind and set(foreign) & fields:
            return f"fields {', '.join(foreign)} belong to the {other!r} event"
    return None


class RateLimitedLog:
    """At most ``per_minute`` WARNING lines a minute on ``logger``; the rest are counted, not written."""

    def __init__(self, logger: logging.Logger, per_minute: int = 10) -> None:
        self.logger = logger
        self.per_minute = per_minute
        self._window = 0.0
        self._written = 0
        self.suppressed = 0

    def warning(self, message: str, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._window >= 60.0:
            self._window, self._written = now, 0
        if self._written >= self.per_minute:
            self.suppressed += 1
            return
        self._written += 1
        if self.suppressed:
            extra["suppressed"] = self.suppressed
            self.suppressed = 0
        self.logger.warning(message, extra=extra)
