"""A virtual fleet: real citynode nodes on the MicroPython unix port, on the air through the simulator.

Each node is the node firmware as flashed (mpy-cross compiled), running ``main.py`` in its own
filesystem directory with the ``sim`` board: simulated sensors (served from this process by a
:class:`~gateway.sim.simhost.SimHost` per node, as for ``citynode device run``), and the software LoRaWAN
MAC over the UDP virtual radio to the network-server simulator (:mod:`gateway.sim.nssim`). Every node runs
at its role's heap budget (:func:`gateway.field.micropython.node_heap`: 64 KB on the 32-bit frozen build),
nothing added. Keys are generated per node,
like ``citynode provision`` does. Time on the nodes runs ``pace`` times faster than real time between
cycles, so a demo shows hours of a city in minutes; receive windows are sped up by ``time_scale``.

A fleet made ready for updates over the air (``update_pub``, the public key of ``citynode fuota
keygen``) is provisioned as ``citynode provision --update-key`` provisions one: every node gets a
GenAppKey (``gen_app_key``, in its config and in :meth:`VirtualFleet.registry`, from which the API
simulator's device keys are made) and the update key (``fuota_pub``). Its nodes run their app from the
filesystem (``lib/``, the tree an update's slot copies; a frozen app cannot be copied) on the 32-bit
build without citynode frozen in (``build/micropython-unix32-stock``, ``make firmware-unix``) at
:data:`UPDATE_HEAP` (a plain node measures 146-149 KB there, the FUOTA side comes on top of it: at 160 KB
the nodes run out of memory importing it after the join; docs/design/fuota.md), on a **steady** clock (``time_scale`` times real time, also between cycles and across a reboot:
the network server times the Class C fragments by it), and a node that reboots (``machine.reset()``
after an install, exit 64; a rollback, exit 3) is started again, as a board restarts.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import ConfigError
from gateway.field.firmware_build import built_firmware
from gateway.field.micropython import find_micropython, node_heap
from gateway.field.provision import ROLE_SETTINGS
from gateway.paths import repo_root
from gateway.sim.device_run import prepare_fs
from gateway.sim.simhost import SimHost

__all__ = ["FleetNode", "NodeVerdict", "VirtualFleet", "DEFAULT_MIX", "UPDATE_HEAP", "update_interpreter"]

UPDATE_HEAP = "192k"  # a node ready for updates on the 32-bit build, app bytecode in the heap (measured)


def update_interpreter() -> Path:
    """The interpreter of a fleet ready for updates: the 32-bit build without citynode frozen in."""
    path = repo_root() / "build" / "micropython-unix32-stock" / "micropython"
    if not path.exists():
        raise ConfigError(f"{path} is missing: run `make firmware-unix` (nodes that take updates run their "
                          "app from the filesystem on the 32-bit build)")
    return path

# The four programmes in the proportions a city rolls them out in.
DEFAULT_MIX = ("air_quality", "bin_fill", "passenger_count", "crowd_count")
_NAMES = {"air_quality": "aq", "bin_fill": "bin", "passenger_count": "bus", "crowd_count": "crowd"}
# Gelsenkirchen: node positions for tags (the city centre, Buer, the arena, the harbour...).
_PLACES = ((51.5177, 7.0857), (51.5781, 7.0568), (51.5546, 7.0676), (51.5076, 7.0987), (51.5337, 7.1093))


@dataclass
class FleetNode:
    """One virtual node: its identity, its filesystem and (while running) its process and output."""

    name: str
    role: str
    dev_eui: str
    join_eui: str
    app_key: str
    fs: Path
    lat: float
    lon: float
    interval_s: int = 900  # its configured uplink interval, node time (written into config.json)
    process: subprocess.Popen[str] | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    uplinks: int = 0
    started_at: float | None = None  # time.monotonic() of the start, of "joined", of each uplink line
    joined_at: float | None = None
    uplink_times: list[float] = field(default_factory=list)
    exit_code: int | None = None  # set when the node ended by itself (crash, MemoryError), not by stop()
    ended_at: float | None = None
    last_error: str = ""  # the last line that looked like an error (a traceback's last line)
    downlinks_applied: list[tuple[float, str]] = field(default_factory=list)  # ("downlink applied: ..." lines)
    gen_app_key: str = ""  # FUOTA (TS003/TS004/TS005 key derivation), "" when not provisioned for updates
    reboots: int = 0  # restarts after machine.reset() (an update installed) or a rollback
    updates: list[str] = field(default_factory=list)  # the node's "update ..." / "rolled back" lines

    @property
    def keys(self) -> dict[str, str]:
        return {"dev_eui": self.dev_eui, "join_eui": self.join_eui, "app_key": self.app_key}

    def registry_entry(self) -> dict[str, object]:
        """The simulator's device entry (the same fields as a provisioning bundle)."""
        # uplink_interval_s: the configured interval, as provisioning tags it (the status page's "silent").
        entry: dict[str, object] = {**self.keys, "name": self.name, "role": self.role}
        if self.gen_app_key:
            entry["gen_app_key"] = self.gen_app_key
        return {**entry,
                "tags": {"role": self.role, "lat": f"{self.lat:.6f}", "lon": f"{self.lon:.6f}",
                         "uplink_interval_s": str(self.interval_s)}}


@dataclass(frozen=True)
class NodeVerdict:
    """What one node should have sent in the time it ran, what it sent, and what went wrong (if anything)."""

    name: str
    dev_eui: str
    role: str
    expected: int  # uplinks its interval allows in the time it ran after joining (at least)
    sent: int
    problem: str  # "" when the node did its job; else "never joined", "crashed: ...", "stopped ..."

    @property
    def ok(self) -> bool:
        return not self.problem



class VirtualFleet:
    """Start, watch and stop a fleet of virtual nodes talking to a simulator on ``ns_port``."""

    def __init__(
        self, root: Path, count: int, ns_port: int, *, roles: Iterable[str] = DEFAULT_MIX,
        pace: float = 120.0, time_scale: float = 5.0, heapsize: str | None = None, seed: int | None = None,
        update_pub: bytes | None = None, interval_s: int | None = None,
    ) -> None:
        self.root = root
        self.ns_port = ns_port
        self.update_pub = update_pub  # provisioned for FUOTA: a GenAppKey per node, this update key
        self.steady = update_pub is not None
        self.pace = time_scale if self.steady else pace  # steady: one clock rate, cycles included
        self.time_scale = time_scale
        self.heapsize = heapsize  # None: each node gets its role's budget, node_heap(role)
        self.clock_epoch_ms = int(time.time() * 1000)  # node time 0 of a steady clock
        self._stopping = False
        mix = list(roles)
        self.nodes: list[FleetNode] = []
        # Fresh DevEUIs per fleet (a random 24-bit run number): two demo runs into one gateway stay
        # apart instead of merging into one device's history (and its FCnt health).
        self.run_id = secrets.randbits(24) if seed is None else seed
        for i in range(count):
            role = mix[i % len(mix)]
            lat, lon = _PLACES[i % len(_PLACES)]
            self.nodes.append(FleetNode(
                name=f"{_NAMES[role]}-{self.run_id:06x}-{i // len(mix) + 1}", role=role,
                dev_eui=f"70b3d5{self.run_id:06x}{i:04x}", join_eui="0000000000000000",
                app_key=secrets.token_hex(16), fs=root / f"node-{i:02d}",
                lat=round(lat + 0.002 * (i % 7), 6), lon=round(lon + 0.003 * (i % 5), 6),
                interval_s=interval_s or ROLE_SETTINGS[role].uplink_interval_s,
                gen_app_key=secrets.token_hex(16) if update_pub is not None else "",
            ))
        self._threads: list[threading.Thread] = []
        self._hosts: list[SimHost] = []

    def registry(self) -> list[dict[str, object]]:
        return [node.registry_entry() for node in self.nodes]

    def prepare(self) -> None:
        """Write every node's filesystem: config.json with its keys, board.json, sim.json."""
        for i, node in enumerate(self.nodes):
            config: dict[str, object] = {**node.keys, "start_delay_max": 5, "interval": node.interval_s}
            if self.update_pub is not None:
                config.update(gen_app_key=node.gen_app_key, fuota_pub=self.update_pub.hex())
            prepare_fs(node.fs, node.role, seed=i + 1, config=config)
            sim = json.loads((node.fs / "sim.json").read_text())
            sim.update(network={"port": self.ns_port}, time_scale=self.time_scale, skip_ms=1500, pace=self.pace)
            if self.steady:
                del sim["skip_ms"]
                sim["clock_epoch_ms"] = self.clock_epoch_ms
            sim.pop("cycles", None)  # run until stopped
            (node.fs / "sim.json").write_text(json.dumps(sim))

    def start(self) -> None:
        """Start every node: its interpreter at the node's heap budget, its sim board on a :class:`SimHost`.

        As in ``citynode device run`` and the heap tests, the sim board's simulators (sensors, transit,
        WiFi and BLE populations) run here, in CPython, behind ``citynode_sim.simlink``: run inside the
        node they took 7-15 KB of its heap that a real board never spends (issue 13), and every node of
        the demo ran out of memory at its budget.
        """
        self.tree = built_firmware()
        self.micropython = str(update_interpreter()) if self.steady else find_micropython()
        for node in self.nodes:
            self._spawn(node)
            node.started_at = time.monotonic()
            thread = threading.Thread(target=self._read, args=(node,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _spawn(self, node: FleetNode, reset_cause: str | None = None) -> None:
        tree = self.tree
        # Frozen modules first, as on an ESP32; a fleet ready for updates runs its app from lib/ (the
        # tree a slot copies), the frozen modules after it.
        path = f"{tree / 'lib'}:.frozen" if self.steady else f".frozen:{tree / 'lib'}"
        env = dict(os.environ, MICROPYPATH=path)
        if reset_cause:
            env["CITYNODE_RESET_CAUSE"] = reset_cause
        host = SimHost.for_fs(node.fs)
        self._hosts.append(host)
        node.process = subprocess.Popen(
            [self.micropython, "-X", f"heapsize={self.heap(node)}", str(tree / "main.py")],
            cwd=node.fs, env={**env, **host.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, pass_fds=host.pass_fds,
        )
        host.start()

    def heap(self, node: FleetNode) -> str:
        """The MicroPython heap ``node`` runs with: ``heapsize`` when given, else its role's budget on the
        chosen interpreter (:func:`gateway.field.micropython.node_heap`), nothing added; a fleet ready
        for updates: :data:`UPDATE_HEAP` on the 32-bit build without citynode frozen in."""
        if self.heapsize:
            return self.heapsize
        if self.steady:
            return UPDATE_HEAP
        return node_heap(node.role)

    def _read(self, node: FleetNode) -> None:
        while True:
            assert node.process and node.process.stdout
            for line in node.process.stdout:
                line = line.rstrip("\n")
                node.lines.append(line)
                if line.startswith("uplink fport="):
                    node.uplinks += 1
                    node.uplink_times.append(time.monotonic())
                elif line.startswith("downlink applied:"):
                    node.downlinks_applied.append((time.monotonic(), line))
                elif line == "joined" and node.joined_at is None:
                    node.joined_at = time.monotonic()
                elif line.startswith(("update ", "update:")):
                    node.updates.append(line)
                elif "Error" in line.split(":", 1)[0] or line.startswith("Traceback"):
                    node.last_error = line
            code = node.process.wait()
            # machine.reset() after an install (exit 64) or the unix port's reboot after a rollback
            # (exit 3): the board starts again (a fleet ready for updates only)
            if self.steady and not self._stopping and node.ended_at is None and code in (3, 64):
                node.reboots += 1
                self._spawn(node, "soft")
                continue
            break
        if node.ended_at is None:  # not stopped by stop(): the node ended by itself
            node.ended_at = time.monotonic()
            node.exit_code = code

    def running(self) -> int:
        return sum(1 for n in self.nodes if n.process is not None and n.process.poll() is None)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after a grace period)."""
        now = time.monotonic()
        self._stopping = True
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                if node.ended_at is None:
                    node.ended_at = now
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
        for thread in self._threads:
            thread.join(timeout=2)
        for node in self.nodes:  # a node restarted (after an update) just as the fleet was stopped
            if node.process is not None and node.process.poll() is None:
                node.process.kill()
                node.process.wait()
        for host in self._hosts:
            host.close()
        self._hosts.clear()

    def verdicts(self, end: float | None = None) -> list[NodeVerdict]:
        """Each node's verdict at ``end`` (time.monotonic(), default now; call it before :meth:`stop`).

        A node's node-clock runs ``pace`` times faster between cycles, so in ``t`` seconds after it
        joined it should send about ``t * pace / interval`` uplinks (one at once, then one per cycle).
        The expectation counted here is a floor, half of that: a cycle also spends real time on
        sensors and receive windows. A node has a problem when it never joined, ended by itself
        (crashed, out of memory), sent fewer than expected, or sent nothing for four cycles at the end.
        """
        end = time.monotonic() if end is None else end
        out = []
        for node in self.nodes:
            cycle_s = node.interval_s / self.pace
            ran = 0.0 if node.joined_at is None else max(0.0, min(end, node.ended_at or end) - node.joined_at)
            expected = int(ran / cycle_s / 2) if node.joined_at is not None else 1
            problem = ""
            if node.exit_code is not None:
                problem = f"crashed (exit {node.exit_code}{': ' + node.last_error if node.last_error else ''})"
            elif node.joined_at is None:
                problem = "never joined"
            elif node.uplinks < expected:
                problem = f"sent {node.uplinks} of at least {expected} expected"
            elif node.uplink_times and end - node.uplink_times[-1] > 4 * cycle_s + 10 and ran > 8 * cycle_s:
                problem = f"stopped: nothing for {end - node.uplink_times[-1]:.0f} s"
            elif not node.uplinks and ran > 2 * cycle_s + 10:
                problem = "joined but sent nothing"
            out.append(NodeVerdict(node.name, node.dev_eui, node.role, expected, node.uplinks, problem))
        return out

