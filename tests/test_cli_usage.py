"""Every `citynode` command answers bad input with one line naming itself and exit status 2.

The parser tree is walked from :func:`gateway.cli.build_parser`, so a new command is covered the day it
is added. Only parsing is exercised: no handler runs, nothing touches a board or a network.
"""

from __future__ import annotations

import argparse

import pytest

from gateway.cli import build_parser, main, walk_parsers


def _parsers() -> list[argparse.ArgumentParser]:
    return list(walk_parsers(build_parser()))


def _leaves() -> list[argparse.ArgumentParser]:
    return [p for p in _parsers() if p._subparsers is None]


def _argv(parser: argparse.ArgumentParser) -> list[str]:
    return parser.prog.split()[1:]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    return int(exited.value.code or 0), err.splitlines()


def _assert_one_line(parser: argparse.ArgumentParser, code: int, lines: list[str]) -> None:
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{parser.prog}: error: "), lines
    assert f"'{parser.prog} --help'" in lines[0]
    assert "Traceback" not in lines[0]


def _required(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.required] + [
        a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions[:1]
    ]


LEAVES = _leaves()
IDS = [p.prog for p in LEAVES]


def test_the_tree_has_the_commands_people_use() -> None:
    progs = {p.prog for p in _parsers()}
    for prog in ("citynode flash", "citynode check", "citynode provision", "citynode device run",
                 "citynode gateway export", "citynode ns-sim", "citynode lorawan decode"):
        assert prog in progs


@pytest.mark.parametrize("parser", LEAVES, ids=IDS)
def test_an_unknown_option_is_one_line_of_the_subcommand(parser: argparse.ArgumentParser,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, [*_argv(parser), "--no-such-option"])
    _assert_one_line(parser, code, lines)


@pytest.mark.parametrize("parser", [p for p in LEAVES if _required(p)],
                         ids=[p.prog for p in LEAVES if _required(p)])
def test_a_missing_required_argument_is_one_line_naming_it(parser: argparse.ArgumentParser,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, _argv(parser))
    _assert_one_line(parser, code, lines)
    assert "required" in lines[0]


def _typed_options() -> list[tuple[argparse.ArgumentParser, str]]:
    cases = []
    for parser in LEAVES:
        for action in parser._actions:
            if action.option_strings and (action.type in (int, float) or action.choices):
                cases.append((parser, action.option_strings[-1]))
    return cases


TYPED = _typed_options()


@pytest.mark.parametrize(("parser", "option"), TYPED, ids=[f"{p.prog} {o}" for p, o in TYPED])
def test_a_bad_value_is_one_line_naming_the_option(parser: argparse.ArgumentParser, option: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, [*_argv(parser), option, "not-a-value"])
    _assert_one_line(parser, code, lines)
    assert option in lines[0]


@pytest.mark.parametrize("parser", [p for p in _parsers() if p._subparsers is not None],
                         ids=[p.prog for p in _parsers() if p._subparsers is not None])
def test_a_command_group_without_its_subcommand_is_one_line(parser: argparse.ArgumentParser,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, _argv(parser))
    _assert_one_line(parser, code, lines)


def test_an_unknown_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, ["frobnicate"])
    assert code == 2 and len(lines) == 1 and lines[0].startswith("citynode: error: ")


def test_token_is_not_taken_for_token_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, ["provision", "nodes.csv", "--tenant-id", "x", "--token", "demo-token"])
    assert code == 2 and len(lines) == 1
    assert "unrecognized arguments: --token demo-token" in lines[0]


@pytest.mark.parametrize("parser", _parsers(), ids=[p.prog for p in _parsers()])
def test_no_parser_matches_option_prefixes(parser: argparse.ArgumentParser) -> None:
    assert parser.allow_abbrev is False
