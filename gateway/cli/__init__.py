"""The ``citynode`` command line.

A command table in the mpremote style: every public module of :mod:`gateway.cli` contributes its
sub-commands through ``register(subparsers)``, and each handler is a plain function
``handler(args) -> int``. Errors are translated once, here: a :class:`CitynodeError` becomes a single
line on stderr and exit status 2; nothing else is caught, so a real bug still shows its traceback.

Every parser of the tree is a :class:`CommandParser`: no prefix matching of long options
(``--token`` is never taken for ``--token-file``), a usage error is one line naming the sub-command it
belongs to (``citynode flash: error: ... (see 'citynode flash --help')``) and exit status 2, and every
option's default is shown in ``--help``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from gateway import __version__
from gateway.errors import CitynodeError

__all__ = ["CommandParser", "DefaultsHelpFormatter", "build_parser", "main", "walk_parsers"]


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Shows an option's default in its help unless the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or default == []
            or action.option_strings == []
            or "default" in text
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line and whose sub-parsers are alike.

    ``add_subparsers`` builds sub-parsers of the parser's own class, so the whole tree behaves the same.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--token x` must never become `--token-file x`
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if self._subparsers is None:
            parsed.prog = self.prog  # main() names the sub-command in a handler's error line too
        if extras and self._subparsers is None and " " in self.prog:
            # A leaf sub-command reports its own unknown options (argparse would hand them up to the
            # top-level parser, which prints the top-level usage).
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def walk_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every sub-parser below it, depth first, each once."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for child in action.choices.values():
                if id(child) not in seen:
                    seen.add(id(child))
                    yield from walk_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="citynode",
        description="citynode: LoRaWAN city sensor nodes, codecs, gateway and field tools. "
        "`citynode COMMAND --help` describes each command.",
        epilog="Environment: CITYNODE_ROOT points at a citynode checkout (codecs/, boards/, firmware/) "
        "other than the installed one; CITYNODE_MICROPYTHON is the MicroPython unix port to run (default: "
        "`micropython` beside this Python, then on the PATH). Usage errors exit with status 2.",
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
    prog = getattr(args, "prog", None) or f"citynode {args.command}"
    try:
        return int(args.func(args) or 0)
    except CitynodeError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        if exc.filename is None:
            raise  # not a file the user named: a bug, show it
        print(f"{prog}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
