"""``citynode firmware build``: compile the node app with mpy-cross into a deployable tree.

Example::

    citynode firmware build --out build/firmware
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.field.firmware_build import build_firmware

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("firmware", help="build the node firmware tree",
                            description="Build what is put on a node: the firmware tree compiled to .mpy.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="compile firmware/ with mpy-cross into a deployable tree",
                               description="Compile firmware/ with mpy-cross into a tree that `citynode flash` "
                               "copies to a board; prints each file's size. Exit status: 0 built, 2 mpy-cross "
                               "missing or a module does not compile (one line why).")
    build.add_argument("--out", type=Path, default=Path("build/firmware"),
                       help="output directory (default %(default)s)")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    built = build_firmware(args.out)
    total = sum(m.size for m in built)
    for module in built:
        print(f"{module.size:7d} B  {module.path}  (source {module.source_size} B)")
    print(f"{total:7d} B  total, {len(built)} files in {args.out}")
    return 0
