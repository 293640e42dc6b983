"""Sub-commands of the ``citynode`` CLI, one module per command group.

Each module defines ``register(subparsers)`` which adds its parser(s) and sets ``func`` to a handler
``handler(args: argparse.Namespace) -> int``. :mod:`gateway.cli` discovers the modules itself, so a
new command group is a new file here and nothing else.
"""

from __future__ import annotations

__all__: list[str] = []
