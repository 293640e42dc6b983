"""A device-profile tree in the layout of ChirpStack's ``lorawan-device-profiles`` repository.

``citynode provision profiles --out DIR`` writes::

    DIR/vendors/citynode/vendor.toml
    DIR/vendors/citynode/devices/citynode-<role>.toml      one per role, the role with - for _ (citynode-bin-fill.toml),
                                                           firmware version -> profiles, codec
    DIR/vendors/citynode/profiles/EU868-1_0_4.toml         region, MAC version, regional parameters, OTAA
    DIR/vendors/citynode/codecs/citynode.js                the generated codec (codecs/chirpstack/citynode.js)
    DIR/vendors/citynode/codecs/test_decode_citynode.json  uplink vectors from codecs/vectors/*.json

which ChirpStack imports with ``chirpstack -c /etc/chirpstack import-device-profiles -d DIR``; each role
then appears as a device of vendor "citynode" in ChirpStack's device-profile picker.

The TOML keys follow ChirpStack v4's ``import-device-profiles`` command (``chirpstack/src/cmd/
import_device_profiles.rs``, the ``[vendor]``, ``[device]`` and ``[profile]`` tables with ``id`` UUIDs)
and the repository's own files (e.g. ``vendors/elsys/profiles/EU868-1_0_4.toml``). ChirpStack finds an
imported profile again by device id, region and firmware version, so the UUIDs here are derived with
:func:`uuid.uuid5` from fixed names: re-importing a newer tree updates the profiles instead of adding
copies. Two things to know: the importer sets ``uplink_interval`` to one hour for every profile (the
TOML has no key for it), so ``citynode provision`` (which sets the role's interval) remains the way to
create the tenant's profiles; and older ChirpStack versions (``import-lorawan-device-profiles``, before
the vendor/device tables got UUIDs) expect ``[vendor] id`` to be the LoRa Alliance vendor number.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.errors import ConfigError
from gateway.field.inventory import ROLES
from gateway.field.provision import ROLE_SETTINGS, load_codec_script

__all__ = ["CODEC_FILE", "PROFILE_FILE", "load_uplink_vectors", "profile_tree", "toml_dumps", "write_profile_tree"]

CODEC_FILE = "citynode.js"
PROFILE_FILE = "EU868-1_0_4.toml"
# Namespace for the tree's uuid5 ids; fixed forever so that ids stay stable across releases.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/citynode/citynode/device-profiles")


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


# -- a small TOML writer for the tables above (strings, ints, bools, lists of strings, sub-tables) ----


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # A JSON string with ensure_ascii is a valid TOML basic string (same escapes, \uXXXX included).
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[\n" + "".join(f"    {_toml_value(v)},\n" for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def toml_dumps(doc: Mapping[str, Any]) -> str:
    """Serialise nested tables of scalars; a list of mappings becomes an array of tables (``[[a.b]]``)."""
    out: list[str] = []

    def table(path: str, body: Mapping[str, Any], header: str) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, Mapping) and not _is_table_list(v)}
        if out:
            out.append("")
        out.append(header)
        out.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for key, value in body.items():
            if isinstance(value, Mapping):
                table(f"{path}.{key}", value, f"[{path}.{key}]")
            elif _is_table_list(value):
                for item in value:
                    table(f"{path}.{key}", item, f"[[{path}.{key}]]")

    for key, value in doc.items():
        table(key, value, f"[{key}]")
    return "\n".join(out) + "\n"


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


# -- test vectors ------------------------------------------------------------------------------------


def _uplink_fports(codecs_dir: Path) -> set[int]:
    try:
        schema = json.loads((codecs_dir / "schema.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{codecs_dir / 'schema.json'}: cannot read the payload contract ({exc})") from None
    return {m["fport"] for m in schema["messages"].values() if m.get("direction") == "uplink"}


def load_uplink_vectors(codecs_dir: Path) -> list[dict[str, Any]]:
    """Every uplink vector of ``codecs/vectors/*.json`` in the ``test_decode_*.json`` form.

    A vector file holds one vector ``{name, input: {fPort, bytes}, expected: {data}}``, a list of them,
    or ``{"vectors": [...]}``; ``bytes`` may be a list of integers or a hex string. Downlink vectors
    (FPorts the schema marks as downlink) and vectors expecting ``errors`` are left out: the
    repository's test runner checks ``decodeUplink`` output against ``expected.data``.
    """
    uplink = _uplink_fports(codecs_dir)
    vectors: list[dict[str, Any]] = []
    for path in sorted((codecs_dir / "vectors").glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"test vector file {path}: not valid JSON ({exc})") from None
        items = doc.get("vectors", doc) if isinstance(doc, dict) else doc
        for index, item in enumerate(items if isinstance(items, list) else [items], start=1):
            where = f"test vector file {path.name} item {index}"
            try:
                name, port, raw, data = item["name"], item["input"]["fPort"], item["input"]["bytes"], item["expected"]
            except (KeyError, TypeError):
                raise ConfigError(f"{where}: expected {{name, input: {{fPort, bytes}}, expected}}") from None
            if port not in uplink or "data" not in data:
                continue
            if isinstance(raw, str):
                try:
                    raw = list(bytes.fromhex(raw))
                except ValueError:
                    raise ConfigError(f"{where}: input.bytes is neither a list nor hex") from None
            vectors.append({"name": name, "input": {"fPort": port, "bytes": list(raw)},
                            "expected": {"data": data["data"]}})
    return vectors


# -- the tree ----------------------------------------------------------------------------------------


def profile_tree(
    codec_script: str, vectors: Sequence[Mapping[str, Any]], *, vendor: str = "citynode",
    firmware_version: str = __version__,
) -> dict[str, str]:
    """The tree as ``{relative path: file text}`` (paths below ``vendors/<vendor>/``'s parent)."""
    base = f"vendors/{vendor}"
    device_files = [f"citynode-{role.replace('_', '-')}.toml" for role in ROLES]
    files: dict[str, str] = {}
    files[f"{base}/vendor.toml"] = toml_dumps({
        "vendor": {
            "id": _id(vendor),
            "name": vendor,
            "vendor_id": 0,  # LoRa Alliance vendor number: citynode has none
            "ouis": [],
            "devices": device_files,
            "metadata": {"homepage": "https://github.com/citynode/citynode"},
        }
    })
    for role, file in zip(ROLES, device_files, strict=True):
        s = ROLE_SETTINGS[role]
        files[f"{base}/devices/{file}"] = toml_dumps({
            "device": {
                "id": _id(vendor, role),
                "name": f"citynode {role.replace('_', ' ')}",
                "description": f"{s.description}. Uplinks on FPort {s.fport} every {s.uplink_interval_s} s, "
                               "config downlinks on FPort 2.",
                "firmware": [{"version": firmware_version, "profiles": [PROFILE_FILE], "codec": CODEC_FILE}],
                "metadata": {"role": role, "fport": str(s.fport), "uplink_interval_s": str(s.uplink_interval_s)},
            }
        })
    files[f"{base}/profiles/{PROFILE_FILE}"] = toml_dumps({
        "profile": {
            "id": _id(vendor, "profile", PROFILE_FILE),
            "vendor_profile_id": 0,
            "region": "EU868",
            "mac_version": "1.0.4",
            "reg_params_revision": "RP002-1.0.3",
            "supports_otaa": True,
            "supports_class_b": False,
            "supports_class_c": False,
            "max_eirp": 16,  # RP002-1.0.3 section 2.4.3: EU863-870 default MaxEIRP 16 dBm
            # ABP and class B/C parameters are unused (OTAA, class A) but written as the repository does.
            "abp": {"rx1_delay": 0, "rx1_dr_offset": 0, "rx2_dr": 0, "rx2_freq": 0},
            "class_b": {"timeout_secs": 0, "ping_slot_periodicity": 0, "ping_slot_dr": 0, "ping_slot_freq": 0},
            "class_c": {"timeout_secs": 0},
        }
    })
    files[f"{base}/codecs/{CODEC_FILE}"] = codec_script
    test_name = CODEC_FILE.removesuffix(".js")
    files[f"{base}/codecs/test_decode_{test_name}.json"] = json.dumps(list(vectors), indent=2) + "\n"
    return files


def write_profile_tree(
    out: Path, *, vendor: str = "citynode", codecs_dir: Path | None = None,
    firmware_version: str = __version__,
) -> list[Path]:
    """Write the tree under ``out`` (created if needed; our files are overwritten) and return the paths."""
    if codecs_dir is None:
        from gateway.paths import codecs_dir as _codecs_dir

        codecs_dir = _codecs_dir()
    if not vendor or any(c in vendor for c in "/\\") or vendor in (".", "..", "example-vendor"):
        raise ConfigError(f"--vendor: {vendor!r} cannot be a directory name of the tree")
    tree = profile_tree(load_codec_script(codecs_dir), load_uplink_vectors(codecs_dir), vendor=vendor,
                        firmware_version=firmware_version)
    written = []
    try:
        for rel, text in tree.items():
            path = Path(out) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the tree ({exc.strerror}: {exc.filename})") from None
    return written
