"""docs/reference/cli.md is generated from the parsers and is never stale."""

from __future__ import annotations

from gateway.cli import build_parser, walk_parsers
from gateway.cli._reference import reference_path, render


def test_the_cli_reference_is_up_to_date() -> None:
    assert reference_path().read_text(encoding="utf-8") == render(), (
        "docs/reference/cli.md is stale: run `python -m gateway.cli._reference --write`"
    )


def test_the_reference_covers_every_command() -> None:
    text = render()
    for parser in walk_parsers(build_parser()):
        assert f"`{parser.prog}`" in text
