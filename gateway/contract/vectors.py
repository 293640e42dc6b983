"""The shared codec test vectors in ``codecs/vectors/``.

Each file is a JSON list of ``{"name", "description"?, "input": {"fPort", "bytes"}, "expected":
{"data"} | {"errors"}}``, the layout ChirpStack's device-profile repository uses for codec tests.
Files named ``uplink_*.json`` hold uplinks, ``downlink_*.json`` downlinks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from gateway.paths import codecs_dir

__all__ = ["vector_files", "load_vectors"]


def vector_files() -> list[Path]:
    return sorted((codecs_dir() / "vectors").glob("*.json"))


def load_vectors(kind: Literal["uplink", "downlink"]) -> list[dict[str, Any]]:
    """Every vector of ``kind``, each with a ``file`` key naming the file it came from."""
    out = []
    for path in vector_files():
        if path.name.startswith(kind):
            for vector in json.loads(path.read_text(encoding="utf-8")):
                out.append({**vector, "file": path.name})
    return out
