"""Run the node firmware on the MicroPython unix port as a virtual device with simulated peripherals.

A scratch directory plays the node's flash: ``config.json`` (role, board ``sim``), ``board.json`` from
``boards/sim.json`` and ``sim.json``, the scenario: a seed and scripted sensor values (see
``gateway/sim/mpy/citynode_sim/simdev.py``), scripted downlinks, the number of cycles. The firmware runs
as a flashed node runs it: compiled by mpy-cross (``build/vdev-firmware``, rebuilt when ``firmware/``
changes), with ``-X heapsize=96k`` by default (:data:`VIRTUAL_DEVICE_HEAP`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.field.firmware_build import built_firmware
from gateway.field.micropython import find_micropython, node_heap
from gateway.paths import boards_dir
from gateway.sim.simhost import SimHost

__all__ = ["DeviceRun", "prepare_fs", "run_device", "stream_lorawan_device"]

ROLES = ("air_quality", "bin_fill", "passenger_count", "crowd_count")
# Every role runs 1000 cycles in the 96 KB an ESP32 app has (bench/RESULTS.md, firmware heap: smallest
# heaps 86-87 KB; the sim board's peripherals are simulated in this process, gateway/sim/simhost.py);
# crowd_count carries 5.3 KB of anonymiser sets. The unix port is 64-bit (objects take about twice the bytes)
# and keeps the firmware's bytecode and names in RAM, which an ESP32 build with the app frozen into
# flash (firmware/manifest.py) does not.
VIRTUAL_DEVICE_HEAP = "96k"

@dataclass
class DeviceRun:
    """What one run printed, split into uplinks and other lines."""

    lines: list[str] = field(default_factory=list)
    returncode: int = 0
    stderr: str = ""

    @property
    def uplinks(self) -> list[tuple[int, bytes]]:
        out = []
        for line in self.lines:
            if line.startswith("uplink fport="):
                parts = dict(p.split("=", 1) for p in line.split()[1:])
                out.append((int(parts["fport"]), bytes.fromhex(parts["hex"])))
        return out


def prepare_fs(
    fs: Path, role: str, *, board: str = "sim", cycles: int | None = None, seed: int = 1,
    values: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
    downlinks: list[dict[str, Any]] | None = None, heap_report: bool = False, lorawan: bool = False,
    modem_faults: dict[str, int] | None = None,
) -> Path:
    """Write config.json, board.json and sim.json for a virtual node into ``fs``.

    ``lorawan``: give the node OTAA keys (derived from ``seed``, so runs repeat byte for byte) for
    :func:`stream_lorawan_device`; without it the node uses the console link. ``modem_faults``: on a
    board with an AT modem (``sim_rak3172``, ``sim_wio_e5``), faults its simulator plays
    (:class:`gateway.sim.modems.ModemFaults`: ``busy``, ``no_network``, ``param_error`` counts)."""
    if role not in ROLES:
        raise ConfigError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    board_file = boards_dir() / f"{board}.json"
    if not board_file.exists():
        known = ", ".join(sorted(p.stem for p in boards_dir().glob("*.json")))
        raise ConfigError(f"board: no boards/{board}.json (known: {known})")
    fs.mkdir(parents=True, exist_ok=True)
    cfg = {"role": role, "board": board, "start_delay_max": 0, "dev_eui": f"{seed:016x}"}
    if lorawan:
        cfg.update(join_eui="70b3d57ed0001000",
                   app_key=hashlib.sha256(b"citynode device run %d" % seed).hexdigest()[:32])
    cfg.update(config or {})
    (fs / "config.json").write_text(json.dumps(cfg))
    (fs / "board.json").write_text(board_file.read_text())
    sim = {"seed": seed, "values": values or {}, "downlinks": downlinks or [], "heap_report": heap_report}
    if cycles is not None:
        sim["cycles"] = cycles
    if modem_faults:
        sim["modem"] = dict(modem_faults)
    (fs / "sim.json").write_text(json.dumps(sim))
    return fs


# With a ROMFS image: mount it as an ESP32's _boot.py mounts its romfs partition, its lib first on the
# path, then run main.py. romfs_host (tests/firmware/unix32/romfs_host, in `make firmware-unix`'s
# builds) maps the image outside the heap, as esp_partition_mmap maps the partition.
_ROMFS_BOOT = ("import sys, vfs, romfs_host\nvfs.mount(vfs.VfsRom(romfs_host.map(%r)), '/rom')\n"
               "sys.path.insert(0, '/rom/lib')\nexec(open(%r).read())\n")


def stream_device(fs: Path, *, heapsize: str = VIRTUAL_DEVICE_HEAP, timeout: float = 600.0,
                  romfs: Path | None = None, main: Path | None = None,
                  interpreter: Path | None = None) -> Iterator[str]:
    """Run the compiled firmware's main.py in ``fs`` and yield its output lines as they come.

    ``romfs``: a ROMFS image of the device package (:func:`gateway.field.firmware_build.build_romfs`)
    mounted at /rom and imported from in place (needs a `make firmware-unix` build). ``main``: a
    script run instead of main.py (bench/heap_census.py, which measures what the heap holds).
    ``interpreter``: this MicroPython instead of :func:`find_micropython`'s (so that nodes on different
    interpreters can run at once without touching the environment)."""
    tree = built_firmware()
    env = dict(os.environ)
    env["MICROPYPATH"] = f".frozen:{tree / 'lib'}"  # as on an ESP32: frozen modules first
    entry = str(main or tree / "main.py")
    script = ["-c", _ROMFS_BOOT % (str(romfs), entry)] if romfs else [entry]
    with SimHost.for_fs(fs) as host:  # the sim board's peripherals, served to the firmware from here
        env.update(host.env)
        proc = subprocess.Popen(
            [str(interpreter or find_micropython()), "-X", f"heapsize={heapsize}", *script],
            cwd=fs, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            pass_fds=host.pass_fds,
        )
        host.start()
        assert proc.stdout
        try:
            for line in proc.stdout:
                yield line.rstrip("\n")
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode:
        yield f"exit status {proc.returncode}"


# The node's receive windows run this much faster than real time on the virtual radio (as in the fleet
# and the HIL tests); skip_ms: virtual time skipped when the node waits longer (sleep between cycles).
LORAWAN_TIME_SCALE = 5
LORAWAN_SKIP_MS = 1500


def stream_lorawan_device(
    fs: Path, *, heapsize: str | None = None, timeout: float = 600.0,
    downlinks: list[tuple[int, bytes]] = (),  # type: ignore[assignment]
    time_scale: int = LORAWAN_TIME_SCALE, romfs: Path | None = None, main: Path | None = None,
    interpreter: Path | None = None,
) -> Iterator[str]:
    """Run the node prepared in ``fs`` (``prepare_fs(..., lorawan=True)``) over the real LoRaWAN link:
    citynode's MAC on the UDP virtual radio, or on an AT-modem board the simulated modem's own stack
    (:mod:`gateway.sim.modems`), to a network-server simulator (:mod:`gateway.sim.nssim`, OTAA join,
    ADR) started here on a free port and stopped when the run ends. ``heapsize``: by default
    the role's budget on the chosen interpreter (:func:`gateway.field.micropython.node_heap`). ``downlinks``
    ((fport, data), e.g. a config message) are queued for the node's first uplinks. The last line is
    ``network joins=J uplinks=U downlinks=D`` as the simulator counted them. ``romfs``, ``main``,
    ``interpreter``: as for :func:`stream_device`."""
    from gateway.sim.nssim import NetworkServerSim
    from gateway.sim.nssim.registry import DeviceKeys

    cfg = json.loads((fs / "config.json").read_text())
    if not cfg.get("app_key"):
        raise ConfigError("config.json: no app_key (prepare the node with lorawan=True)")
    eui = cfg["dev_eui"].lower()
    keys = DeviceKeys(dev_eui=eui, join_eui=cfg["join_eui"].lower(), app_key=bytes.fromhex(cfg["app_key"]),
                      name="device-run", role=cfg["role"])
    server = NetworkServerSim([keys], port=0)
    handle = server.run_in_thread()
    try:
        scenario = json.loads((fs / "sim.json").read_text())
        scenario.update(network={"port": server.port}, time_scale=time_scale, skip_ms=LORAWAN_SKIP_MS)
        (fs / "sim.json").write_text(json.dumps(scenario))
        for fport, data in downlinks:
            server.queue_downlink(eui, fport, data)
        yield from stream_device(fs, heapsize=heapsize or node_heap(cfg["role"]), timeout=timeout,
                                 romfs=romfs, main=main, interpreter=interpreter)
        yield (f"network joins={len(server.events_of('join', eui))} uplinks={len(server.events_of('up', eui))} "
               f"downlinks={len(server.events_of('txack', eui))}")
    finally:
        handle.stop()


def run_device(role: str, cycles: int, fs: Path | None = None, **kwargs: Any) -> DeviceRun:
    """Prepare a virtual node and run ``cycles`` cycles; returns what it printed."""
    heapsize = kwargs.pop("heapsize", VIRTUAL_DEVICE_HEAP)
    romfs = kwargs.pop("romfs", None)
    with tempfile.TemporaryDirectory(prefix="citynode-device-") as tmp:
        root = fs or Path(tmp)
        prepare_fs(root, role, cycles=cycles, **kwargs)
        lines = list(stream_device(root, heapsize=heapsize, romfs=romfs))
    code = 0
    if lines and lines[-1].startswith("exit status "):
        code = int(lines.pop().split()[-1])
    return DeviceRun(lines=lines, returncode=code)
