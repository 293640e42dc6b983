"""citynode's CPython side: the payload contract, the gateway service, the field tools and the simulators.

The packages say what runs where (docs/architecture.md): :mod:`gateway.contract` (payloads and readings),
:mod:`gateway.service` (the long-running service), :mod:`gateway.field` (technicians' and network
engineers' tools), :mod:`gateway.sim` (simulators and the demo) and :mod:`gateway.cli` (the command).

``__version__`` is citynode's one version: the firmware's ``FIRMWARE_VERSION`` (``firmware/lib/citynode/
app.py``), which is also the package's version in ``pyproject.toml`` (hatch reads it from there).
"""

from __future__ import annotations

import re

from gateway.errors import CitynodeError, ConfigError, DecodeError, EncodeError, SinkError
from gateway.paths import firmware_lib_dir

__all__ = ["CitynodeError", "ConfigError", "DecodeError", "EncodeError", "SinkError", "__version__"]


def _firmware_version() -> str:
    text = (firmware_lib_dir() / "citynode" / "app.py").read_text(encoding="utf-8")
    found = re.search(r'^FIRMWARE_VERSION = "([^"]+)"', text, re.MULTILINE)
    if found is None:  # pragma: no cover - tests/test_version.py keeps the line there
        raise ConfigError("firmware/lib/citynode/app.py: no FIRMWARE_VERSION line")
    return found.group(1)


__version__ = _firmware_version()
