"""citynode has one version: the firmware's ``FIRMWARE_VERSION`` line, read by the gateway and by hatch."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import gateway
from gateway.paths import firmware_module

ROOT = Path(__file__).resolve().parent.parent


def test_the_gateway_reports_the_firmware_version() -> None:
    assert gateway.__version__ == firmware_module("citynode.app").FIRMWARE_VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+", gateway.__version__)


def test_pyproject_takes_the_version_from_the_firmware_line() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    source = project["tool"]["hatch"]["version"]
    assert (ROOT / source["path"]).resolve() == (ROOT / "firmware/lib/citynode/app.py").resolve()
    text = (ROOT / source["path"]).read_text()
    assert re.search(source["pattern"], text, re.MULTILINE).group("version") == gateway.__version__


def test_the_installed_package_and_the_cli_say_the_same_version() -> None:
    assert importlib.metadata.version("citynode") == gateway.__version__
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == f"citynode {gateway.__version__}"
