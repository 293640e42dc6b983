"""The lorawan-device-profiles tree: layout, TOML that parses, keys ChirpStack's importer reads."""

from __future__ import annotations

import json
import tomllib
import uuid
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.errors import ConfigError
from gateway.field.profiles import load_uplink_vectors, toml_dumps, write_profile_tree

CODEC = "// placeholder codec for tests\nfunction decodeUplink(input) { return {data: {}}; }\n"
SCHEMA = {
    "messages": {
        "device_status": {"fport": 1, "direction": "uplink"},
        "config": {"fport": 2, "direction": "downlink"},
        "air_quality": {"fport": 10, "direction": "uplink"},
    }
}
ROLE_FILES = ["citynode-air-quality.toml", "citynode-bin-fill.toml", "citynode-passenger-count.toml",
              "citynode-crowd-count.toml"]


@pytest.fixture
def codecs(tmp_path: Path) -> Path:
    """A codecs/ directory with a placeholder codec, a tiny schema and three kinds of vector files."""
    codecs = tmp_path / "root" / "codecs"
    (codecs / "chirpstack").mkdir(parents=True)
    (codecs / "vectors").mkdir()
    (codecs / "chirpstack" / "citynode.js").write_text(CODEC)
    (codecs / "schema.json").write_text(json.dumps(SCHEMA))
    (codecs / "vectors" / "air_quality.json").write_text(json.dumps([
        {"name": "air quality, all fields", "input": {"fPort": 10, "bytes": [130, 1, 25, 8, 102]},
         "expected": {"data": {"type": "air_quality", "version": 1, "readings": [{"temperature": 21.5}]}}},
        {"name": "truncated", "input": {"fPort": 10, "bytes": [130]}, "expected": {"errors": ["truncated"]}},
    ]))
    (codecs / "vectors" / "config.json").write_text(json.dumps(
        {"name": "config interval", "input": {"fPort": 2, "bytes": [161, 0, 25, 3, 132]},
         "expected": {"data": {"interval": 900}}}))
    (codecs / "vectors" / "status.json").write_text(json.dumps({"vectors": [
        {"name": "status as hex", "input": {"fPort": 1, "bytes": "8201"},
         "expected": {"data": {"type": "device_status"}}}]}))
    return codecs


def _tree(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def test_tree_has_the_repository_layout(tmp_path: Path, codecs: Path) -> None:
    out = tmp_path / "profiles"
    write_profile_tree(out, codecs_dir=codecs)
    assert _tree(out) == sorted(
        ["vendors/citynode/vendor.toml", "vendors/citynode/profiles/EU868-1_0_4.toml",
         "vendors/citynode/codecs/citynode.js", "vendors/citynode/codecs/test_decode_citynode.json"]
        + [f"vendors/citynode/devices/{f}" for f in ROLE_FILES]
    )
    assert (out / "vendors/citynode/codecs/citynode.js").read_text() == CODEC


def test_vendor_toml(tmp_path: Path, codecs: Path) -> None:
    write_profile_tree(tmp_path, codecs_dir=codecs)
    vendor = tomllib.loads((tmp_path / "vendors/citynode/vendor.toml").read_text())["vendor"]
    assert set(vendor) == {"id", "name", "vendor_id", "ouis", "devices", "metadata"}
    uuid.UUID(vendor["id"])
    assert (vendor["name"], vendor["vendor_id"], vendor["ouis"]) == ("citynode", 0, [])
    assert vendor["devices"] == ROLE_FILES  # file names below devices/, as the importer joins them
    assert all(isinstance(v, str) for v in vendor["metadata"].values())  # HashMap<String, String>


@pytest.mark.parametrize(("file", "role", "fport"), [
    ("citynode-air-quality.toml", "air_quality", "10"),
    ("citynode-bin-fill.toml", "bin_fill", "11"),
    ("citynode-passenger-count.toml", "passenger_count", "12"),
    ("citynode-crowd-count.toml", "crowd_count", "13"),
])
def test_device_tomls(tmp_path: Path, codecs: Path, file: str, role: str, fport: str) -> None:
    write_profile_tree(tmp_path, codecs_dir=codecs, firmware_version="1.2.3")
    device = tomllib.loads((tmp_path / "vendors/citynode/devices" / file).read_text())["device"]
    assert set(device) == {"id", "name", "description", "firmware", "metadata"}
    uuid.UUID(device["id"])
    assert device["firmware"] == [{"version": "1.2.3", "profiles": ["EU868-1_0_4.toml"], "codec": "citynode.js"}]
    assert (device["metadata"]["role"], device["metadata"]["fport"]) == (role, fport)
    assert f"FPort {fport}" in device["description"]


def test_profile_toml(tmp_path: Path, codecs: Path) -> None:
    write_profile_tree(tmp_path, codecs_dir=codecs)
    profile = tomllib.loads((tmp_path / "vendors/citynode/profiles/EU868-1_0_4.toml").read_text())["profile"]
    uuid.UUID(profile.pop("id"))
    assert profile == {
        "vendor_profile_id": 0,
        "region": "EU868",
        "mac_version": "1.0.4",
        "reg_params_revision": "RP002-1.0.3",
        "supports_otaa": True,
        "supports_class_b": False,
        "supports_class_c": False,
        "max_eirp": 16,
        "abp": {"rx1_delay": 0, "rx1_dr_offset": 0, "rx2_dr": 0, "rx2_freq": 0},
        "class_b": {"timeout_secs": 0, "ping_slot_periodicity": 0, "ping_slot_dr": 0, "ping_slot_freq": 0},
        "class_c": {"timeout_secs": 0},
    }


def test_ids_are_stable_so_a_reimport_updates(tmp_path: Path, codecs: Path) -> None:
    write_profile_tree(tmp_path / "a", codecs_dir=codecs)
    write_profile_tree(tmp_path / "b", codecs_dir=codecs, firmware_version="9.9.9")
    for rel in ["vendors/citynode/vendor.toml", "vendors/citynode/profiles/EU868-1_0_4.toml",
                *[f"vendors/citynode/devices/{f}" for f in ROLE_FILES]]:
        a, b = (tomllib.loads((tmp_path / d / rel).read_text()) for d in ("a", "b"))
        assert next(iter(a.values()))["id"] == next(iter(b.values()))["id"], rel
    ids = {tomllib.loads((tmp_path / "a/vendors/citynode/devices" / f).read_text())["device"]["id"] for f in ROLE_FILES}
    assert len(ids) == 4


def test_test_decode_file_holds_the_uplink_vectors_only(tmp_path: Path, codecs: Path) -> None:
    write_profile_tree(tmp_path, codecs_dir=codecs)
    tests = json.loads((tmp_path / "vendors/citynode/codecs/test_decode_citynode.json").read_text())
    assert tests == [
        {"name": "air quality, all fields", "input": {"fPort": 10, "bytes": [130, 1, 25, 8, 102]},
         "expected": {"data": {"type": "air_quality", "version": 1, "readings": [{"temperature": 21.5}]}}},
        {"name": "status as hex", "input": {"fPort": 1, "bytes": [0x82, 0x01]},
         "expected": {"data": {"type": "device_status"}}},
    ]


def test_bad_vector_file_is_named(codecs: Path) -> None:
    (codecs / "vectors" / "broken.json").write_text('[{"name": "x", "input": {"fPort": 10}}]')
    with pytest.raises(ConfigError, match="broken.json item 1"):
        load_uplink_vectors(codecs)


def test_missing_codec_is_a_clear_error(tmp_path: Path, codecs: Path) -> None:
    (codecs / "chirpstack" / "citynode.js").unlink()
    with pytest.raises(ConfigError, match="citynode.js: not found.*make generate"):
        write_profile_tree(tmp_path / "out", codecs_dir=codecs)


@pytest.mark.parametrize("vendor", ["", "a/b", "..", "example-vendor"])
def test_vendor_must_be_a_usable_directory_name(tmp_path: Path, codecs: Path, vendor: str) -> None:
    with pytest.raises(ConfigError, match="--vendor"):
        write_profile_tree(tmp_path, codecs_dir=codecs, vendor=vendor)


def test_toml_writer_escapes_strings() -> None:
    doc = {"t": {"s": 'a "quoted" \\ back\nslash ü', "n": 3, "b": True, "l": ["x", "y"], "e": [],
                 "sub": {"k": "v"}, "arr": [{"a": 1}, {"a": 2}]}}
    assert tomllib.loads(toml_dumps(doc)) == doc


def test_cli_writes_the_tree(tmp_path: Path, codecs: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CITYNODE_ROOT", str(codecs.parent))
    assert main(["provision", "profiles", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "wrote 8 files" in out and "import-device-profiles -d" in out
    assert (tmp_path / "out/vendors/citynode/vendor.toml").is_file()


def test_cli_warns_when_there_are_no_vectors(tmp_path: Path, codecs: Path, monkeypatch, capsys) -> None:
    for f in (codecs / "vectors").iterdir():
        f.unlink()
    monkeypatch.setenv("CITYNODE_ROOT", str(codecs.parent))
    assert main(["provision", "profiles", "--out", str(tmp_path / "out")]) == 0
    assert "warning: no uplink test vectors" in capsys.readouterr().out


def test_cli_needs_out(codecs: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CITYNODE_ROOT", str(codecs.parent))
    assert main(["provision", "profiles"]) == 2
    assert "--out" in capsys.readouterr().err


def test_tree_from_the_checkout_passes_its_own_decode_tests_in_quickjs(tmp_path: Path, monkeypatch) -> None:
    """What the repository's test runner does: every test_decode vector through decodeUplink."""
    import quickjs

    from gateway.paths import codecs_dir

    monkeypatch.delenv("CITYNODE_ROOT", raising=False)
    write_profile_tree(tmp_path)
    codec_dir = tmp_path / "vendors/citynode/codecs"
    assert (codec_dir / "citynode.js").read_text() == (codecs_dir() / "chirpstack" / "citynode.js").read_text()
    tests = json.loads((codec_dir / "test_decode_citynode.json").read_text())
    uplink_files = sorted((codecs_dir() / "vectors").glob("uplink_*.json"))
    expected_count = sum(
        1 for f in uplink_files for v in json.loads(f.read_text()) if "data" in v["expected"]
    )
    assert len(tests) == expected_count > 0
    ctx = quickjs.Context()
    ctx.eval((codec_dir / "citynode.js").read_text())
    for test in tests:
        argument = {"fPort": test["input"]["fPort"], "bytes": test["input"]["bytes"], "variables": {}}
        result = json.loads(ctx.eval(f"JSON.stringify(decodeUplink({json.dumps(argument)}))"))
        assert result == {"data": test["expected"]["data"]}, test["name"]
