"""``make demo``: the whole chain, real parts end to end, on one machine.

    virtual fleet (node firmware on MicroPython, simulated sensors, citynode LoRaWAN MAC)
      -> UDP virtual radio -> network-server simulator (ChirpStack v4 events from chirpstack-api types)
      -> ChirpStack's HTTP integration form (or MQTT when a broker is given)
      -> citynode gateway (decode, normalise, SQLite store, read API)
      -> a live terminal view, and a summary at the end.

The network-server simulator stands in for ChirpStack, which cannot run here; everything else is the
code that runs in the city.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from gateway.service.api.liveview import LiveView, summary
from gateway.service.app import GatewayService
from gateway.service.config import parse_config
from gateway.sim.fleet import VirtualFleet
from gateway.sim.nssim import HttpDelivery, MqttDelivery, NetworkServerSim
from gateway.sim.nssim.registry import device_from_mapping

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured end to end."""

    nodes: int
    node_uplinks: int  # uplinks the nodes printed as sent
    events: int  # integration events the simulator delivered
    network_uplinks: int  # of which uplinks
    stored_uplinks: int  # uplink events in the gateway's store
    readings: int
    dead_letters: int
    seconds: float
    store_path: Path
    interrupted: bool = False
    report: str = ""  # the live view's closing summary: losses per device, devices per role, weakest link

    @property
    def nothing_lost(self) -> bool:
        """Every uplink the network server delivered is in the gateway's store, decoded, and none of
        those the nodes saw go out is missing. (A node stopped between its transmission and its log
        line has one more on the air than it printed, so stored may exceed what the nodes printed.)"""
        return (self.stored_uplinks == self.network_uplinks >= self.node_uplinks
                and self.dead_letters == 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _view(view: LiveView, fleet: VirtualFleet, sim: NetworkServerSim, started: float) -> Group:
    """The gateway's live view of what it stored, and one line about the fleet and the network."""
    footer = Text(
        f"{time.monotonic() - started:4.0f} s | virtual nodes running {fleet.running()}/{len(fleet.nodes)}, "
        f"uplinks they sent {sum(n.uplinks for n in fleet.nodes)} | network-server events {len(sim.events)}"
    )
    return Group(view.render(), footer)


async def run_demo(
    *, minutes: float = 1.0, nodes: int = 20, mqtt_url: str | None = None, keep: Path | None = None,
    console: Console | None = None, live: bool = True, on_tick: Callable[[float], None] | None = None,
) -> DemoResult:
    """Run the chain for ``minutes`` (Ctrl-C stops it early) and return what it measured."""
    console = console or Console()
    root = keep or Path(tempfile.mkdtemp(prefix="citynode-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    http_port = _free_port()
    token = secrets.token_hex(16)  # the HTTP integration's bearer token, as in a deployment
    doc: dict[str, Any] = {
        "store": {"path": str(root / "gateway.sqlite")},
        "http": {"host": "127.0.0.1", "port": http_port, "ingest": True, "token": token},
        "log": {"level": "WARNING"},
    }
    if mqtt_url:
        from urllib.parse import urlparse

        url = urlparse(mqtt_url)
        doc["mqtt"] = {"enabled": True, "host": url.hostname or "127.0.0.1", "port": url.port or 1883,
                       "client_id": "citynode-demo"}
    config = parse_config(doc, source="demo")
    fleet: VirtualFleet | None = None
    started = time.monotonic()
    async with GatewayService(config) as service:
        sink = (MqttDelivery(mqtt_url) if mqtt_url else
                HttpDelivery(f"http://127.0.0.1:{http_port}/chirpstack", headers={"Authorization": f"Bearer {token}"}))
        ns_port = _free_port()
        fleet = VirtualFleet(root / "fleet", nodes, ns_port)
        devices = [device_from_mapping(entry, f"node {i}") for i, entry in enumerate(fleet.registry())]
        sim = NetworkServerSim(devices, port=ns_port, sinks=[sink])
        async with sim:
            console.print(f"[bold]citynode demo[/]: {nodes} virtual nodes (the real firmware on the MicroPython "
                          f"unix port), network-server simulator on UDP {ns_port}, gateway on "
                          f"http://127.0.0.1:{http_port} (status page /, API /api/devices), store {root}")
            await asyncio.to_thread(fleet.prepare)
            fleet.start()
            deadline = started + minutes * 60
            assert service.store is not None
            interrupted = False
            try:
                if live:
                    view = LiveView(service.store, title="citynode demo: what the gateway stored")
                    with Live(_view(view, fleet, sim, started), console=console,
                              refresh_per_second=2, transient=False) as screen:
                        while time.monotonic() < deadline:
                            await asyncio.sleep(1.0)
                            screen.update(_view(view, fleet, sim, started))
                            if on_tick:
                                on_tick(time.monotonic() - started)
                else:
                    while time.monotonic() < deadline:
                        await asyncio.sleep(1.0)
                        if on_tick:
                            on_tick(time.monotonic() - started)
            except asyncio.CancelledError:  # Ctrl-C: stop everything cleanly, then report
                interrupted = True
            finally:
                await asyncio.to_thread(fleet.stop)
        await asyncio.sleep(1.0)  # the last events reach the store
        counts = service.store.counts()
        report = summary(service.store)
    return DemoResult(
        nodes=nodes,
        node_uplinks=sum(n.uplinks for n in fleet.nodes),
        events=len(sim.events),
        network_uplinks=len(sim.events_of("up")),
        stored_uplinks=counts["uplinks"],
        readings=counts["readings"],
        dead_letters=counts["dead_letters"],
        seconds=time.monotonic() - started,
        store_path=root / "gateway.sqlite",
        interrupted=interrupted,
        report=report,
    )
