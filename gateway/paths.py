"""Where the parts of citynode live, seen from the ``gateway`` package: the one place that finds them.

In a checkout (``make`` installs the gateway editable) the device filesystem ``firmware/``, the payload
contract ``codecs/`` and the board definitions ``boards/`` are directories beside the package. A wheel
carries the same three trees inside the package as ``gateway/_firmware``, ``gateway/_codecs`` and
``gateway/_boards`` (``pyproject.toml``, ``force-include``). ``$CITYNODE_ROOT`` points at another
checkout. Every other module asks here; none builds such a path itself, and none edits ``sys.path``.

The firmware's own modules (LoRaWAN crypto and frames, the config validator) also run on CPython:
:func:`firmware_module` imports them from the device package found here, without touching
``sys.path``, so ``citynode lorawan decode`` and the simulators use exactly the code the nodes run.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from gateway.errors import ConfigError

__all__ = [
    "repo_root",
    "codecs_dir",
    "firmware_dir",
    "firmware_lib_dir",
    "boards_dir",
    "firmware_module",
    "sim_mpy_dir",
]

_PACKAGE = Path(__file__).resolve().parent
_BUNDLED = {"codecs": "_codecs", "firmware": "_firmware", "boards": "_boards"}


def repo_root() -> Path:
    """The checkout root: ``$CITYNODE_ROOT`` if set, else the directory above this package.

    Raises ConfigError when that directory is not a checkout (no ``codecs/``); an installed wheel
    has none, and :func:`codecs_dir` and friends then use the copies inside the package.
    """
    env = os.environ.get("CITYNODE_ROOT")
    root = Path(env) if env else _PACKAGE.parent
    if not (root / "codecs").is_dir():
        raise ConfigError(
            f"CITYNODE_ROOT: {root} is not a citynode checkout (no codecs/ directory); "
            "set CITYNODE_ROOT to the checkout or install with `pip install -e .`"
        )
    return root


def _tree(name: str) -> Path:
    """``<checkout>/<name>``, or the wheel's ``gateway/_<name>`` when there is no checkout."""
    try:
        return repo_root() / name
    except ConfigError:
        bundled = _PACKAGE / _BUNDLED[name]
        if bundled.is_dir() and "CITYNODE_ROOT" not in os.environ:
            return bundled
        raise


def codecs_dir() -> Path:
    """``codecs/``: the payload schema, the test vectors and the generated ChirpStack codec."""
    return _tree("codecs")


def firmware_dir() -> Path:
    """``firmware/``: the device filesystem (``main.py`` and ``lib/citynode``)."""
    return _tree("firmware")


def firmware_lib_dir() -> Path:
    """``firmware/lib``: the directory that holds the device package ``citynode``."""
    return firmware_dir() / "lib"


def boards_dir() -> Path:
    """``boards/``: one TOML definition per supported board."""
    return _tree("boards")


def _register(package: str, package_dir: Path) -> None:
    """Register ``package`` from ``package_dir`` under its own name, once, without touching ``sys.path``."""
    if package in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        package, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    if spec is None or spec.loader is None:  # pragma: no cover - a missing file raises below
        raise ConfigError(f"no package {package} at {package_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[package]
        raise


def firmware_module(name: str) -> ModuleType:
    """Import ``name`` (``"citynode"`` or ``"citynode.lorawan.crypto"``...) from the device package on CPython.

    The package is registered once under its own name from :func:`firmware_lib_dir`, so its modules
    import each other as they do on a node. ``sys.path`` is left alone. Names under ``citynode_sim``
    (the MicroPython-side simulation package, :func:`sim_mpy_dir`) are imported the same way.
    """
    if name.split(".")[0] == "citynode_sim":
        _register("citynode", firmware_lib_dir() / "citynode")
        _register("citynode_sim", sim_mpy_dir() / "citynode_sim")
        return importlib.import_module(name)
    if name != "citynode" and not name.startswith("citynode."):
        raise ValueError(f"not a module of the device package: {name!r}")
    _register("citynode", firmware_lib_dir() / "citynode")  # raises ConfigError outside a checkout or wheel
    return importlib.import_module(name)


def sim_mpy_dir() -> Path:
    """The directory holding the MicroPython package ``citynode_sim`` (the sim board, the virtual radio,
    synthetic crowds): ``gateway/sim/mpy``, inside the gateway package, so a wheel carries it too."""
    return _PACKAGE / "sim" / "mpy"
