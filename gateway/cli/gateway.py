"""``citynode gateway``: serve, export, raw-event, deadletters, prune, downlink, watch.

citynode gateway serve --config gw.toml
citynode gateway export --config gw.toml --format csv --since 2026-05-01T00:00:00Z > readings.csv
citynode gateway raw-event 4711 --config gw.toml > event.json
citynode gateway deadletters --config gw.toml --limit 20
citynode gateway prune --config gw.toml --keep-days 365 --dry-run
citynode gateway downlink 0004a30b001c0530 '{"interval": 900, "adr": true}' --config gw.toml
citynode gateway watch --store /var/lib/citynode/gateway.sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from gateway.errors import ConfigError, EncodeError
from gateway.service.config import Config, load_config
from gateway.service.store import Store, parse_time
from gateway.service.store.export import ExportFilter
from gateway.service.store.export import export as export_readings

__all__ = ["register"]

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("gateway", help="the ChirpStack gateway service and its store",
                                   description="The citynode gateway: the service beside ChirpStack (serve) "
                                   "and the tools that read and maintain its store.")
    sub = parser.add_subparsers(dest="gateway_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("serve", help="run the gateway until SIGINT/SIGTERM",
                       description="Run the gateway service (ingest, store, sinks, read API) as configured "
                       "in the TOML file until SIGINT/SIGTERM. Exit status: 0 stopped cleanly, 2 bad "
                       "configuration (one line naming the key).")
    p.add_argument("--config", required=True, help="TOML configuration file")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="write stored readings as CSV or JSON lines",
                       description="Write stored readings, oldest first, as CSV or JSON lines to stdout or "
                       "a file, optionally only since a time, of one device or one field.")
    _store_args(p)
    p.add_argument("--format", choices=("csv", "jsonl"), default="jsonl", help="output format")
    p.add_argument("--since", help="only readings at or after this ISO 8601 time")
    p.add_argument("--device", help="only this DevEUI")
    p.add_argument("--field", help="only this field, e.g. temperature")
    p.add_argument("--out", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("raw-event", help="write a stored ChirpStack event exactly as it was received",
                       description="Write the body of a stored ChirpStack event, byte for byte as the "
                       "gateway received it (JSON or protobuf; the store keeps it compressed), to stdout "
                       "or a file. EVENT is an event id (the event_id column of the readings) or an "
                       "uplink's deduplication id. Exit status 2 when it is not stored.")
    p.add_argument("event", metavar="EVENT", help="event id (digits) or deduplication id")
    _store_args(p)
    p.add_argument("--out", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_raw_event)

    p = sub.add_parser("deadletters", help="list what could not be processed, newest first",
                       description="List the dead letters (events the gateway could not decode and readings "
                       "a platform refused), newest first, with the reason.")
    _store_args(p)
    p.add_argument("--limit", type=int, default=50, help="how many to list")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_deadletters)

    p = sub.add_parser("prune", help="delete old readings and events that every sink has delivered",
                       description="Delete readings and events older than a time that every sink has "
                       "delivered; what a sink still waits for is kept.")
    _store_args(p)
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--before", help="delete what is older than this ISO 8601 time")
    when.add_argument("--keep-days", type=int, help="delete what is older than this many days")
    p.add_argument("--dead-letters", action="store_true", help="also delete dead letters older than that")
    p.add_argument("--ignore-sink", action="append", default=[], metavar="NAME",
                   help="a sink that was removed for good: do not wait for it (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("downlink", help="encode a config message and queue it for a device",
                       description="Encode a config message (interval, ADR, ...) and queue it in ChirpStack "
                       "for a device, over MQTT or the gRPC API; the node receives it after its next uplink. "
                       "For gRPC the API token is chirpstack.api_token or $CITYNODE_CHIRPSTACK_TOKEN.")
    p.add_argument("dev_eui", help="16 hex digits")
    p.add_argument("settings", help='config JSON, e.g. \'{"interval": 900, "adr": true}\'')
    p.add_argument("--config", required=True, help="TOML configuration file ([chirpstack], [mqtt])")
    p.add_argument("--via", choices=("mqtt", "grpc"), help="override chirpstack.downlink")
    p.add_argument("--application-id", help="ChirpStack application id (MQTT topic); default from the store")
    p.add_argument("--confirmed", action="store_true", help="ask the node to acknowledge")
    p.set_defaults(func=cmd_downlink)

    p = sub.add_parser("watch", help="a live terminal view of the store: devices, readings, link, losses",
                       description="A live terminal view of the store: devices, latest readings, link "
                       "quality and lost uplinks, redrawn every --interval seconds.")
    _store_args(p)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between redraws (default 1)")
    p.add_argument("--once", action="store_true", help="print one frame and the summary, then exit")
    p.set_defaults(func=cmd_watch)


def _store_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", help="TOML configuration file (uses store.path)")
    group.add_argument("--store", help="path of the SQLite store")


def _open_store(args: argparse.Namespace) -> Store:
    path = args.store if args.store else load_config(args.config).store.path
    if not str(path).startswith(("postgresql://", "postgres://")) and not Path(path).exists():
        raise ConfigError(f"store {path}: no such file")
    return Store.open(path)


# ------------------------------------------------------------------------------------------------ serve


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.service.app import serve
    from gateway.service.runtime import configure_logging

    config = load_config(args.config)
    configure_logging(config.log)
    return asyncio.run(serve(config, _sink_workers(config)))


def _sink_workers(config: Config) -> list[Any]:
    """Sink delivery workers, when the sinks package provides ``worker_factories(config)``."""
    try:
        from gateway.service import sinks  # type: ignore[attr-defined]
    except ImportError:
        return []
    factory = getattr(sinks, "worker_factories", None)
    return list(factory(config)) if factory else []


# ----------------------------------------------------------------------------------------------- export


def export(store: Store, args: argparse.Namespace, out: IO[bytes]) -> int:
    """Stream the readings ``args`` select to ``out`` (:mod:`gateway.service.store.export`)."""
    since = parse_time(args.since) if args.since else None
    return export_readings(store, args.format, ExportFilter(args.device, args.field, since), out)


def cmd_export(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        if args.out:
            with open(args.out, "wb") as fh:
                count = export(store, args, fh)
        else:
            try:
                count = export(store, args, sys.stdout.buffer)
                sys.stdout.flush()
            except BrokenPipeError:
                # The reader stopped (``export | head``): not an error of the export. Point stdout at
                # /dev/null so that the interpreter's last flush at exit has nowhere to fail.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
                return 0
    print(f"exported {count} readings", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------ raw-event

_DEDUP_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._:-]{0,127}")


def cmd_raw_event(args: argparse.Namespace) -> int:
    text = args.event.strip()
    if text.isdigit():
        key: int | str = int(text)
    elif _DEDUP_ID.fullmatch(text):
        key = text
    else:
        raise ConfigError(f"event {args.event!r}: not an event id (digits) nor a deduplication id")
    with _open_store(args) as store:
        event = store.raw_event(key)
    if event is None:
        raise ConfigError(f"event {text}: not in the store")
    if event.raw is None:
        raise ConfigError(f"event {text}: stored without its body")
    print(f"event {event.id}: {event.kind} {event.dev_eui or '-'} {event.received_at.isoformat()}, "
          f"{len(event.raw)} bytes of {event.encoding or 'unknown encoding'}", file=sys.stderr)
    if args.out:
        Path(args.out).write_bytes(event.raw)
    else:
        sys.stdout.buffer.write(event.raw)
        sys.stdout.flush()
    return 0


# ------------------------------------------------------------------------------------------ deadletters


def cmd_deadletters(args: argparse.Namespace) -> int:
    from gateway.service.api.routes import dead_letter_json

    with _open_store(args) as store:
        letters = store.dead_letters(args.limit)
    for dl in letters:
        if args.json:
            print(json.dumps(dead_letter_json(dl), ensure_ascii=False))
        else:
            raw = dl.raw.hex() if isinstance(dl.raw, bytes) else repr(dl.raw[:80])
            print(f"#{dl.id} {dl.received_at.isoformat()} {dl.source} {dl.dev_eui or '-'}: {dl.reason}")
            print(f"    raw ({len(dl.raw)} {'bytes' if isinstance(dl.raw, bytes) else 'chars'}): {raw[:160]}")
    if not letters:
        print("no dead letters", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------------ prune


def prune_sinks(store: Store, config: Config | None, ignore: list[str]) -> dict[str, int]:
    """The sinks whose cursors bound a prune, with their cursors.

    Every sink with a cursor in the store, and with a config every sink in ``[sinks]`` (enabled or
    not: a sink switched off for a while still gets its backlog when it returns), minus ``ignore``.
    """
    cursors = store.cursors()
    names = set(cursors) | (set(config.sinks) if config is not None else set())
    return {name: cursors.get(name, 0) for name in sorted(names - set(ignore))}


def cmd_prune(args: argparse.Namespace) -> int:
    if args.keep_days is not None:
        if args.keep_days < 1:
            raise ConfigError(f"--keep-days: expected at least 1, got {args.keep_days}")
        before = datetime.now(UTC) - timedelta(days=args.keep_days)
    else:
        before = parse_time(args.before)
    config = load_config(args.config) if args.config else None
    with _open_store(args) as store:
        sinks = prune_sinks(store, config, args.ignore_sink)
        delivered = min(sinks.values()) if sinks else store.last_reading_id()
        result = store.prune(before, delivered, dead_letters=args.dead_letters, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    letters = f", {result.dead_letters} dead letters" if args.dead_letters else ""
    print(f"{verb} {result.readings} readings, {result.events} events{letters} older than {before.isoformat()}")
    if result.kept_undelivered:
        behind = ", ".join(f"sink {name} has delivered up to #{cursor}" for name, cursor in sinks.items() if cursor == delivered)
        print(f"kept {result.kept_undelivered} older readings that are not delivered yet: {behind}")
    return 0


# --------------------------------------------------------------------------------------------- downlink


def _parse_settings(text: str) -> dict[str, Any]:
    try:
        settings = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"downlink settings are not JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise ConfigError('downlink settings must be a JSON object, e.g. {"interval": 900}')
    return settings


def _dev_eui(text: str) -> str:
    eui = text.lower()
    if len(eui) != 16 or any(c not in "0123456789abcdef" for c in eui):
        raise ConfigError(f"devEui must be 16 hex digits, got {text!r}")
    return eui


def downlink_command(dev_eui: str, fport: int, data: bytes, confirmed: bool) -> Any:
    """The ``DownlinkCommand`` ChirpStack's MQTT integration accepts on ``.../command/down``."""
    from chirpstack_api import integration

    return integration.DownlinkCommand(dev_eui=dev_eui, confirmed=confirmed, f_port=fport, data=data)


async def publish_downlink_mqtt(
    config: Config, application_id: str, dev_eui: str, fport: int, data: bytes, confirmed: bool
) -> str:
    from gateway.service.ingest.events import encode_event
    from gateway.service.ingest.mqtt import mqtt_client

    topic = config.mqtt.command_topic.format(application_id=application_id, dev_eui=dev_eui)
    body = encode_event(downlink_command(dev_eui, fport, data, confirmed), config.mqtt.encoding)  # type: ignore[arg-type]
    # A separate, non-persistent client id: never steal the serving gateway's session.
    async with mqtt_client(
        config.mqtt, client_id=f"{config.mqtt.client_id}-downlink", persistent=False
    ) as client:
        await client.publish(topic, body, qos=1)
    return topic


def enqueue_downlink_grpc(config: Config, dev_eui: str, fport: int, data: bytes, confirmed: bool) -> str:
    """``DeviceService.Enqueue`` on ChirpStack's gRPC API (``authorization: Bearer <api token>``).

    Uses :class:`gateway.field.chirpstack_client.ChirpStackClient`, whose errors (unknown device, refused
    token, unreachable server) are one-line :class:`CitynodeError` messages. Returns the queue item id.
    """
    from gateway.field.chirpstack_client import ChirpStackClient

    cs = config.chirpstack
    if not cs.api_token:
        raise ConfigError("chirpstack.api_token: required for gRPC downlinks (or CITYNODE_CHIRPSTACK_TOKEN)")
    with ChirpStackClient(cs.grpc_target, cs.api_token.get(), tls=cs.grpc_tls) as client:
        return client.enqueue(dev_eui, fport, data, confirmed)


def cmd_downlink(args: argparse.Namespace) -> int:
    from gateway.contract import codec

    config = load_config(args.config)
    dev_eui = _dev_eui(args.dev_eui)
    try:
        fport, data = codec.encode_downlink(_parse_settings(args.settings))
    except EncodeError as exc:
        raise ConfigError(f"downlink: {exc}") from None
    via = args.via or config.chirpstack.downlink
    if via == "grpc":
        item = enqueue_downlink_grpc(config, dev_eui, fport, data, args.confirmed)
        print(f"queued downlink {item} for {dev_eui}: fPort {fport}, {data.hex()}")
        return 0
    app = args.application_id or config.chirpstack.application_id
    if not app:
        with _maybe_store(config) as store:
            device = store.device(dev_eui) if store else None
        app = device.application_id if device else ""
    if not app:
        raise ConfigError("application id unknown: give --application-id or set chirpstack.application_id")
    topic = asyncio.run(publish_downlink_mqtt(config, app, dev_eui, fport, data, args.confirmed))
    print(f"published downlink to {topic}: fPort {fport}, {data.hex()} ({base64.b64encode(data).decode()})")
    return 0


class _maybe_store:
    def __init__(self, config: Config) -> None:
        self.path = config.store.path
        self.store: Store | None = None

    def __enter__(self) -> Store | None:
        if self.path.startswith(("postgresql://", "postgres://")) or Path(self.path).exists():
            self.store = Store.open(self.path)
        return self.store

    def __exit__(self, *exc: object) -> None:
        if self.store is not None:
            self.store.close()


# ------------------------------------------------------------------------------------------------ watch


def cmd_watch(args: argparse.Namespace) -> int:
    """Redraw :mod:`gateway.service.api.liveview` until Ctrl-C, then print the summary."""
    import threading

    from rich.console import Console

    from gateway.service.api import liveview

    if not 0.1 <= args.interval <= 3600:
        raise ConfigError(f"--interval must be 0.1..3600 seconds, not {args.interval}")
    console = Console()
    with _open_store(args) as store:
        if args.once:
            console.print(liveview.LiveView(store).render())
        else:
            stop = threading.Event()
            try:
                liveview.run(store, stop, interval=args.interval, console=console)
            except KeyboardInterrupt:
                stop.set()
        console.print(liveview.summary(store), markup=False, highlight=False)
    return 0
