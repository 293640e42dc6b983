"""Decoded payloads to unit-labelled readings: one :class:`Reading` per measured field.

Input is the codec's decoded form ``{"type", "version", "readings": [{field: value, ..., "faults",
"offset_s"}]}`` and the :class:`Uplink` it came in. The rules:

* ``time`` is the network receive time minus the reading's ``offset_s`` (batched readings; 0 if absent).
* Units and UN/CEFACT unit codes come from the payload contract (:func:`gateway.contract.schema.load_schema`),
  never from the payload.
* Numbers, bools and enum names are kept as values (``tilt`` -> ``True``, ``reset_cause`` -> ``"watchdog"``);
  a ``semver`` is its dotted string.
* ``list`` fields are flattened with the item's position in the list: ``doors`` ->
  ``doors.0.door``, ``doors.0.boardings``, ``doors.0.alightings``, ``doors.1.door``, ... The position is
  the order the node sent; the door number is the ``door`` item itself.
* ``faults`` is not a measurement and is not emitted (fields a node could not measure are simply absent;
  the decoded form keeps the fault list for the dead-letter store and logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from gateway.contract.records import Reading, Uplink
from gateway.contract.schema import FieldSpec, load_schema
from gateway.errors import DecodeError

__all__ = ["NOT_READINGS", "normalize"]

NOT_READINGS = frozenset({"faults", "offset_s"})
# Values taken as they are (exact types: a bool is its own type, a str subclass goes the long way).
_PLAIN = frozenset({int, float, str, bool})


def normalize(decoded: Mapping[str, Any], uplink: Uplink) -> list[Reading]:
    """Turn one decoded payload into readings, in payload order.

    Raises :class:`DecodeError` when ``decoded`` does not have the decoded form (for example an
    untrusted ChirpStack ``object``), so the uplink goes to the dead-letter store with the reason.
    """
    msg_type = decoded.get("type") if isinstance(decoded, Mapping) else None
    items = decoded.get("readings") if isinstance(decoded, Mapping) else None
    if not isinstance(msg_type, str) or not isinstance(items, list):
        raise DecodeError("decoded payload needs a string 'type' and a list of 'readings'")
    schema = load_schema()
    spec = schema.messages.get(msg_type)
    specs: dict[str, FieldSpec] = {}
    if spec is not None:
        version = decoded.get("version")
        fields = spec.versions.get(version, spec.fields) if isinstance(version, int) else spec.fields
        specs = {f.name: f for f in fields}
    out: list[Reading] = []
    dev_eui, device_name, dedup_id = uplink.dev_eui, uplink.device_name, uplink.deduplication_id
    f_cnt = uplink.f_cnt
    tags = dict(uplink.tags)  # one copy, shared by the uplink's readings (values: nobody changes them)
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise DecodeError(f"{msg_type}: reading {index} is not an object")
        offset = item.get("offset_s", 0)
        if isinstance(offset, bool) or not isinstance(offset, int | float) or offset < 0:
            raise DecodeError(f"{msg_type}: reading {index} has an invalid offset_s {offset!r}")
        time = uplink.received_at - timedelta(seconds=offset) if offset else uplink.received_at
        for name, value in item.items():
            if name in NOT_READINGS:
                continue
            field_spec = specs.get(name)
            if type(value) in _PLAIN:  # a plain scalar (nearly every field): what _flatten would return
                out.append(
                    Reading(
                        dev_eui,
                        device_name,
                        msg_type,
                        time,
                        name,
                        value,
                        field_spec.unit if field_spec else None,
                        field_spec.unit_code if field_spec else None,
                        dedup_id,
                        f_cnt,
                        tags,
                    )
                )
                continue
            for field, field_value, leaf_spec in _flatten(name, value, field_spec):
                out.append(
                    Reading(
                        dev_eui=uplink.dev_eui,
                        device_name=uplink.device_name,
                        message_type=msg_type,
                        time=time,
                        field=field,
                        value=field_value,
                        unit=leaf_spec.unit if leaf_spec else None,
                        unit_code=leaf_spec.unit_code if leaf_spec else None,
                        deduplication_id=uplink.deduplication_id,
                        f_cnt=uplink.f_cnt,
                        tags=tags,
                    )
                )
    return out


def _flatten(name: str, value: Any, spec: FieldSpec | None) -> list[tuple[str, Any, FieldSpec | None]]:
    if isinstance(value, list) and (spec is None or spec.type == "list"):
        items = {sub.name: sub for sub in spec.items} if spec else {}
        out: list[tuple[str, Any, FieldSpec | None]] = []
        for index, item in enumerate(value):
            if isinstance(item, Mapping):
                for sub_name, sub_value in item.items():
                    out.extend(_flatten(f"{name}.{index}.{sub_name}", sub_value, items.get(sub_name)))
            else:
                out.append((f"{name}.{index}", _scalar(f"{name}.{index}", item), None))
        return out
    if spec is not None and spec.type == "flags" and isinstance(value, list):
        return [(name, ",".join(str(v) for v in value), spec)]
    return [(name, _scalar(name, value), spec)]


def _scalar(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        if value is None:
            raise DecodeError(f"field {name} is null (unmeasured fields must be absent)")
        return value
    if isinstance(value, list) and all(isinstance(v, int) for v in value):  # semver left as a list
        return ".".join(str(v) for v in value)
    raise DecodeError(
        f"field {name} has a value of type {type(value).__name__}, expected a number, bool or string"
    )
