"""A virtual fleet: real citynode nodes on the MicroPython unix port, on the air through the simulator.

Each node is the node firmware as flashed (mpy-cross compiled), running ``main.py`` in its own
filesystem directory with the ``sim`` board: simulated sensors, and the software LoRaWAN MAC over the
UDP virtual radio to the network-server simulator (:mod:`gateway.nssim`). Keys are generated per node,
like ``citynode provision`` does. Time on the nodes runs ``pace`` times faster than real time between
cycles, so a demo shows hours of a city in minutes; receive windows are sped up by ``time_scale``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.device_run import prepare_fs
from gateway.firmware_build import built_firmware
from gateway.micropython import find_micropython, node_heap

__all__ = ["FleetNode", "VirtualFleet", "DEFAULT_MIX"]

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
    process: subprocess.Popen[str] | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    uplinks: int = 0

    @property
    def keys(self) -> dict[str, str]:
        return {"dev_eui": self.dev_eui, "join_eui": self.join_eui, "app_key": self.app_key}

    def registry_entry(self) -> dict[str, object]:
        """The simulator's device entry (the same fields as a provisioning bundle)."""
        return {**self.keys, "name": self.name, "role": self.role,
                "tags": {"role": self.role, "lat": f"{self.lat:.6f}", "lon": f"{self.lon:.6f}"}}


class VirtualFleet:
    """Start, watch and stop a fleet of virtual nodes talking to a simulator on ``ns_port``."""

    def __init__(
        self, root: Path, count: int, ns_port: int, *, roles: Iterable[str] = DEFAULT_MIX,
        pace: float = 120.0, time_scale: float = 5.0, heapsize: str | None = None, seed: int = 1,
    ) -> None:
        self.root = root
        self.ns_port = ns_port
        self.pace = pace
        self.time_scale = time_scale
        self.heapsize = heapsize  # None: each node gets its role's node_heap() (64k on the 32-bit frozen build)
        mix = list(roles)
        self.nodes: list[FleetNode] = []
        for i in range(count):
            role = mix[i % len(mix)]
            lat, lon = _PLACES[i % len(_PLACES)]
            self.nodes.append(FleetNode(
                name=f"{_NAMES[role]}-{i // len(mix) + 1}", role=role,
                dev_eui=f"70b3d57ed0{seed:02x}{i:04x}", join_eui="0000000000000000",
                app_key=secrets.token_hex(16), fs=root / f"node-{i:02d}",
                lat=round(lat + 0.002 * (i % 7), 6), lon=round(lon + 0.003 * (i % 5), 6),
            ))
        self._threads: list[threading.Thread] = []

    def registry(self) -> list[dict[str, object]]:
        return [node.registry_entry() for node in self.nodes]

    def prepare(self) -> None:
        """Write every node's filesystem: config.json with its keys, board.json, sim.json."""
        for i, node in enumerate(self.nodes):
            prepare_fs(node.fs, node.role, seed=i + 1, config={**node.keys, "start_delay_max": 5})
            sim = json.loads((node.fs / "sim.json").read_text())
            sim.update(network={"port": self.ns_port}, time_scale=self.time_scale, skip_ms=1500, pace=self.pace)
            sim.pop("cycles", None)  # run until stopped
            (node.fs / "sim.json").write_text(json.dumps(sim))

    def start(self) -> None:
        tree = built_firmware()
        env = dict(os.environ, MICROPYPATH=f".frozen:{tree / 'lib'}")  # frozen modules first, as on an ESP32
        for node in self.nodes:
            node.process = subprocess.Popen(
                [find_micropython(), "-X", f"heapsize={self.heapsize or node_heap(node.role)}", str(tree / "main.py")],
                cwd=node.fs, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            thread = threading.Thread(target=self._read, args=(node,), daemon=True)
            thread.start()
            self._threads.append(thread)

    @staticmethod
    def _read(node: FleetNode) -> None:
        assert node.process and node.process.stdout
        for line in node.process.stdout:
            line = line.rstrip("\n")
            node.lines.append(line)
            if line.startswith("uplink fport="):
                node.uplinks += 1

    def running(self) -> int:
        return sum(1 for n in self.nodes if n.process is not None and n.process.poll() is None)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after a grace period)."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
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
