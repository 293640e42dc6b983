"""The ``citynode`` command line.

A command table in the mpremote style: every public module of :mod:`gateway.cli` contributes its
sub-commands through ``register(subparsers)``, and each handler is a plain function
``handler(args) -> int``. Errors are translated once, here: a :class:`CitynodeError` becomes a single
line on stderr and exit status 2; nothing else is caught, so a real bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.errors import CitynodeError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citynode",
        description="citynode: LoRaWAN city sensor nodes, codecs, gateway and field tools",
    )
    parser.add_argument("--version", action="version", version=f"citynode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue  # __main__ and private helpers are not command groups
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CitynodeError as exc:
        print(f"citynode {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"citynode {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
