"""``citynode flash``: put the app and a node's config on a board, verify it, run its self-test.

Examples::

    citynode flash --port /dev/ttyUSB0 --board heltec_wifi_lora_32_v3 --device 70B3D57ED0000001
    citynode flash --port /dev/ttyUSB0 --board ttgo_lora32_v21 --device 70B3D57ED0000002 \\
        --firmware ESP32_GENERIC-20241129-v1.24.1.bin --erase
    # a tray of boards, in parallel: pairs of --port/--device, or a CSV of port,dev_eui
    citynode flash --board heltec_wifi_lora_32_v3 --port /dev/ttyUSB0 --device 70B3D57ED0000001 \\
        --port /dev/ttyUSB1 --device 70B3D57ED0000002
    citynode flash --board heltec_wifi_lora_32_v3 --tray tray.csv

Exit status: 0 all boards flashed and self-tests passed, 1 a self-test check failed or a board of a
tray failed, 2 a single board could not be flashed (one line saying why).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import CitynodeError, ConfigError
from gateway.field.firmware_build import build_firmware
from gateway.field.flash import FlashResult, flash_node, normalise_eui

if TYPE_CHECKING:  # rich only when the command runs, not in every CLI process (bench/memory.py)
    from rich.console import Console


__all__ = ["register", "read_tray"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "flash",
        help="copy the app and a node's config bundle to a board, verify it and run its self-test",
        description="Flash one board (--port/--device) or a tray of boards in parallel (repeat --port and "
        "--device in pairs, or --tray CSV with columns port,dev_eui). The node's role comes from its "
        "config bundle (bundles/<deveui>.json) and must be one the board carries (boards/<board>.json). "
        "Exit status: 0 all boards flashed and self-tests passed, 1 a self-test check failed or a board of "
        "a tray failed, 2 a single board could not be flashed or a bad option (one line why).",
    )
    parser.add_argument("--port", action="append", default=[], help="serial port (repeat for a tray)")
    parser.add_argument("--device", action="append", default=[], metavar="DEVEUI",
                        help="DevEUI of the node to flash on the matching --port (repeat for a tray)")
    parser.add_argument("--tray", type=Path, help="CSV file with columns port,dev_eui (one row per board)")
    parser.add_argument("--board", required=True, help="board definition name (boards/<board>.json)")
    parser.add_argument("--bundles", type=Path, default=Path("bundles"),
                        help="directory of provisioning bundles (default: bundles)")
    parser.add_argument("--firmware", type=Path, help="MicroPython image to write first with esptool")
    parser.add_argument("--erase", action="store_true",
                        help="erase first (whole flash with --firmware, else the board's filesystem)")
    parser.add_argument("--no-selftest", action="store_true", help="skip the self-test after copying")
    parser.set_defaults(func=_flash)


def read_tray(path: Path) -> list[tuple[str, str]]:
    """(port, DevEUI) pairs from a tray CSV; a header row ``port,dev_eui`` is optional."""
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except OSError as exc:
        raise ConfigError(f"--tray {path}: cannot read ({exc.strerror})") from exc
    pairs: list[tuple[str, str]] = []
    for number, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and cells[0].lower() == "port":
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise ConfigError(f"--tray {path} line {number}: expected port,dev_eui, got {','.join(cells)!r}")
        try:
            pairs.append((cells[0], normalise_eui(cells[1])))
        except ConfigError as exc:
            raise ConfigError(f"--tray {path} line {number}, field dev_eui: {exc}") from exc
    if not pairs:
        raise ConfigError(f"--tray {path}: no boards listed")
    return pairs


def _jobs(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.tray is not None:
        if args.port or args.device:
            raise ConfigError("--tray: give either --tray or --port/--device pairs, not both")
        jobs = read_tray(args.tray)
    else:
        if not args.port or len(args.port) != len(args.device):
            raise ConfigError(
                f"--port/--device: give them in pairs (got {len(args.port)} ports, {len(args.device)} devices)"
            )
        jobs = list(zip(args.port, args.device, strict=True))
    ports = [p for p, _ in jobs]
    duplicates = sorted({p for p in ports if ports.count(p) > 1})
    if duplicates:
        raise ConfigError(f"--port {duplicates[0]}: listed twice")
    return jobs


def _flash(args: argparse.Namespace) -> int:
    from rich.console import Console

    jobs = _jobs(args)
    console = Console()
    if not console.is_terminal:  # a log or a pipe: whole lines (no wrapping mid-dict), no cut DevEUIs
        console = Console(soft_wrap=True, width=200)
    options = dict(bundles=args.bundles, firmware=args.firmware, erase=args.erase, selftest=not args.no_selftest)
    if len(jobs) == 1:
        port, eui = jobs[0]
        if not console.is_terminal:  # no spinner to update: each step is a line (esptool takes ~20 s)
            result = flash_node(port, args.board, eui, progress=lambda m: console.print(f"{port}: {m}"),
                                **options)
        else:
            with console.status(f"{port}: starting") as status:
                result = flash_node(port, args.board, eui, progress=lambda m: status.update(f"{port}: {m}"),
                                    **options)
        _print_result(console, result)
        return 0 if result.ok else 1
    with tempfile.TemporaryDirectory(prefix="citynode-tray-") as tmp:  # one build for the whole tray
        with console.status("building the app with mpy-cross"):
            build_firmware(Path(tmp) / "app")
        return _flash_tray(console, args.board, jobs, {**options, "app_dir": Path(tmp) / "app"})


def _print_result(console: Console, result: FlashResult) -> None:
    for message in result.messages:
        console.print(f"[yellow]{message}[/yellow]")
    console.print(
        f"{result.port}: {result.dev_eui} role {result.role} board {result.board} firmware {result.version}: "
        f"{len(result.written)} files written ({result.bytes_written} B), {len(result.unchanged)} unchanged"
    )
    if result.selftest is None:
        console.print("self-test skipped")
        return
    for check in result.selftest.checks:
        mark = "[dim]not fitted[/dim]" if check.get("not_fitted") else (
            "[green]ok[/green]" if check.get("ok") else "[red]FAIL[/red]")
        console.print(f"  {mark} {check.get('name')}: {check.get('value', check.get('error', ''))}")
    verdict = "[green]self-test passed[/green]" if result.selftest.ok else "[red]self-test failed[/red]"
    console.print(verdict)


def _flash_tray(console: Console, board: str, jobs: list[tuple[str, str]], options: dict) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    results: dict[str, FlashResult | str] = {}
    lock = threading.Lock()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        tasks = {port: progress.add_task(f"{port} {eui}: waiting", total=None) for port, eui in jobs}

        def one(port: str, eui: str) -> None:
            def step(message: str) -> None:
                progress.update(tasks[port], description=f"{port} {eui}: {message}")

            try:
                result: FlashResult | str = flash_node(port, board, eui, progress=step, **options)
                step("[green]done[/green]" if result.ok else "[red]self-test failed[/red]")  # type: ignore[union-attr]
            except CitynodeError as exc:
                result = str(exc)
                step(f"[red]failed[/red]: {exc}")
            except Exception as exc:  # one broken board must not stop the tray; the summary names it
                result = f"unexpected {type(exc).__name__}: {exc}"
                step(f"[red]failed[/red]: {result}")
            progress.update(tasks[port], total=1, completed=1)
            with lock:
                results[port] = result

        with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
            for port, eui in jobs:
                pool.submit(one, port, eui)

    table = Table(title=f"flash summary ({board})")
    for column in ("port", "DevEUI", "role", "files written", "self-test", "result"):
        table.add_column(column, no_wrap=column in ("port", "DevEUI"), overflow="fold")
    failures = 0
    for port, eui in jobs:
        outcome = results.get(port, "not run")
        if isinstance(outcome, FlashResult):
            test = "skipped" if outcome.selftest is None else (
                "passed" if outcome.selftest.ok else "failed: " + ", ".join(c["name"] for c in outcome.selftest.failed))
            ok = outcome.ok
            table.add_row(port, eui, outcome.role, str(len(outcome.written)), test,
                          "[green]ok[/green]" if ok else "[red]FAIL[/red]")
        else:
            ok = False
            table.add_row(port, eui, "-", "-", "-", f"[red]{outcome}[/red]")
        failures += not ok
    console.print(table)
    console.print(f"{len(jobs) - failures} of {len(jobs)} boards flashed and verified")
    return 1 if failures else 0
