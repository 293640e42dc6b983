"""Where the parts of a citynode checkout live, seen from the installed ``gateway`` package.

The gateway is installed editable (``pip install -e .``) by ``make``; the firmware tree, the codec
schema and the board definitions are data beside it in the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.errors import ConfigError

__all__ = ["repo_root", "codecs_dir", "firmware_dir", "boards_dir", "sim_mpy_dir"]


def repo_root() -> Path:
    """The checkout root: ``$CITYNODE_ROOT`` if set, else the directory above this package."""
    env = os.environ.get("CITYNODE_ROOT")
    root = Path(env) if env else Path(__file__).resolve().parent.parent
    if not (root / "codecs").is_dir():
        raise ConfigError(
            f"CITYNODE_ROOT: {root} is not a citynode checkout (no codecs/ directory); "
            "set CITYNODE_ROOT to the checkout or install with `pip install -e .`"
        )
    return root


def codecs_dir() -> Path:
    return repo_root() / "codecs"


def firmware_dir() -> Path:
    return repo_root() / "firmware"


def boards_dir() -> Path:
    return repo_root() / "boards"


def sim_mpy_dir() -> Path:
    """The directory holding the MicroPython package ``citynode_sim`` (the sim board, the virtual radio,
    synthetic crowds): ``gateway/sim/mpy``, inside the gateway package, so a wheel carries it too."""
    return Path(__file__).resolve().parent / "sim" / "mpy"
