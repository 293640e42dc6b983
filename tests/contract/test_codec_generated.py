"""Generated codec files are current, say that they are generated, and fit where they run."""

from __future__ import annotations

import subprocess
import sys

from gateway.contract import codegen
from gateway.paths import codecs_dir, firmware_dir

TABLES = firmware_dir() / "lib" / "citynode" / "codec_tables.py"
CHIRPSTACK_JS = codecs_dir() / "chirpstack" / "citynode.js"


def test_generated_files_are_not_stale() -> None:
    stale = codegen.stale_files()
    assert not stale, f"stale generated files {stale}: run `make generate` and commit the result"


def test_generated_files_say_so_in_their_first_line() -> None:
    for path in (TABLES, CHIRPSTACK_JS):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert "GENERATED" in first and "codecs/schema.json" in first, path


def test_codecs_directory_is_data_only() -> None:
    assert not (codecs_dir() / "__init__.py").exists()
    assert not list(codecs_dir().rglob("*.py")), "codecs/ must hold data only (never a Python package)"


def test_chirpstack_codec_needs_no_modules() -> None:
    text = CHIRPSTACK_JS.read_text(encoding="utf-8")
    for forbidden in ("require(", "import ", "export "):
        assert forbidden not in text, f"ChirpStack runs codecs without modules: found {forbidden!r}"
    for entry in ("function decodeUplink(", "function encodeDownlink(", "function decodeDownlink("):
        assert entry in text


def test_generator_check_flags_an_edited_file(tmp_path, monkeypatch) -> None:
    root = tmp_path / "checkout"
    for part in ("codecs", "firmware/lib/citynode"):
        (root / part).mkdir(parents=True)
    (root / "codecs" / "schema.json").write_text((codecs_dir() / "schema.json").read_text())
    monkeypatch.setenv("CITYNODE_ROOT", str(root))
    written = codegen.write_generated()
    assert {p.name for p in written} == {"codec_tables.py", "citynode.js"}
    assert codegen.stale_files() == []
    tables = root / "firmware" / "lib" / "citynode" / "codec_tables.py"
    tables.write_text(tables.read_text() + "# hand edit\n")
    assert codegen.stale_files() == [tables]


def test_firmware_codec_imports_and_agrees_under_cpython() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from citynode import codec\n"
        "print(codec.encode('crowd_count', {'interval': 900, 'wifi_devices': 143, 'ble_devices': 87,"
        " 'battery': 3.72}).hex())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(firmware_dir() / "lib")], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "8501190384188f18571848"
