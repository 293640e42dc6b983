"""``citynode provision``: register an inventory of nodes in ChirpStack v4 and write their config bundles.

``citynode provision INVENTORY --server HOST:PORT --tenant-id UUID [--application NAME] [--dry-run]
[--bundles DIR] [--update-key PREFIX.pub] [--show-keys]`` makes ChirpStack match the inventory (see :mod:`gateway.field.provision`).

``citynode provision profiles --out DIR`` writes the device-profile tree for ChirpStack's
``import-device-profiles`` command (see :mod:`gateway.field.profiles`).

The API token comes from ``$CITYNODE_CHIRPSTACK_TOKEN``, ``--token-file`` or
``$CITYNODE_CHIRPSTACK_TOKEN_FILE``; it is deliberately not a command-line option (``ps`` shows those).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError

if TYPE_CHECKING:  # rich only when the command runs, not in every CLI process (bench/memory.py)
    from rich.console import Console


__all__ = ["register"]

_ACTION_STYLE = {"create": "green", "update": "yellow", "unchanged": "dim", "conflict": "bold red"}
_KINDS = ("application", "device-profile", "device", "keys", "bundle")
_PROGRESS_MIN_STEPS = 20  # below this a run takes a blink and a bar is noise


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "provision",
        help="create/update the application, device profiles, devices and OTAA keys in ChirpStack from an inventory",
        description=(
            "Make ChirpStack v4 match a node inventory (CSV or YAML): the application, one device profile per "
            "role (with the FUOTA packages TS003/TS004/TS005 v2), devices with tags, OTAA keys and the "
            "GenAppKey FUOTA's multicast keys derive from; write one config bundle per node, with the update "
            "key of --update-key. Idempotent: rerun it at any "
            "time. `citynode provision profiles --out DIR` instead writes a lorawan-device-profiles tree. "
            "The API token comes from $CITYNODE_CHIRPSTACK_TOKEN, --token-file or "
            "$CITYNODE_CHIRPSTACK_TOKEN_FILE; it is deliberately not an option (`ps` shows options). "
            "Exit status: 0 ChirpStack matches the inventory, 2 bad inventory, option or a step failed "
            "(one line, or the failed steps listed)."
        ),
    )
    parser.add_argument("inventory", metavar="INVENTORY|profiles",
                        help="inventory file (.csv, .yaml), or the word `profiles` for the profile tree")
    parser.add_argument("--server", default=os.environ.get("CITYNODE_CHIRPSTACK_SERVER", "localhost:8080"),
                        help="ChirpStack gRPC API host:port (default $CITYNODE_CHIRPSTACK_SERVER or localhost:8080)")
    parser.add_argument("--tenant-id", default=os.environ.get("CITYNODE_CHIRPSTACK_TENANT_ID"),
                        help="tenant UUID (default $CITYNODE_CHIRPSTACK_TENANT_ID)")
    parser.add_argument("--application", default="citynode", help="application name (default citynode)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--bundles", type=Path, default=Path("bundles"),
                        help="directory for the node config bundles (default ./bundles; created 0700)")
    parser.add_argument("--update-key", type=Path, metavar="PREFIX.pub",
                        default=os.environ.get("CITYNODE_FUOTA_UPDATE_KEY") or None,
                        help="public key file of `citynode fuota keygen`: every bundle gets it as fuota_pub, the "
                             "key nodes check update packages with (default $CITYNODE_FUOTA_UPDATE_KEY; without "
                             "either a bundle keeps the fuota_pub it has)")
    parser.add_argument("--show-keys", action="store_true",
                        help="print the OTAA AppKeys and the GenAppKeys at the end")
    parser.add_argument("--token-file", type=Path, help="file holding the ChirpStack API token")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (ChirpStack behind a TLS proxy)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per API call (default 10)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list unchanged objects one by one")
    parser.add_argument("--out", type=Path, help="(profiles) output directory of the device-profile tree")
    parser.add_argument("--vendor", default="citynode", help="(profiles) vendor id (default citynode)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.inventory == "profiles":
        return _run_profiles(args)
    return _run_provision(args)


def _run_profiles(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gateway.field.profiles import write_profile_tree

    if args.out is None:
        raise ConfigError("--out: give the directory for the device-profile tree (citynode provision profiles --out DIR)")
    written = write_profile_tree(args.out, vendor=args.vendor)
    console = Console(highlight=False, soft_wrap=True)  # soft wrap: lines stay whole for grep and logs
    console.print(f"wrote {len(written)} files under {args.out}")
    tests = next(p for p in written if p.name.startswith("test_decode_"))
    if not json.loads(tests.read_text(encoding="utf-8")):
        console.print(f"warning: no uplink test vectors found in codecs/vectors; {tests.name} is empty")
    console.print(f"import them with: chirpstack -c /etc/chirpstack import-device-profiles -d {args.out}")
    return 0


def _run_provision(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gateway.field.chirpstack_client import ChirpStackClient, resolve_token
    from gateway.field.fuota import load_public_key
    from gateway.field.inventory import load_inventory
    from gateway.field.provision import ProvisionError, load_codec_script, make_plan

    if not args.tenant_id:
        raise ConfigError("--tenant-id: give the ChirpStack tenant's UUID (or set CITYNODE_CHIRPSTACK_TENANT_ID)")
    fuota_pub = None
    if args.update_key is not None:
        fuota_pub = load_public_key(Path(args.update_key)).hex()
    nodes = load_inventory(args.inventory, known_boards=_known_boards())
    codec_script = load_codec_script()
    token = resolve_token(token_file=args.token_file)
    console = Console(highlight=False, soft_wrap=True)  # soft wrap: lines stay whole for grep and logs
    if not console.is_terminal:
        console.width = 120  # logs and pipes: wide enough that EUIs and names do not wrap
    with ChirpStackClient(args.server, token, tls=args.tls, timeout=args.timeout) as client:
        plan = make_plan(client, nodes, tenant_id=args.tenant_id, application_name=args.application,
                         codec_script=codec_script, bundles_dir=args.bundles, fuota_pub=fuota_pub)
        _print_plan(console, plan, verbose=args.verbose)
        if args.dry_run:
            console.print("dry run: nothing was changed")
            return 0
        if not plan.pending:
            console.print(
                f"nothing to do: ChirpStack and {args.bundles} already match the inventory "
                f"({len(nodes)} nodes unchanged)"
            )
            if plan.conflicts:
                raise ProvisionError(f"{len(plan.conflicts)} device(s) conflict; see the table above")
            if args.show_keys:
                _print_keys(console, plan, {n.dev_eui for n in nodes})
            return 0
        report = _apply_with_progress(console, client, plan)
    _print_report(console, report)
    if args.show_keys:
        failed = {o.step.key for o in report.outcomes if o.status != "done"}
        _print_keys(console, plan, {n.dev_eui for n in nodes} - failed)
    if not report.ok:
        bad = len(report.by_status("failed")) + len(report.by_status("skipped"))
        raise ProvisionError(
            f"{bad} of {len(report.outcomes)} steps did not complete (listed above); fix the cause and run the "
            "same command again: finished steps show as unchanged and the rest are completed"
        )
    return 0


def _known_boards() -> dict[str, list[str]] | None:
    """Board name -> the roles it carries, from boards/*.json (so that a node's role is checked against
    its board), or None (no check) when the checkout has no boards yet."""
    try:
        from gateway.paths import boards_dir

        files = sorted(boards_dir().glob("*.json"))
    except ConfigError:
        return None
    boards: dict[str, list[str]] = {}
    for path in files:
        try:
            roles = json.loads(path.read_text(encoding="utf-8")).get("roles") or []
        except (OSError, ValueError, AttributeError):
            roles = []
        boards[path.stem] = [str(r) for r in roles]
    return boards or None


def _print_plan(console: Console, plan: Any, *, verbose: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"plan for tenant {plan.tenant_id}, application {plan.application_name!r}",
                  title_justify="left")
    table.add_column("object")
    table.add_column("name", overflow="fold")
    table.add_column("action")
    table.add_column("changes", overflow="fold")
    hidden: Counter[str] = Counter()
    for step in plan.steps:
        if step.action == "unchanged" and not verbose:
            hidden[step.kind] += 1
            continue
        style = _ACTION_STYLE[step.action]
        table.add_row(step.kind, escape(step.label), f"[{style}]{step.action}[/]", escape(", ".join(step.changes)))
    for kind, count in sorted(hidden.items(), key=lambda item: _KINDS.index(item[0])):
        table.add_row(kind, f"({count} {'object' if count == 1 else 'objects'})", "[dim]unchanged[/]", "")
    console.print(table)
    counts = plan.counts()
    console.print(
        f"plan: {counts['create']} to create, {counts['update']} to update, {counts['unchanged']} unchanged"
        + (f", {counts['conflict']} in conflict" if counts["conflict"] else "")
    )
    if plan.unmanaged_devices:
        console.print(
            f"note: {plan.unmanaged_devices} device(s) of the application are not in the inventory; "
            "provisioning never deletes, they are left as they are"
        )
    rekeyed = [step.label for step in plan.steps if step.kind == "keys" and step.action == "update"
               and any(change.startswith("nwk_key") for change in step.changes)]
    if rekeyed:
        # ChirpStack and the bundle get the new AppKey; the node still holds the old one in its flash.
        console.print(
            f"[yellow]warning[/]: {len(rekeyed)} node(s) get a new AppKey: a node already flashed keeps "
            "its old key and stops joining (its next join request fails the MIC check) until it is "
            "reflashed with `citynode flash`: " + ", ".join(escape(label) for label in rekeyed)
        )
    # A bundle that existed gets a new GenAppKey or update key: a node flashed from the old bundle still
    # joins, but derives wrong multicast keys or checks packages with the old key until it is reflashed.
    refuota = [step.label for step in plan.steps if step.kind == "bundle" and step.action == "update"
               and {"gen_app_key", "fuota_pub"} & set(step.changes)]
    if refuota:
        console.print(
            f"[yellow]warning[/]: {len(refuota)} node(s) get a new GenAppKey or update key (fuota_pub) in their "
            "bundle: a node already flashed keeps joining, but cannot take a FUOTA update until it is "
            "reflashed with `citynode flash`: " + ", ".join(escape(label) for label in refuota)
        )
    generated = sum(1 for s in plan.key_sources.values() if s == "generated")
    generated_gen = sum(1 for s in plan.gen_key_sources.values() if s == "generated")
    made = [f"{n} new {what}(s)" for n, what in ((generated, "AppKey"), (generated_gen, "GenAppKey")) if n]
    if made:
        console.print(f"{' and '.join(made)} will be generated (Python secrets module) and written to the bundles")
    no_pub = sum(1 for node in plan.nodes if node.dev_eui not in plan.fuota_pubs)
    if no_pub:
        console.print(
            f"note: {no_pub} bundle(s) carry no update key (fuota_pub): give --update-key PREFIX.pub (from "
            "`citynode fuota keygen`) so that those nodes can check FUOTA update packages"
        )


def _apply_with_progress(console: Console, client: Any, plan: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gateway.field.provision import apply_plan

    total = len(plan.steps)
    if not console.is_terminal or len(plan.pending) < _PROGRESS_MIN_STEPS:
        return apply_plan(client, plan)
    with Progress(TextColumn("provisioning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("", total=total)

        def tick(step: Any) -> None:
            bar.update(task, advance=1, description=f"{step.kind} {step.label}")

        return apply_plan(client, plan, progress=tick)


def _print_report(console: Console, report: Any) -> None:
    from rich.markup import escape

    done, failed, skipped = (report.by_status(s) for s in ("done", "failed", "skipped"))
    kinds = Counter(o.step.kind for o in done)
    summary = ", ".join(f"{n} {k}" for k, n in kinds.items()) or "nothing"
    console.print(f"done: {len(done)} steps ({summary})")
    for outcome in failed:
        console.print(f"[red]FAILED[/] {outcome.step.kind} {escape(outcome.step.label)} ({outcome.step.action}): "
                      f"{escape(outcome.message)}")
    if skipped:
        console.print(f"[yellow]not attempted[/]: {len(skipped)} steps")
        for outcome in skipped:
            console.print(f"  {outcome.step.kind} {escape(outcome.step.label)}: {escape(outcome.message)}")


def _print_keys(console: Console, plan: Any, dev_euis: set[str]) -> None:
    # Plain lines, not a table: they are copied into label printers and spreadsheets, never truncated.
    from rich.markup import escape

    console.print("OTAA keys (secret: keep this output private): dev_eui join_eui app_key source name")
    for node in plan.nodes:
        if node.dev_eui in dev_euis and node.dev_eui in plan.keys:
            console.print(f"{node.dev_eui} {node.join_eui} {plan.keys[node.dev_eui]} "
                          f"{plan.key_sources[node.dev_eui]} {escape(node.name)}", soft_wrap=True)
    console.print("GenAppKeys (FUOTA multicast root; secret as well): dev_eui gen_app_key source name")
    for node in plan.nodes:
        if node.dev_eui in dev_euis and node.dev_eui in plan.gen_keys:
            console.print(f"{node.dev_eui} {plan.gen_keys[node.dev_eui]} {plan.gen_key_sources[node.dev_eui]} "
                          f"{escape(node.name)}", soft_wrap=True)
