"""docs/platforms.md carries the side-by-side tables the sinks really use (generated, checked here)."""

from __future__ import annotations

from gateway.paths import repo_root
from gateway.service.sinks.platform_tables import BEGIN, END, tables
from gateway.service.sinks.sensorthings import _UNITS


def test_the_generated_tables_in_docs_are_current() -> None:
    text = (repo_root() / "docs" / "platforms.md").read_text(encoding="utf-8")
    block = text[text.index(BEGIN):text.index(END) + len(END)]
    assert block == tables(), "docs/platforms.md is stale: run `python -m gateway.service.sinks.platform_tables`"


def test_every_field_with_a_unit_has_a_unit_of_measurement_definition() -> None:
    table = tables()
    for code in ("CEL", "A97", "GQ", "VLT", "MMT", "SEC", "OHM", "P1", "DD"):
        name, symbol, definition = _UNITS[code]
        assert f"{name}, `{symbol}`, {definition}" in table, code
