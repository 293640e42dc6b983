"""``citynode demo``: the main job as far as it is built.

For now: typical city readings of every message type are encoded by the node firmware on the real
MicroPython unix port, decoded by the gateway, and printed as a table with byte counts and units;
a batch and a malformed payload show the batch form and a clear rejection. Later stages of the chain
(virtual fleet, LoRaWAN, ChirpStack events, gateway service) extend this command.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway import codec
from gateway.errors import DecodeError
from gateway.micropython import run_code
from gateway.paths import codecs_dir
from gateway.schema import load_schema

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("demo", help="run the demo: readings encoded on MicroPython, decoded by the gateway")
    parser.set_defaults(func=_demo)


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
