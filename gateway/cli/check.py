"""``citynode check``: run a node's self-test over USB and show live sensor values and pass/fail.

Example::

    citynode check --port /dev/ttyUSB0

Exit status: 0 every check passed, 1 a check failed, 2 the board could not be reached (one line why).
The node's program is interrupted for the test and started again afterwards (soft reset).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich and the field tools only when the command runs, not in every CLI process
    from rich.console import Console

    from gateway.field.flash import SelfTest

__all__ = ["register", "render"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "check",
        help="run a node's self-test over its serial port and print a report",
        description="Interrupt the node's program over USB, run its self-test (every sensor of its role, "
        "the radio, the config) and show live values with pass/fail, then soft-reset it so it runs again. "
        "A sensor field the board's sensor cannot measure (PM1.0 on an SDS011) shows as 'not fitted', "
        "not as a failure. Exit status: 0 every check passed, 1 a check failed, 2 the board could not be "
        "reached or read (one line why).",
    )
    parser.add_argument("--port", required=True, help="serial port of the node, e.g. /dev/ttyUSB0")
    parser.add_argument("--json", action="store_true", help="print the self-test report as JSON")
    parser.set_defaults(func=_check)


def _is_terminal() -> bool:
    from rich.console import Console

    return Console().is_terminal


def _value(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + "; ".join(_value(v) for v in value) + "]"
    return str(value)


def render(console: Console, port: str, report: SelfTest) -> None:
    """The self-test as a table: one row per check with its live value or error."""
    from rich.table import Table

    table = Table(title=f"{port}: {report.dev_eui or '?'} role {report.role or '?'} board {report.board or '?'} "
                        f"firmware {report.version}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("value / error", overflow="fold")
    for check in report.checks:
        ok = bool(check.get("ok"))
        detail = _value(check["value"]) if "value" in check else str(check.get("error", ""))
        result = "[dim]not fitted[/dim]" if check.get("not_fitted") else (
            "[green]pass[/green]" if ok else "[red]FAIL[/red]")
        table.add_row(str(check.get("name")), result, detail)
    console.print(table)
    failed = report.failed
    if failed:
        console.print(f"[red]{len(failed)} of {len(report.checks)} checks failed:[/red] "
                      + ", ".join(str(c.get("name")) for c in failed))
    else:
        console.print(f"[green]all {len(report.checks)} checks passed[/green]")


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gateway.field.flash import open_device, run_selftest

    console = Console(soft_wrap=not _is_terminal())  # a log or a pipe: whole lines, never cut
    with open_device(args.port) as transport:
        report = run_selftest(transport)
        transport.exit_raw_repl()
        transport.serial.write(b"\x04")  # soft reset: main.py starts the node again
    if args.json:
        print(json.dumps({"version": report.version, "dev_eui": report.dev_eui, "role": report.role,
                          "board": report.board, "checks": list(report.checks)}))
    else:
        render(console, args.port, report)
    return 0 if report.ok else 1
