"""An installed wheel works outside a checkout: gateway.paths finds the copies it carries.

The wheel is built with pip from this checkout and unpacked into a temporary directory that stands in
for site-packages; the commands run from ``/`` so that no checkout is near.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, timeout=300)
    (wheel,) = out.glob("citynode-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    return site


def citynode(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CITYNODE_ROOT"}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          cwd="/", env=env, timeout=60)


def test_the_wheel_carries_the_device_filesystem_the_contract_and_the_boards(site: Path) -> None:
    for part in ("gateway/_firmware/main.py", "gateway/_firmware/lib/citynode/app.py",
                 "gateway/_codecs/schema.json", "gateway/_boards/sim.json"):
        assert (site / part).is_file(), part


def test_an_installed_wheel_decodes_payloads_and_frames_and_knows_its_version(site: Path) -> None:
    version = citynode(site, "--version")
    assert version.returncode == 0, version.stderr
    import gateway

    assert version.stdout.strip() == f"citynode {gateway.__version__}"
    payload = citynode(site, "codec", "decode", "--fport", "11", "8601190352183e1855f4183d")
    assert payload.returncode == 0, payload.stderr
    assert '"fill_level": 62' in payload.stdout
    frame = citynode(site, "lorawan", "decode", "40F17DBE4900020001954378762B11FF0D")
    assert frame.returncode == 0, frame.stderr
    assert "UnconfirmedDataUp" in frame.stdout


def test_an_installed_wheel_writes_the_device_profile_tree(site: Path, tmp_path: Path) -> None:
    proc = citynode(site, "provision", "profiles", "--out", str(tmp_path / "profiles"))
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "profiles").rglob("*.toml"))
