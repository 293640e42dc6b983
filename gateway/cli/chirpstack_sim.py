"""``citynode chirpstack-sim``: run the ChirpStack v4 API simulator in the foreground.

A SIMULATOR for tests and demos (see :mod:`gateway.sim.chirpstack`), never a ChirpStack replacement:
state lives in memory and is gone when the process ends.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from gateway.errors import ConfigError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chirpstack-sim",
        help="run a ChirpStack v4 gRPC API simulator (in-memory, for tests and demos only)",
        description=(
            "Run a SIMULATOR of ChirpStack v4's gRPC API (tenants, applications, device profiles, "
            "devices, OTAA keys, downlink queue) with in-memory state. For tests and demos only: "
            "it is not a network server and never a ChirpStack replacement."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="gRPC port (default 8080, as ChirpStack)")
    parser.add_argument(
        "--token",
        default=None,
        help="API token clients must send as 'authorization: Bearer <token>' "
        "(default: $CITYNODE_CHIRPSTACK_TOKEN)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gateway.sim.chirpstack import DEFAULT_TENANT_ID, ChirpStackSimulator

    token = args.token or os.environ.get("CITYNODE_CHIRPSTACK_TOKEN", "")
    if not token:
        raise ConfigError("--token: give the API token the simulator should accept (or set CITYNODE_CHIRPSTACK_TOKEN)")
    try:
        sim = ChirpStackSimulator(token=token, host=args.host, port=args.port)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"--port: cannot listen on {args.host}:{args.port}: {exc}") from None
    sim.start()
    print(
        f"ChirpStack API SIMULATOR (in-memory, for tests/demos; not a ChirpStack) listening on {sim.address}\n"
        f"default tenant id: {DEFAULT_TENANT_ID}\n"
        "press Ctrl-C to stop",
        flush=True,
    )
    try:
        sim.wait()
    except KeyboardInterrupt:
        print("simulator stopped", file=sys.stderr)
    finally:
        sim.stop(grace=0)
    return 0
