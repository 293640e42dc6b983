"""The simulator's device registry: which devices may join, with which OTAA keys.

Sources, auto-detected by :func:`load_devices`:

* a provisioning bundle (``citynode provision`` writes ``<bundles>/<deveui>.json``, format
  ``citynode-node-bundle/1``) or a directory of them;
* a JSON file holding a list of ``{"dev_eui", "join_eui", "app_key", "name"?, "role"?, "tags"?}``.

EUIs are 16 hex digits (MSB first, as on the label and in ChirpStack), the AppKey 32 hex digits.
Errors are :class:`gateway.errors.ConfigError` naming the file, the entry and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

__all__ = ["DeviceKeys", "load_devices", "device_from_mapping"]

BUNDLE_FORMAT = "citynode-node-bundle/1"  # gateway.field.provision.BUNDLE_FORMAT


@dataclass(frozen=True)
class DeviceKeys:
    """One OTAA device as the simulator's join server knows it (keys never appear in its repr)."""

    dev_eui: str  # 16 lower-case hex digits
    join_eui: str
    app_key: bytes = field(repr=False)
    name: str = ""
    role: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def device_profile_name(self) -> str:
        return f"citynode-{self.role}" if self.role else "citynode"


def _hex_field(entry: Mapping[str, Any], key: str, nbytes: int, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} is missing (need {2 * nbytes} hex digits)")
    text = value.strip().lower().replace(":", "").replace("-", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{where}: {key} {value!r} is not hexadecimal") from None
    if len(raw) != nbytes:
        raise ConfigError(f"{where}: {key} must be {nbytes} bytes ({2 * nbytes} hex digits), got {len(raw)}")
    return text


def device_from_mapping(entry: Mapping[str, Any], where: str = "device") -> DeviceKeys:
    """A DeviceKeys from a bundle or a JSON list entry; ConfigError names ``where`` and the field."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected an object with dev_eui, join_eui, app_key")
    dev_eui = _hex_field(entry, "dev_eui", 8, where)
    tags = entry.get("tags") or {}
    if not isinstance(tags, Mapping):
        raise ConfigError(f"{where}: tags must be an object of strings")
    role = str(entry.get("role") or "")
    merged = {"role": role} if role else {}
    merged.update({str(k): str(v) for k, v in tags.items()})
    return DeviceKeys(
        dev_eui=dev_eui,
        join_eui=_hex_field(entry, "join_eui", 8, where),
        app_key=bytes.fromhex(_hex_field(entry, "app_key", 16, where)),
        name=str(entry.get("name") or dev_eui),
        role=role,
        tags=merged,
    )


def _load_file(path: Path) -> list[DeviceKeys]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    if isinstance(doc, list):
        return [device_from_mapping(e, f"{path} entry {i}") for i, e in enumerate(doc)]
    if isinstance(doc, Mapping) and doc.get("format") == BUNDLE_FORMAT:
        return [device_from_mapping(doc, str(path))]
    raise ConfigError(f"{path}: neither a provisioning bundle ({BUNDLE_FORMAT}) nor a JSON list of devices")


def load_devices(sources: Iterable[str | Path]) -> list[DeviceKeys]:
    """Devices from bundle files, bundle directories and JSON lists; a DevEUI listed twice is an error."""
    out: dict[str, DeviceKeys] = {}
    for src in sources:
        path = Path(src)
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise ConfigError(f"{path}: no *.json provisioning bundles in this directory")
        for f in files:
            for dev in _load_file(f):
                if dev.dev_eui in out:
                    raise ConfigError(f"{f}: dev_eui {dev.dev_eui} is listed twice")
                out[dev.dev_eui] = dev
    return list(out.values())
