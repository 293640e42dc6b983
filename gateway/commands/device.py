"""``citynode device run``: the node firmware on the MicroPython unix port with simulated sensors.

Examples::

    citynode device run --board sim --role bin_fill --cycles 3
    citynode device run --role air_quality --cycles 1000 --heap --decode
    citynode device run --board sim --role crowd_count --lorawan --cycles 1000 --heapsize 64k

``--lorawan``: the real citynode LoRaWAN MAC over the UDP virtual radio to a network-server simulator
that the command starts and stops itself (OTAA join, uplinks, ADR, one config downlink); ``joined``
is printed only after the simulator's Join Accept.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from gateway import codec
from gateway.device_run import ROLES, VIRTUAL_DEVICE_HEAP, prepare_fs, stream_device, stream_lorawan_device
from gateway.errors import ConfigError, DecodeError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("device", help="run the node firmware as a virtual device")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run firmware/main.py on the MicroPython unix port (sim board)")
    run.add_argument("--role", required=True, choices=ROLES)
    run.add_argument("--board", default="sim", help="board definition in boards/ (default: sim)")
    run.add_argument("--cycles", type=int, default=3, help="measurement cycles to run (default 3)")
    run.add_argument("--seed", type=int, default=1, help="seed of the simulated sensors")
    run.add_argument("--values", help="JSON file scripting sensor values (see hal/simdev.py)")
    run.add_argument("--heap", action="store_true", help="print heap use after every cycle")
    run.add_argument("--heapsize", default=VIRTUAL_DEVICE_HEAP,
                     help=f"MicroPython heap (default {VIRTUAL_DEVICE_HEAP}: see bench/RESULTS.md, firmware heap)")
    run.add_argument("--lorawan", action="store_true",
                     help="real LoRaWAN link: the MAC over the virtual radio to a network-server simulator")
    run.add_argument("--decode", action="store_true", help="print each uplink decoded by the gateway")
    run.add_argument("--fs", type=Path, help="keep the node's filesystem in this directory")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.cycles < 1:
        raise ConfigError(f"--cycles: expected at least 1, got {args.cycles}")
    if args.lorawan and args.board != "sim":
        raise ConfigError(f"--lorawan: needs --board sim (the virtual radio), got {args.board}")
    try:
        values = json.loads(Path(args.values).read_text()) if args.values else None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--values {args.values}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="citynode-device-") as tmp:
        fs = args.fs or Path(tmp)
        prepare_fs(fs, args.role, board=args.board, cycles=args.cycles, seed=args.seed, values=values,
                   heap_report=args.heap, lorawan=args.lorawan)
        status = 0
        if args.lorawan:  # a config downlink (adr on) rides on the first uplink's RX window
            from gateway import codec as _codec

            lines = stream_lorawan_device(fs, heapsize=args.heapsize, downlinks=[_codec.encode_downlink({"adr": True})])
        else:
            lines = stream_device(fs, heapsize=args.heapsize)
        for line in lines:
            print(line, flush=True)
            if line.startswith("exit status "):
                status = 1
            if args.decode and line.startswith("uplink fport="):
                parts = dict(p.split("=", 1) for p in line.split()[1:])
                try:
                    print("  " + json.dumps(codec.decode(int(parts["fport"]), bytes.fromhex(parts["hex"]))))
                except DecodeError as exc:
                    print(f"  decode error: {exc}")
                    status = 1
    return status
