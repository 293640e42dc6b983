"""``citynode demo``: what `make demo` runs.

By default the whole chain (:mod:`gateway.sim.demo`): a virtual fleet of nodes running the real
firmware on the MicroPython unix port sends through the citynode LoRaWAN MAC and a UDP virtual radio to
the network-server simulator, which posts ChirpStack v4 events to the citynode gateway; a live view
shows what the gateway stored, and a summary checks that nothing was lost; ``--fuota`` updates the running
fleet over the air on the way (:mod:`gateway.sim.demo`). ``--codec`` shows the
payload contract alone: typical readings encoded on MicroPython, decoded by the gateway.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gateway.contract import codec
from gateway.contract.schema import load_schema
from gateway.errors import ConfigError, DecodeError
from gateway.field.micropython import run_code
from gateway.paths import codecs_dir

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "demo", help="run the whole chain: virtual fleet -> LoRaWAN -> network server -> gateway",
        description="Run the whole chain on this machine: a virtual fleet of nodes running the real firmware "
        "on the MicroPython unix port joins and sends through the citynode LoRaWAN MAC to the network-server "
        "simulator, which posts ChirpStack v4 events to a citynode gateway; a live view shows what is stored "
        "and a summary compares what was sent with what was stored. With --fuota the running fleet is updated over "
        "the air on the way (a signed package, ChirpStack's FUOTA flow, fragments lost) and a table says what "
        "became of each node. Exit status: 0 nothing lost (and with --fuota every node updated), 1 uplinks "
        "sent and stored differ, a node failed or was not updated, 2 bad option or the demo could not start "
        "(one line why).",
    )
    parser.add_argument("--minutes", type=float, help="how long the fleet runs (default 1; with --fuota the "
                        "limit, default 6: the run ends once every node runs the new version)")
    parser.add_argument("--nodes", type=int, help="virtual nodes, all four roles (default 20; with --fuota 8)")
    parser.add_argument("--mqtt", metavar="URL", help="deliver events through an MQTT broker (mqtt://host:port)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the store and node filesystems in DIR "
                        "(default: a temporary directory, removed at the end)")
    parser.add_argument("--no-live", action="store_true", help="no live view (logs, CI)")
    parser.add_argument("--fuota", action="store_true", help="update the running fleet over the air: a signed "
                        "package of a changed module (0.1.0 -> 0.2.0) deployed through the API simulator's "
                        "FuotaService, Class C multicast with fragments lost, each node installs it, reboots "
                        "into it and reports it; nothing the fleet sends meanwhile may be lost (needs `make "
                        "firmware-unix`: the nodes run on its 32-bit build)")
    parser.add_argument("--loss", type=float, default=10.0, metavar="PCT", help="with --fuota: percent of the "
                        "multicast fragments dropped (default 10)")
    parser.add_argument("--codec", action="store_true", help="show only the payload contract: typical readings encoded by the firmware on MicroPython and "
                        "decoded by the gateway, with sizes and heap use (no network, a few seconds).")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.codec:
        if args.fuota:
            raise ConfigError("--codec and --fuota are two different demos: give one")
        return _demo(args)
    if args.loss != 10.0 and not args.fuota:
        raise ConfigError("--loss applies to --fuota only")
    if args.minutes is None:
        args.minutes = 6.0 if args.fuota else 1.0
    if args.nodes is None:
        args.nodes = 8 if args.fuota else 20
    if args.fuota:
        if args.nodes < 4:
            raise ConfigError(f"--nodes: --fuota updates every role, so at least 4 nodes (got {args.nodes})")
        if not 0 <= args.loss < 50:
            raise ConfigError(f"--loss: a percentage in [0, 50) (got {args.loss:g})")
    return _chain(args)


def _chain(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console
    from rich.table import Table

    from gateway.sim.demo import run_demo

    if args.nodes < 1 or args.minutes <= 0:
        raise ConfigError("--nodes must be at least 1 and --minutes above 0")
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    result = asyncio.run(run_demo(minutes=args.minutes, nodes=args.nodes, mqtt_url=args.mqtt, keep=args.keep,
                                  console=console, live=not args.no_live, fuota=args.fuota,
                                  fragment_loss=args.loss / 100))
    table = Table(title="summary", show_header=False)
    table.add_row("virtual nodes", str(result.nodes))
    table.add_row("uplinks the nodes sent", str(result.node_uplinks))
    table.add_row("events from the network server", f"{result.events} ({result.network_uplinks} uplinks)")
    table.add_row("uplinks stored by the gateway", str(result.stored_uplinks))
    table.add_row("readings stored (unit-labelled)", str(result.readings))
    table.add_row("dead letters", str(result.dead_letters))
    table.add_row("duration", f"{result.seconds:.0f} s" + (" (stopped with Ctrl-C)" if result.interrupted else ""))
    table.add_row("store", str(result.store_path) if result.kept else "removed (use --keep DIR to keep it)")
    console.print()
    console.print(result.report)
    console.print(table)
    nodes = Table(title="each node: expected (at least) and sent")
    for column in ("node", "DevEUI", "role", "expected", "sent", "verdict"):
        nodes.add_column(column, no_wrap=column in ("node", "DevEUI"))
    for v in result.verdicts:
        nodes.add_row(v.name, v.dev_eui, v.role, str(v.expected), str(v.sent),
                      "ok" if v.ok else f"[red]{v.problem}[/]")
    console.print(nodes)
    d = result.downlink
    if d is not None:
        settings = json.dumps(d.settings)
        if d.ok:
            console.print(f"[green]downlink {settings} to {d.node} ({d.dev_eui}): queued with "
                          f"DeviceService.Enqueue, sent in its receive window, {d.applied!r}, next uplink "
                          f"reports interval {d.reflected}[/]")
        else:
            console.print(f"[yellow]downlink {settings} to {d.node} ({d.dev_eui}): {d.note}[/]")
    if args.fuota:
        _print_updates(console, result)
        console.print("(A node resumes its LoRaWAN session after the reboot from flash, its uplink counter "
                      "stepped ahead, as after any reset: the FCnt gaps above are those skipped counters. What "
                      "was sent is compared with what was stored in the summary.)", highlight=False)
    failed = result.failed_nodes
    if failed:
        names = ", ".join(f"{v.name} ({v.problem})" for v in failed)
        console.print(f"[red]{len(failed)} of {result.nodes} node(s) did not do their job: {names}[/]")
        return 1
    if result.node_uplinks == 0:
        console.print("[red]no node sent an uplink: nothing to compare[/]")
        return 1
    if args.fuota and not all(u.ok for u in result.updates):
        console.print("[red]the update did not reach every node: see the table above[/]")
        return 1
    if result.nothing_lost:
        console.print("[green]every node sent what its interval asks for; nothing lost: every uplink the "
                      "network delivered is in the gateway's store, decoded[/]")
        return 0
    console.print("[red]uplinks sent and stored differ: see the store's dead letters[/]")
    return 1


def _print_updates(console: Any, result: Any) -> None:
    from rich.table import Table

    base, target = result.update_versions
    table = Table(title=f"the update over the air: {base} -> {target}")
    for column in ("node", "role", "fragments sent/dropped", "ChirpStack", "reboots", "runs", "update", "verdict"):
        table.add_column(column, no_wrap=column == "node")
    for u in result.updates:
        table.add_row(u.name, u.role, f"{u.fragments_sent}/{u.fragments_dropped}", u.deployment, str(u.reboots),
                      u.firmware or "-", u.update or "-", "ok" if u.ok else "[red]not updated[/]")
    console.print(table)
    done = sum(1 for u in result.updates if u.ok)
    colour = "green" if done == len(result.updates) else "red"
    console.print(f"[{colour}]{done} of {len(result.updates)} nodes run {target} (checked, installed, rebooted "
                  f"into, self-test passed, reported in their device_status)[/]")


_NODE_SCRIPT = """
import json, binascii, gc
from citynode import codec
samples = json.loads(%r)
out = {}
for name, reading in samples.items():
    gc.collect()
    before = gc.mem_alloc()
    data = codec.encode(name, reading)
    allocated = gc.mem_alloc() - before  # heap the encoder allocated (nothing collected meanwhile)
    out[name] = [binascii.hexlify(data).decode(), allocated]
batch = [dict(samples["crowd_count"], offset_s=900 * i) for i in range(10)]
data, count = codec.encode_batch("crowd_count", batch, 51)
out["batch"] = [binascii.hexlify(data).decode(), count]
print(json.dumps(out))
"""


def _samples() -> dict[str, Any]:
    data = json.loads((codecs_dir() / "samples.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("$")}


def _with_units(msg_type: str, reading: dict[str, Any]) -> str:
    msg = load_schema().message(msg_type)
    parts = []
    for key, value in reading.items():
        if key in ("faults", "offset_s", "doors"):
            if key == "doors":
                parts.append("doors " + ", ".join(f"#{d['door']} +{d['boardings']}/-{d['alightings']}" for d in value))
            elif value or key == "offset_s":
                parts.append(f"{key} {value}")
            continue
        unit = msg.field(key).unit
        parts.append(f"{key} {value}{' ' + unit if unit else ''}")
    return ", ".join(parts)


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a log or a pipe: no need to wrap at 80 columns
        console = Console(width=150)
    samples = _samples()
    console.print("[bold]citynode demo[/]: node firmware on the MicroPython unix port (96 KiB heap) encodes, "
                  "the gateway decodes\n")
    proc = run_code(_NODE_SCRIPT % json.dumps(samples))
    encoded = json.loads(proc.stdout.strip().splitlines()[-1])

    table = Table(show_lines=True)
    for column in ("type", "fPort", "bytes", "node heap (B)", "payload (hex)", "decoded by the gateway"):
        table.add_column(column, overflow="fold")
    for msg_type in samples:
        payload_hex, allocated = encoded[msg_type]
        payload = bytes.fromhex(payload_hex)
        fport = load_schema().message(msg_type).fport
        decoded = codec.decode(fport, payload)
        table.add_row(msg_type, str(fport), str(len(payload)), str(allocated), payload.hex(" "),
                      _with_units(msg_type, decoded["readings"][0]))
    batch_hex, count = encoded["batch"]
    batch = codec.decode(13, bytes.fromhex(batch_hex))
    table.add_row(
        f"crowd_count batch ({count} readings)", "13", str(len(batch_hex) // 2), "", batch_hex,
        "\n".join(_with_units("crowd_count", r) for r in batch["readings"]),
    )
    console.print(table)

    bad = bytes.fromhex("8901390fa0")  # an air_quality payload cut short
    try:
        codec.decode(10, bad)
    except DecodeError as exc:
        console.print(f"\nA malformed uplink ({bad.hex(' ')}) is rejected with a reason: [red]{exc}[/]")
    console.print("\nEvery uplink fits EU868 DR0 (51 bytes). `citynode codec decode --fport N HEX` decodes any payload.")
    return 0
