"""`--help` is the manual a technician reads first: every command says what it does, every default
is shown, the environment variables and exit codes are named."""

from __future__ import annotations

import argparse

import pytest

from gateway.cli import build_parser, walk_parsers

PARSERS = list(walk_parsers(build_parser()))
IDS = [p.prog for p in PARSERS]


def _by_prog(prog: str) -> argparse.ArgumentParser:
    return next(p for p in PARSERS if p.prog == prog)


def _defaults(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.default not in (None, argparse.SUPPRESS, [])
            and not isinstance(a.default, bool)]


@pytest.mark.parametrize("parser", PARSERS, ids=IDS)
def test_every_command_has_a_description(parser: argparse.ArgumentParser) -> None:
    assert parser.description and len(parser.description) > 20, parser.prog


@pytest.mark.parametrize("parser", PARSERS, ids=IDS)
def test_every_option_with_a_default_shows_it(parser: argparse.ArgumentParser) -> None:
    formatter = parser._get_formatter()
    for action in _defaults(parser):
        assert action.help, f"{parser.prog} {action.option_strings[-1]} has no help"
        shown = formatter._expand_help(action)
        assert "default" in shown.lower(), f"{parser.prog} {action.option_strings[-1]}: {shown}"
        written = {str(action.default)} | ({f"{action.default:g}"} if isinstance(action.default, float) else set())
        assert any(w in shown for w in written) or "$" in shown, \
            f"{parser.prog} {action.option_strings[-1]} does not show {action.default!r}: {shown}"


@pytest.mark.parametrize(("prog", "option", "default"), [
    ("citynode gateway export", "--format", "jsonl"),
    ("citynode gateway deadletters", "--limit", "50"),
    ("citynode ns-sim", "--encoding", "json"),
])
def test_the_defaults_people_asked_for(prog: str, option: str, default: str) -> None:
    text = " ".join(_by_prog(prog).format_help().split())
    assert f"(default: {default})" in text or f"(default {default})" in text


@pytest.mark.parametrize(("prog", "names"), [
    ("citynode", ["CITYNODE_ROOT", "CITYNODE_MICROPYTHON"]),
    ("citynode provision", ["CITYNODE_CHIRPSTACK_TOKEN", "CITYNODE_CHIRPSTACK_TOKEN_FILE",
                            "CITYNODE_CHIRPSTACK_SERVER", "CITYNODE_CHIRPSTACK_TENANT_ID",
                            "CITYNODE_FUOTA_UPDATE_KEY"]),
    ("citynode chirpstack-sim", ["CITYNODE_CHIRPSTACK_TOKEN"]),
    ("citynode lorawan decode", ["CITYNODE_APPKEY", "CITYNODE_NWKSKEY", "CITYNODE_APPSKEY"]),
    ("citynode device run", ["CITYNODE_MICROPYTHON"]),
])
def test_environment_variables_are_named(prog: str, names: list[str]) -> None:
    text = _by_prog(prog).format_help()
    for name in names:
        assert name in text, f"{prog} --help does not name {name}"


@pytest.mark.parametrize("prog", ["citynode flash", "citynode check", "citynode lorawan decode",
                                  "citynode demo", "citynode device run"])
def test_exit_codes_are_given(prog: str) -> None:
    text = " ".join(_by_prog(prog).format_help().split())
    assert "Exit status: 0" in text
    assert " 2 " in text


def test_demo_codec_help_is_a_whole_sentence() -> None:
    action = next(a for a in _by_prog("citynode demo")._actions if "--codec" in a.option_strings)
    assert action.help.rstrip().endswith((".", ")"))
    assert "decode" in action.help and "gateway" in action.help


def test_values_format_is_documented_in_device_run_help() -> None:
    text = " ".join(_by_prog("citynode device run").format_help().split())
    assert "hal/simdev.py" not in text
    assert '"cycles"' in text or "cycles" in text
