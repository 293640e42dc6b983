"""The package check and install in the 64 KB budget, on the 32-bit build with citynode frozen in
(build/micropython-unix32, `make firmware-unix`): the boot step that main.py's slot selection runs before
the app is built (citynode.fuota.install.pending) checks a handed-over block (Ed25519, SHA-512, SHA-256
of every file) and installs it, for the package sizes bench/fuota_node.py measures (15, 50 and 101 KB of
new modules). The real path: firmware/main.py on a filesystem holding what the running app left after a
complete session (the block file, fuota.json with its hand-over entry, config.json with fuota_pub);
the new app's citynode.run then runs from the slot. The smallest heaps and the times are in
bench/RESULTS.md (section fuota_node)."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.field import fuota
from gateway.paths import repo_root

FROZEN = repo_root() / "build" / "micropython-unix32" / "micropython"
MAIN = repo_root() / "firmware" / "main.py"
BUDGET = "64k"


def new_app(d: Path, size: int, seed: int) -> Path:
    """A new app tree: a citynode package whose run.main says it runs, and size // 5000 modules of
    incompressible bytes (as bench/fuota_node.py)."""
    rng = random.Random(seed)
    (d / "citynode").mkdir(parents=True)
    (d / "VERSION").write_text("0.2.0")
    (d / "citynode" / "__init__.py").write_text("")
    (d / "citynode" / "run.py").write_text("def main():\n    print('app 0.2.0 running')\n")
    for i in range(size // 5000):
        (d / "citynode" / f"m{i}.mpy").write_bytes(rng.randbytes(5000 - 40))
    return d


def handed_over(fs: Path, package: bytes, pub: bytes) -> None:
    """What the running app leaves when the block is complete (citynode.fuota.node.FuotaNode.finish); the
    factory app is frozen ("tree": null), so the package carries the whole new tree (a full package)."""
    fs.mkdir()
    (fs / "config.json").write_text(json.dumps({"fuota_pub": pub.hex()}))
    (fs / "fuota.bin").write_bytes(package)
    (fs / "fuota.json").write_text(json.dumps({"session_cnt": 0, "done": [0, 212], "install": {
        "seq": 1, "length": len(package), "running": "0.1.0", "tree": None}}))


def boot(fs: Path, heapsize: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MICROPYPATH=".frozen")
    return subprocess.run([str(FROZEN), "-X", f"heapsize={heapsize}", str(MAIN)], cwd=fs, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("size", [16_000, 50_000, 100_000])
def test_the_boot_step_checks_and_installs_the_update_in_64k_on_the_32_bit_frozen_build(tmp_path, size) -> None:
    if not FROZEN.exists():
        pytest.skip(f"{FROZEN} is missing: run `make firmware-unix`")
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "VERSION").write_text("0.1.0")
    pair = fuota.generate_keypair()
    package = fuota.build_package(tmp_path / "v1", new_app(tmp_path / "v2", size, size),
                                  load_pem_private_key(pair.private_pem, None), full=True)
    fs = tmp_path / "fs"
    handed_over(fs, package, pair.public_raw)
    proc = boot(fs, BUDGET)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines == ["update 0.2.0 installed in slot a", "app 0.2.0 running"]
    marker = json.loads((fs / "slots.json").read_text())
    assert (marker["active"], marker["update"], marker["trial"], marker["boots"]) == ("a", "installed", True, 1)
    assert (fs / "app_a" / "citynode" / "m0.mpy").read_bytes() == (tmp_path / "v2" / "citynode" / "m0.mpy").read_bytes()
    assert not (fs / "fuota.bin").exists()
    assert "install" not in json.loads((fs / "fuota.json").read_text())
