"""``citynode ns-sim``: run the LoRaWAN network-server SIMULATOR (demos, tests, HIL rigs; not ChirpStack).

Examples::

    citynode ns-sim --devices bundles/                                  # log only
    citynode ns-sim --devices devices.json --http http://127.0.0.1:8080/chirpstack
    citynode ns-sim --devices bundles/ --mqtt mqtt://127.0.0.1:1883 --port 1700

Nodes reach it through the virtual radio ``citynode_sim.udp.UdpRadio`` (UDP on 127.0.0.1). Every
join, uplink, downlink and rejected frame is logged on stderr with the reason; the events go to
ChirpStack's HTTP integration form (``POST <url>?event=up``) or MQTT topics
(``application/<id>/device/<deveui>/event/up``). Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from gateway.errors import ConfigError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ns-sim",
        help="LoRaWAN network-server SIMULATOR for demos/tests/HIL (joins, ADR, ChirpStack v4 events)",
        description="A LoRaWAN 1.0.4 EU868 network-server simulator for demos, tests and HIL rigs. It is not "
        "a network server: use ChirpStack for real networks. Nodes reach it through the virtual radio (UDP "
        "on 127.0.0.1): `citynode demo` starts its own; a `citynode virtual-device` whose sim.json holds "
        '{"network": {"port": 1700}} joins the one on port 1700 with the keys of its bundle (give the same '
        "bundles to --devices). It forwards ChirpStack v4 events (join, up, ack, txack, status, log) to --http "
        "or --mqtt. Every join, uplink, "
        "downlink and rejected frame is logged on stderr with the reason; --log-frames adds each PHYPayload. "
        "Exit status: 0 stopped (Ctrl-C or --duration), 2 bad option or the port is taken (one line why).",
    )
    p.add_argument("--host", default="127.0.0.1", help="UDP address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1700, help="UDP port for the virtual radios (default 1700, 0 = any)")
    p.add_argument("--devices", action="append", default=[], metavar="PATH",
                   help="provisioning bundle, bundle directory or JSON list of {dev_eui, join_eui, app_key}; "
                   "repeatable")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--http", metavar="URL", help="post events like ChirpStack's HTTP integration to URL")
    out.add_argument("--mqtt", metavar="URL", help="publish events like ChirpStack's MQTT integration "
                     "(mqtt://host:port)")
    p.add_argument("--encoding", choices=("json", "protobuf"), default="json", help="HTTP body marshaling (default %(default)s)")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                   help="extra HTTP header (e.g. 'Authorization: Bearer TOKEN'); repeatable")
    p.add_argument("--rx-window", type=int, choices=(1, 2), default=1, help="send downlinks in RX1 or RX2 (default %(default)s)")
    p.add_argument("--rx1-delay", type=int, default=1, help="RXDelay in seconds sent in join-accepts (1..15, default %(default)s)")
    p.add_argument("--adr-margin", type=float, default=10.0, help="ADR installation margin in dB (default 10)")
    p.add_argument("--log-frames", nargs="?", const="-", metavar="FILE",
                   help="write every PHYPayload heard or sent as one line 'frame up|down dev_eui=<DevEUI> <hex>' "
                   "to FILE (appended), or to stderr without FILE; decode them with `citynode lorawan decode`")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: run "
                   "until Ctrl-C)")
    p.set_defaults(func=_run)


def _headers(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, value = v.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"--header: {v!r} is not NAME:VALUE")
        out[name.strip()] = value.strip()
    return out


def _run(args: argparse.Namespace) -> int:
    from gateway.sim.nssim import HttpDelivery, MqttDelivery, NetworkServerSim, load_devices

    if not args.devices:
        raise ConfigError("--devices: give at least one bundle, bundle directory or JSON device list")
    devices = load_devices(args.devices)
    sinks = []
    if args.http:
        sinks.append(HttpDelivery(args.http, args.encoding, _headers(args.header)))
    elif args.mqtt:
        sinks.append(MqttDelivery(args.mqtt))
    with contextlib.ExitStack() as stack:
        frame_log = None
        if args.log_frames == "-":
            def frame_log(line: str) -> None:
                print(line, file=sys.stderr, flush=True)
        elif args.log_frames:
            try:
                out = stack.enter_context(open(args.log_frames, "a", encoding="utf-8", buffering=1))
            except OSError as exc:
                raise ConfigError(f"--log-frames {args.log_frames}: cannot write ({exc.strerror})") from None

            def frame_log(line: str) -> None:
                out.write(line + "\n")
        sim = NetworkServerSim(devices, host=args.host, port=args.port, sinks=sinks, rx_window=args.rx_window,
                               rx1_delay_s=args.rx1_delay, adr_margin_db=args.adr_margin, frame_log=frame_log)
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            asyncio.run(_serve(sim, args.duration))
        except OSError as exc:
            raise ConfigError(f"--port: cannot listen on udp://{args.host}:{args.port} ({exc.strerror})") from None
    n_up = len(sim.events_of("up"))
    n_join = len(sim.events_of("join"))
    dropped = sum(1 for e in sim.log if e.kind in ("dropped", "join-rejected"))
    print(f"ns-sim: {n_join} joins, {n_up} uplinks forwarded, {dropped} frames rejected", file=sys.stderr)
    return 0


async def _serve(sim: object, duration: float | None) -> None:
    from gateway.sim.nssim import NetworkServerSim

    assert isinstance(sim, NetworkServerSim)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with sim:
        print(f"ns-sim: listening on udp://{sim.host}:{sim.port} with {len(sim.devices)} devices "
              "(a simulator for demos and tests, not a network server)", file=sys.stderr, flush=True)
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except TimeoutError:
            pass
