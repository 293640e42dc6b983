"""The documentation stays true: the README is a front door, links resolve, and every example parses.

* ``README.md`` is at most 20 KB and names the two commands.
* Every relative link in ``README.md`` and ``docs/`` points to a file that exists, and every ``#anchor``
  to a heading of that file.
* Every ``citynode ...`` line in a shell code block is accepted by the command's own parser (argparse:
  options, choices, required arguments). Placeholders such as ``<tenant uuid>`` and ``$TENANT`` are
  filled with a plain word; usage brackets (``[--via mqtt|grpc]``) are dropped.
* Every ``make TARGET`` the docs name is a target of the Makefile.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    found = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"^#{1,6} (.*)", line)):
            found.add(_anchor(m.group(1)))
    return found


def _code_blocks(page: Path) -> list[str]:
    return re.findall(r"```(?:sh|console|bash)\n(.*?)```", page.read_text(), re.S)


def _commands(page: Path) -> list[str]:
    commands = []
    for block in _code_blocks(page):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            if line.startswith("citynode "):
                commands.append(line)
    return commands


def test_the_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 20 * 1024, f"README.md is {len(readme.encode())} bytes (at most 20 KB)"
    assert "make demo" in readme and "make test" in readme
    for page in PAGES[1:]:
        linked = page.relative_to(ROOT).as_posix()
        assert linked in readme or any(linked in p.read_text() for p in PAGES if p != page), (
            f"{linked} is linked from no page"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert broken == [], f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def _example_argv(command: str) -> list[str]:
    command = command.split(" #", 1)[0].rstrip(" &")
    command = re.sub(r"\s\[[^\]]*\]", "", command)  # usage brackets: optional parts
    command = re.sub(r"<[^>]+>", "WORD", command)  # <tenant uuid>
    command = re.sub(r"\$\{?\w+\}?", "WORD", command)  # $TENANT
    return shlex.split(command)[1:]


EXAMPLES = [(page, command) for page in PAGES for command in _commands(page)]


@pytest.mark.parametrize(
    ("page", "command"), EXAMPLES, ids=[f"{p.relative_to(ROOT)}:{c[:50]}" for p, c in EXAMPLES]
)
def test_every_documented_command_is_accepted_by_its_parser(page: Path, command: str, capsys) -> None:
    parser = build_parser()
    try:
        parser.parse_args(_example_argv(command))
    except SystemExit as exc:
        pytest.fail(f"{page.relative_to(ROOT)}: `{command}` is refused: {capsys.readouterr().err.strip()}"
                    if exc.code else f"`{command}` only printed help")


def test_the_documentation_has_examples_to_check() -> None:
    assert len(EXAMPLES) >= 20


def test_every_make_target_the_docs_name_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = {t for page in PAGES for t in re.findall(r"`make ([a-z][\w-]*)", page.read_text())}
    assert named and named <= targets, f"docs name make targets that do not exist: {sorted(named - targets)}"
