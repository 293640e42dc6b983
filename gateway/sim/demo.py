"""``make demo``: the whole chain, real parts end to end, on one machine.

    virtual fleet (node firmware on MicroPython, simulated sensors, citynode LoRaWAN MAC)
      -> UDP virtual radio -> network-server simulator (ChirpStack v4 events from chirpstack-api types)
      -> ChirpStack's HTTP integration form (or MQTT when a broker is given)
      -> citynode gateway (decode, normalise, SQLite store, read API)
      -> a live terminal view, and a summary at the end.

and one config downlink back: ``DeviceService.Enqueue`` on the ChirpStack API simulator
(:mod:`gateway.sim.chirpstack`, the gRPC call an operator's tool makes) -> the network-server simulator's
queue -> the node's next receive window -> the node applies it -> its next uplink reflects it.

The verdict compares what each node should have sent in the time it ran with what it sent
(:meth:`gateway.sim.fleet.VirtualFleet.verdicts`) and names every node that never joined, crashed or
stopped: "nothing lost" with nodes that sent nothing is no verdict. Each run has fresh DevEUIs; without
``keep`` the store and the node filesystems live in a temporary directory removed at the end.

The network-server simulator stands in for ChirpStack, which cannot run here; everything else is the
code that runs in the city.

With ``fuota`` the demo updates the running fleet over the air instead of sending the config downlink:
a fleet provisioned for updates (a GenAppKey per node and the update key, in the nodes' configs and in
the API simulator's device keys), a package of a changed module signed as ``citynode fuota build``
signs it (0.1.0 -> 0.2.0), ``citynode fuota deploy``'s deployments (one per role's device profile)
through the API simulator's FuotaService, carried out by the network-server simulator's
:class:`~gateway.sim.nssim.fuota.FuotaRunner` with ``fragment_loss`` of the fragments dropped; every
node checks the package, installs it, reboots into it, passes its self-test and reports the new
version in its device_status, while the gateway keeps storing what the fleet sends. Each node's
outcome is in :attr:`DemoResult.updates`.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
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
from gateway.sim.fleet import NodeVerdict, VirtualFleet
from gateway.sim.nssim import HttpDelivery, MqttDelivery, NetworkServerSim
from gateway.sim.nssim.commands import connect_api_queue
from gateway.sim.nssim.registry import device_from_mapping

__all__ = ["DEMO_DOWNLINK", "DemoDownlink", "DemoResult", "NodeUpdate", "run_demo"]

# The config downlink the demo sends to its first crowd counter (or first node): a new interval, which
# the crowd and passenger counters report in every uplink ("interval" field), so the next uplink shows it.
DEMO_DOWNLINK = {"interval": 600}
_DOWNLINK_ROLES = ("crowd_count", "passenger_count")


@dataclass(frozen=True)
class DemoDownlink:
    """What became of the demo's config downlink."""

    node: str
    dev_eui: str
    settings: dict[str, Any]
    queued: bool = False  # DeviceService.Enqueue answered with an id
    transmitted: bool = False  # the network-server simulator sent it in a receive window (txack)
    applied: str = ""  # the node's "downlink applied: ..." line
    reflected: Any = None  # the "interval" of the node's first stored uplink after it applied it
    note: str = ""  # why not, when it did not get through

    @property
    def ok(self) -> bool:
        return self.transmitted and bool(self.applied) and self.reflected == self.settings.get("interval")


@dataclass(frozen=True)
class NodeUpdate:
    """What became of one node in the demo's update over the air."""

    name: str
    dev_eui: str
    role: str
    deployment: str  # ChirpStack's result for the device: "complete", "failed: <why>", "in progress: <step>"
    firmware: str  # the version in the node's newest device_status
    update: str  # that status's update field ("installed", "refused_signature", ...), "" when none
    reboots: int
    fragments_sent: int  # the multicast fragments sent to it, and those dropped (simulated loss)
    fragments_dropped: int
    target: str

    @property
    def ok(self) -> bool:
        return self.deployment == "complete" and self.firmware == self.target and self.update == "installed"


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
    verdicts: tuple[NodeVerdict, ...] = ()  # per node: expected, sent, what went wrong
    downlink: DemoDownlink | None = None
    kept: bool = False  # the store is still at store_path (--keep)
    updates: tuple[NodeUpdate, ...] = ()  # with fuota: each node's outcome
    update_versions: tuple[str, str] = ("", "")  # with fuota: (from, to)

    @property
    def failed_nodes(self) -> tuple[NodeVerdict, ...]:
        return tuple(v for v in self.verdicts if not v.ok)

    @property
    def nothing_lost(self) -> bool:
        """Every uplink the network server delivered is in the gateway's store, decoded, and none of
        those the nodes saw go out is missing. (A node stopped between its transmission and its log
        line has one more on the air than it printed, so stored may exceed what the nodes printed.)"""
        return (self.stored_uplinks == self.network_uplinks >= self.node_uplinks
                and self.dead_letters == 0)

    @property
    def ok(self) -> bool:
        """Nothing lost on the way, and every node did its job (joined, kept sending what its interval
        asks for, did not crash)."""
        return (self.nothing_lost and not self.failed_nodes and self.node_uplinks > 0
                and all(u.ok for u in self.updates))


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


class _DownlinkRun:
    """Queues the demo's config downlink through the API simulator once the target node has joined and
    sent, then follows it: txack from the network-server simulator, the node's "downlink applied" line,
    and the interval in its next stored uplink."""

    def __init__(self, fleet: VirtualFleet, sim: NetworkServerSim, api_address: str, token: str) -> None:
        self.fleet = fleet
        self.sim = sim
        self.api_address = api_address
        self.token = token
        nodes = [n for n in fleet.nodes if n.role in _DOWNLINK_ROLES] or fleet.nodes
        self.node = nodes[0]
        self.item_id = ""
        self.queued_at: float | None = None
        self.note = ""

    def provision(self) -> None:
        """The application, the role profiles and the devices with their keys in the API simulator
        (:func:`~gateway.sim.fuota_update.provision_fleet`, the update run's path too)."""
        from gateway.field.chirpstack_client import ChirpStackClient
        from gateway.sim.chirpstack import DEFAULT_TENANT_ID
        from gateway.sim.fuota_update import provision_fleet

        with ChirpStackClient(self.api_address, self.token) as client:
            provision_fleet(client, self.fleet, DEFAULT_TENANT_ID, name="citynode-demo")

    def step(self) -> None:
        """Queue the downlink once the node has sent its first uplink (so that it is on the network)."""
        if self.queued_at is not None or self.node.uplinks < 1:
            return
        from gateway.contract import codec
        from gateway.field.chirpstack_client import ChirpStackClient

        fport, data = codec.encode_downlink(DEMO_DOWNLINK)
        try:
            with ChirpStackClient(self.api_address, self.token) as client:
                self.item_id = client.enqueue(self.node.dev_eui, fport, data)
            # From now on the node reports at the new interval: expect no more of it than that allows.
            self.node.interval_s = max(self.node.interval_s, int(DEMO_DOWNLINK["interval"]))
        except Exception as exc:  # the outcome says why; the demo goes on
            self.note = f"DeviceService.Enqueue failed: {exc}"
        self.queued_at = time.monotonic()

    def outcome(self, store: Any) -> DemoDownlink:
        node = self.node
        base = DemoDownlink(node.name, node.dev_eui, dict(DEMO_DOWNLINK))
        if not self.item_id:
            return _replace(base, note=self.note or "the node sent no uplink to answer (it never got on the network)")
        transmitted = any(
            e.kind == "txack" and e.message.queue_item_id == self.item_id for e in self.sim.events_of("txack")
        )
        applied = next((line for t, line in node.downlinks_applied if t >= (self.queued_at or 0)), "")
        reflected = None
        if applied:
            applied_at = next(t for t, line in node.downlinks_applied if line == applied)
            after = [t for t in node.uplink_times if t > applied_at]
            if after:
                values = [r.reading.value for r in store.readings(node.dev_eui, "interval", limit=10000)]
                # the uplinks after the downlink are the newest len(after) of them
                reflected = values[-len(after)] if len(values) >= len(after) else None
        note = ""
        if not transmitted:
            note = "queued, but the node sent no uplink after it to open a receive window"
        elif not applied:
            note = "transmitted, but the node did not report applying it"
        elif reflected is None:
            note = "applied; the node sent no uplink after it before the demo ended"
        return _replace(base, queued=True, transmitted=transmitted, applied=applied, reflected=reflected,
                        note=note)


# The update demo's pace: node time runs 10 times real time (receive windows of 100 ms real), every
# node reports once a minute of node time, so ChirpStack's steps (one Class A uplink each) and the
# Class C session (fragments 5 s apart, ChirpStack's default margin) fit in a few minutes.
_UPDATE_SCALE = 10.0
_UPDATE_INTERVAL_S = 60
_UPDATE_REDUNDANCY = 100  # % : the dropped fragments, those a node misses while it sends, and the margin the
# random parity matrix needs (at 50 % one node in a few runs could not rebuild its block)


class _UpdateRun:
    """The demo's update over the air: the signed package, the provisioning, the deployments, the outcome."""

    def __init__(self, package: bytes, pub: bytes, base: str, target: str, fragment_loss: float) -> None:
        self.package = package
        self.pub = pub
        self.base = base
        self.target = target
        self.fragment_loss = fragment_loss
        self.deployments: list[str] = []
        self.done_at: float | None = None
        self.fleet: VirtualFleet | None = None
        self.sim: NetworkServerSim | None = None
        self.runner: Any = None
        self.client: Any = None
        self.app_id = ""

    @classmethod
    def prepare(cls, work: Path, fragment_loss: float) -> _UpdateRun:
        """A signing key pair, the two app trees and the package between them (``citynode fuota keygen``
        and ``build``'s code)."""
        from gateway.field import fuota
        from gateway.field.firmware_build import built_firmware
        from gateway.sim.fuota_update import update_trees

        work.mkdir(parents=True, exist_ok=True)
        key_path, pub_path = fuota.write_keypair(work / "city")
        base, target = update_trees(built_firmware(), work)
        package = fuota.build_package(base, target, fuota.load_private_key(key_path))
        (work / "app.cnup").write_bytes(package)
        return cls(package, fuota.load_public_key(pub_path), fuota.tree_version(base, None),
                   fuota.tree_version(target, None), fragment_loss)

    def provision(self, fleet: VirtualFleet, sim: NetworkServerSim, chirpstack: Any, token: str,
                  console: Console) -> None:
        """The application, the role profiles (TS003/TS004/TS005) and the devices with their keys in the
        API simulator; the FUOTA runner joined to both simulators."""
        from gateway.field.chirpstack_client import ChirpStackClient
        from gateway.sim.chirpstack import DEFAULT_TENANT_ID
        from gateway.sim.fuota_update import provision_fleet
        from gateway.sim.nssim.fuota import FuotaRunner

        self.fleet, self.sim = fleet, sim
        self.client = ChirpStackClient(chirpstack.address, token)
        self.app_id = provision_fleet(self.client, fleet, DEFAULT_TENANT_ID, name="citynode-demo")
        # steps wait 4 node uplink intervals (real s: room for a loaded machine); the session starts 3 intervals after its setup
        self.runner = FuotaRunner(
            chirpstack.state, sim, uplink_interval_s=4.0 * _UPDATE_INTERVAL_S / _UPDATE_SCALE,
            session_lead_s=3.0 * _UPDATE_INTERVAL_S, fragment_spacing_s=5.0, fragment_loss=self.fragment_loss,
            seed=fleet.run_id, node_time_scale=_UPDATE_SCALE, exact_loss=True,
            on_event=lambda line: console.print(line, highlight=False),
        ).attach()

    def step(self) -> None:
        """Deploy once every node has sent an uplink (it is on the network); note when all is done."""
        assert self.fleet is not None and self.sim is not None
        if not self.deployments:
            if all(self.sim.events_of("up", n.dev_eui) for n in self.fleet.nodes):
                from gateway.field import fuota_deploy

                devices = list(self.client.list_devices(self.app_id))
                made = fuota_deploy.deploy(self.client, self.package, self.app_id, devices,
                                           redundancy_pct=_UPDATE_REDUNDANCY, target=self.target)
                self.deployments = [dep for dep, _profile, _n in made]
            return
        if self.done_at is None and self._all_updated():
            self.done_at = time.monotonic()

    def _all_updated(self) -> bool:
        from gateway.sim.fuota_update import device_status

        assert self.fleet is not None and self.sim is not None
        with self.runner.state.lock:
            complete = all(self.runner.state.fuota[d].completed_at is not None for d in self.deployments)
        return complete and all(device_status(self.sim, n.dev_eui).get("firmware") == self.target
                                for n in self.fleet.nodes)

    def finished(self) -> bool:
        """Every deployment complete and every node reporting the new version, one cycle ago (so that
        the live view shows uplinks of the new version)."""
        return self.done_at is not None and time.monotonic() - self.done_at > _UPDATE_INTERVAL_S / _UPDATE_SCALE

    def outcome(self) -> list[NodeUpdate]:
        from gateway.field import fuota_deploy
        from gateway.sim.fuota_update import device_status

        assert self.fleet is not None and self.sim is not None
        results: dict[str, str] = {}
        sent: dict[str, int] = {}
        dropped: dict[str, int] = {}
        for dep in self.deployments:
            for d in fuota_deploy.status(self.client, dep).devices:
                results[d.dev_eui] = d.result
            s, x = self.runner.fragments_sent(dep)
            sent.update(s)
            dropped.update(x)
        out = []
        for n in self.fleet.nodes:
            st = device_status(self.sim, n.dev_eui)
            out.append(NodeUpdate(n.name, n.dev_eui, n.role, results.get(n.dev_eui, "not deployed"),
                                  str(st.get("firmware", "")), str(st.get("update", "")), n.reboots,
                                  sent.get(n.dev_eui, 0), dropped.get(n.dev_eui, 0), self.target))
        return out

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()

    def close_client(self) -> None:
        if self.client is not None:
            self.client.close()


def _replace(d: DemoDownlink, **changes: Any) -> DemoDownlink:
    from dataclasses import replace

    return replace(d, **changes)


async def run_demo(
    *, minutes: float = 1.0, nodes: int = 20, mqtt_url: str | None = None, keep: Path | None = None,
    console: Console | None = None, live: bool = True, on_tick: Callable[[float], None] | None = None,
    heapsize: str | None = None, fuota: bool = False, fragment_loss: float = 0.1,
) -> DemoResult:
    """Run the chain for ``minutes`` (Ctrl-C stops it early) and return what it measured.

    ``fuota``: update the fleet over the air (see the module text), with ``fragment_loss`` of the
    multicast fragments dropped; the run then ends once every node runs the new version (``minutes``
    is the limit).

    ``heapsize`` overrides the nodes' MicroPython heap (tests: a node that runs out of memory).
    Without ``keep`` everything is written to a temporary directory that is removed before returning
    (the result's ``store_path`` then names where it was).
    """
    console = console or Console()
    root = keep or Path(tempfile.mkdtemp(prefix="citynode-demo-"))
    try:
        return await _run(minutes, nodes, mqtt_url, root, keep is not None, console, live, on_tick, heapsize,
                          fragment_loss if fuota else None)
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


async def _run(
    minutes: float, nodes: int, mqtt_url: str | None, root: Path, kept: bool, console: Console, live: bool,
    on_tick: Callable[[float], None] | None, heapsize: str | None, fragment_loss: float | None,
) -> DemoResult:
    from gateway.sim.chirpstack import ChirpStackSimulator

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
    api_token = secrets.token_hex(16)
    with ChirpStackSimulator(token=api_token) as chirpstack:
        async with GatewayService(config) as service:
            sink = (MqttDelivery(mqtt_url) if mqtt_url else
                    HttpDelivery(f"http://127.0.0.1:{http_port}/chirpstack",
                                 headers={"Authorization": f"Bearer {token}"}))
            ns_port = _free_port()
            update: _UpdateRun | None = None
            if fragment_loss is not None:
                update = await asyncio.to_thread(_UpdateRun.prepare, root / "update", fragment_loss)
                fleet = VirtualFleet(root / "fleet", nodes, ns_port, time_scale=_UPDATE_SCALE,
                                     update_pub=update.pub, interval_s=_UPDATE_INTERVAL_S, heapsize=heapsize)
            else:
                fleet = (VirtualFleet(root / "fleet", nodes, ns_port) if heapsize is None
                         else VirtualFleet(root / "fleet", nodes, ns_port, heapsize=heapsize))
            devices = [device_from_mapping(entry, f"node {i}") for i, entry in enumerate(fleet.registry())]
            sim = NetworkServerSim(devices, port=ns_port, sinks=[sink])
            sim.sinks.append(connect_api_queue(chirpstack.state, sim))
            downlink = None
            if update is not None:
                await asyncio.to_thread(update.provision, fleet, sim, chirpstack, api_token, console)
            else:
                downlink = _DownlinkRun(fleet, sim, chirpstack.address, api_token)
                await asyncio.to_thread(downlink.provision)
            async with sim:
                console.print(
                    f"[bold]citynode demo[/]: {nodes} virtual nodes (the real firmware on the MicroPython unix "
                    f"port), network-server simulator on UDP {ns_port}, ChirpStack API simulator on "
                    f"{chirpstack.address}, gateway on http://127.0.0.1:{http_port} (status page /, API "
                    f"/api/overview), store {root if kept else 'in a temporary directory (removed at the end)'}")
                await asyncio.to_thread(fleet.prepare)
                fleet.start()
                deadline = started + minutes * 60
                assert service.store is not None
                interrupted = False
                verdicts: list[NodeVerdict] = []

                def tick() -> None:
                    if downlink is not None:
                        downlink.step()
                    if update is not None:
                        update.step()
                    if on_tick:
                        on_tick(time.monotonic() - started)

                def going() -> bool:
                    return time.monotonic() < deadline and (update is None or not update.finished())

                try:
                    if live:
                        view = LiveView(service.store, title="citynode demo: what the gateway stored")
                        with Live(_view(view, fleet, sim, started), console=console,
                                  refresh_per_second=2, transient=False) as screen:
                            while going():
                                await asyncio.sleep(1.0)
                                screen.update(_view(view, fleet, sim, started))
                                await asyncio.to_thread(tick)
                    else:
                        while going():
                            await asyncio.sleep(1.0)
                            await asyncio.to_thread(tick)
                except asyncio.CancelledError:  # Ctrl-C: stop everything cleanly, then report
                    interrupted = True
                finally:
                    verdicts = fleet.verdicts()
                    await asyncio.to_thread(fleet.stop)
                    if update is not None:
                        update.close()
            await asyncio.sleep(1.0)  # the last events reach the store
            counts = service.store.counts()
            report = summary(service.store)
            outcome = downlink.outcome(service.store) if downlink is not None else None
            updates: tuple[NodeUpdate, ...] = ()
            if update is not None:
                updates = tuple(await asyncio.to_thread(update.outcome))
                update.close_client()
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
        verdicts=tuple(verdicts),
        downlink=outcome,
        kept=kept,
        updates=updates,
        update_versions=(update.base, update.target) if update is not None else ("", ""),
    )
