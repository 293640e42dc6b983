"""`make firmware`: mpy-cross compiles the app, and the compiled tree runs on MicroPython."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gateway.field.firmware_build import build_firmware
from gateway.field.micropython import find_micropython


def test_build_compiles_every_library_module(tmp_path: Path) -> None:
    built = build_firmware(tmp_path / "fw")
    paths = {m.path for m in built}
    assert "main.py" in paths, "main.py stays source: MicroPython runs it by name"
    assert "lib/citynode/codec.mpy" in paths
    assert not [p for p in paths if p.startswith("lib/") and p.endswith(".py")]
    assert all(m.size < m.source_size for m in built if m.path.endswith("codec.mpy"))


def test_compiled_tree_runs_on_micropython(tmp_path: Path) -> None:
    out = tmp_path / "fw"
    build_firmware(out)
    code = ("from citynode import codec\n"
            "print(codec.encode('crowd_count', {'interval': 900, 'wifi_devices': 143, 'ble_devices': 87,"
            " 'battery': 3.72}).hex())\n")
    proc = subprocess.run(
        [find_micropython(), "-X", "heapsize=96k", "-c", code],
        capture_output=True, text=True, timeout=60, env={"MICROPYPATH": str(out / "lib")}, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "8501190384188f18571848"
