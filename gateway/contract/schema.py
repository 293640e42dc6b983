"""The payload contract, loaded from ``codecs/schema.json`` into typed, frozen values.

``codecs/schema.json`` is the single source of truth of every citynode payload. This module only
reads it; the codec (:mod:`gateway.contract.codec`), the code generator (:mod:`gateway.contract.codegen`) and the
normaliser use these values so that field names, units and ranges are written down once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Literal

from gateway.errors import ConfigError
from gateway.paths import codecs_dir

__all__ = ["FieldSpec", "MessageSpec", "Schema", "load_schema", "schema_path"]

FieldType = Literal["number", "bool", "enum", "flags", "semver", "list"]
FIELD_TYPES = ("number", "bool", "enum", "flags", "semver", "list")


@dataclass(frozen=True)
class FieldSpec:
    """One field of a message.

    For ``number`` fields the wire value is the integer ``round(value * 10**decimals) - offset * 10**decimals``
    (rounding half away from zero); ``min``/``max`` bound the value in its unit.
    """

    name: str
    type: FieldType
    unit: str | None = None
    unit_code: str | None = None  # UN/CEFACT common code, as NGSI-LD and SensorThings expect
    min: float | None = None
    max: float | None = None
    decimals: int = 0
    offset: float = 0
    optional: bool = False
    values: tuple[str, ...] = ()  # enum and flags names, in wire order
    items: tuple[FieldSpec, ...] = ()  # list item fields
    max_items: int = 0
    description: str = ""

    # Cached: the decoder asks for these for every value of every uplink.
    @cached_property
    def multiplier(self) -> int:
        return 10**self.decimals

    @cached_property
    def offset_units(self) -> int:
        """The offset in wire units (an integer by construction of the schema)."""
        return round(self.offset * self.multiplier)


@dataclass(frozen=True)
class MessageSpec:
    """One message type: its fPort, direction, and field list per schema version."""

    name: str
    fport: int
    direction: Literal["uplink", "downlink"]
    versions: dict[int, tuple[FieldSpec, ...]]
    description: str = ""

    @property
    def current_version(self) -> int:
        return max(self.versions)

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """Fields of the current version."""
        return self.versions[self.current_version]

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no field {name!r}")


@dataclass(frozen=True)
class Schema:
    """The whole contract: every message, indexed by name and by fPort."""

    messages: dict[str, MessageSpec]
    batch_flag: int
    version_mask: int
    fault_flags: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def by_fport(self, fport: int, direction: str = "uplink") -> MessageSpec | None:
        for msg in self.messages.values():
            if msg.fport == fport and msg.direction == direction:
                return msg
        return None

    def message(self, name: str) -> MessageSpec:
        try:
            return self.messages[name]
        except KeyError:
            known = ", ".join(sorted(self.messages))
            raise ConfigError(f"unknown message type {name!r} (known: {known})") from None


def schema_path() -> Path:
    """``codecs/schema.json`` of the checkout, or the wheel's copy (:func:`gateway.paths.codecs_dir`)."""
    return codecs_dir() / "schema.json"


def _field(raw: dict[str, Any], flags: tuple[str, ...], where: str) -> FieldSpec:
    name = raw.get("name")
    kind = raw.get("type")
    if not isinstance(name, str) or kind not in FIELD_TYPES:
        raise ConfigError(f"schema {where}: field needs a name and a type in {FIELD_TYPES}: {raw!r}")
    values: tuple[str, ...] = tuple(raw.get("values", ()))
    if raw.get("values_from") == "fault_flags":
        values = flags
    spec = FieldSpec(
        name=name,
        type=kind,
        unit=raw.get("unit"),
        unit_code=raw.get("unit_code"),
        min=raw.get("min"),
        max=raw.get("max"),
        decimals=int(raw.get("decimals", 0)),
        offset=raw.get("offset", 0),
        optional=bool(raw.get("optional", False)),
        values=values,
        items=tuple(_field(item, flags, f"{where}.{name}") for item in raw.get("items", ())),
        max_items=int(raw.get("max_items", 0)),
        description=raw.get("description", ""),
    )
    if kind == "number" and (spec.min is None or spec.max is None):
        raise ConfigError(f"schema {where}.{name}: number fields need min and max")
    if kind == "number" and spec.offset * spec.multiplier != spec.offset_units:
        raise ConfigError(f"schema {where}.{name}: offset must be a multiple of the resolution")
    if kind in ("enum", "flags") and not values:
        raise ConfigError(f"schema {where}.{name}: {kind} fields need values")
    return spec


def parse_schema(raw: dict[str, Any]) -> Schema:
    """Build a :class:`Schema` from the JSON document, checking it as it goes."""
    flags = tuple(raw.get("fault_flags", ()))
    messages: dict[str, MessageSpec] = {}
    for name, msg in raw["messages"].items():
        versions = {
            int(v): tuple(_field(f, flags, f"{name}.v{v}") for f in fields) for v, fields in msg["versions"].items()
        }
        for v, fields in versions.items():
            seen_optional = False
            for spec in fields:
                if seen_optional and not spec.optional:
                    raise ConfigError(f"schema {name}.v{v}.{spec.name}: optional fields must come last")
                seen_optional = seen_optional or spec.optional
        messages[name] = MessageSpec(
            name=name,
            fport=int(msg["fport"]),
            direction=msg["direction"],
            versions=versions,
            description=msg.get("description", ""),
        )
    header = raw["header"]
    return Schema(
        messages=messages,
        batch_flag=int(header["batch_flag"]),
        version_mask=int(header["version_mask"]),
        fault_flags=flags,
        raw=raw,
    )


@cache
def load_schema() -> Schema:
    """The contract as shipped (cached)."""
    path = schema_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read payload schema {path}: {exc}") from exc
    return parse_schema(raw)
