"""A virtual node for the simulator: the real citynode LoRaWAN MAC on the MicroPython unix port.

:class:`VirtualNode` starts ``micropython`` running :file:`mp_node.py` (``citynode.lorawan.mac.ClassA``
over ``citynode_sim.udp.UdpRadio``, with the firmware compiled to ``.mpy`` by
:func:`gateway.field.firmware_build.build_firmware`, as a node runs it) and drives it over stdin/stdout, one
JSON command and one JSON answer per line: ``join``, ``send``, ``link_check``, ``device_time``,
``radio`` and ``state`` (see mp_node.py for the fields). Used by the tests, HIL rigs and the demo.
"""

from __future__ import annotations

import json
import selectors
import subprocess
from pathlib import Path
from typing import Any

from gateway.errors import CitynodeError
from gateway.field.micropython import find_micropython, interpreter, micropython_env, node_heap
from gateway.sim.nssim.registry import DeviceKeys

__all__ = ["VirtualNode", "NodeError", "build_node_lib", "NODE_PROGRAM", "HEAP_64BIT", "SCALE", "SKIP_MS"]

NODE_PROGRAM = Path(__file__).with_name("mp_node.py")
# The 64-bit unix port (PyPI): every object word is 8 bytes where an ESP32 has 4, so the same program
# needs about twice the heap; 192 KiB there stands for the ESP32's 96 KiB. On the 32-bit builds of
# `make firmware-unix` a node gets gateway.field.micropython.node_heap() (64k with citynode frozen in).
HEAP_64BIT = "192k"
# Default time scale: one real ms is 20 node ms, so RECEIVE_DELAY1 (1 s) passes in 50 ms and the 5 s
# join-accept delay in 250 ms; waits longer than 1.5 node-s (duty-cycle off-times, join back-off, the
# join-accept delay) sleep 75 real ms and jump the node clock over the rest.
SCALE = 20
SKIP_MS = 1500


class NodeError(CitynodeError):
    """The node process did not answer, exited, or printed something that is not a JSON line."""


def build_node_lib(out: Path) -> Path:
    """The firmware as deployed on the virtual device (``.mpy`` tree with ``citynode_sim``, see
    gateway.field.firmware_build) under ``out``; returns its lib/."""
    from gateway.field.firmware_build import build_firmware

    build_firmware(out, sim=True)
    return out / "lib"


class VirtualNode:
    """One MicroPython node process talking to the simulator on UDP ``port``.

    ``lib``: the compiled firmware lib (:func:`build_node_lib`). ``keys``: its OTAA identity
    (``app_key`` overrides the key the node uses, to rehearse a wrong AppKey). ``scale`` / ``skip_ms``:
    the node's VirtualClock. ``extra``: more node config (``adr_ack_limit``, ``adr_ack_delay``, ``rssi``,
    ``snr``). Answers are dicts; a MAC exception comes back as ``{"exception": "Name: message", ...}``.
    """

    def __init__(self, lib: Path, port: int, keys: DeviceKeys, *, app_key: bytes | None = None,
                 scale: int = SCALE, skip_ms: int | None = SKIP_MS, heap: str | None = None,
                 timeout_s: float = 60.0, **extra: Any) -> None:
        cfg = {"port": port, "dev_eui": keys.dev_eui, "join_eui": keys.join_eui,
               "app_key": (app_key or keys.app_key).hex(), "scale": scale, "skip_ms": skip_ms, **extra}
        self.name = keys.name or keys.dev_eui
        self.timeout_s = timeout_s
        if heap is None:
            heap = HEAP_64BIT if interpreter().bits == 64 else node_heap()
        env = micropython_env([lib])
        env["MICROPYPATH"] = ".frozen:" + env["MICROPYPATH"]  # a frozen citynode first, as on an ESP32
        self.proc = subprocess.Popen(
            [find_micropython(), "-X", f"heapsize={heap}", str(NODE_PROGRAM)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.transcript: list[str] = []
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self._write(cfg)
        ready = self._read(timeout_s)
        if ready != {"ready": True}:
            raise NodeError(f"node {self.name}: unexpected first line {ready!r}")

    def _write(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        line = json.dumps(obj)
        self.transcript.append("> " + line)
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise NodeError(self._failure("exited")) from None

    def _failure(self, what: str) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        return f"node {self.name} {what}; transcript:\n" + "\n".join(self.transcript[-20:]) + "\nstderr:\n" + err

    def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if not self._sel.select(timeout_s):
            raise NodeError(self._failure(f"gave no answer in {timeout_s} s"))
        line = self.proc.stdout.readline()
        if not line:
            raise NodeError(self._failure("exited"))
        self.transcript.append("< " + line.rstrip())
        try:
            return json.loads(line)
        except ValueError:
            raise NodeError(self._failure("printed a non-JSON line (a MicroPython traceback?)")) from None

    def cmd(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one command, return the node's answer (its session state plus the command's result)."""
        self._write({"op": op, **args})
        return self._read(self.timeout_s)

    def join(self, attempts: int = 1) -> dict[str, Any]:
        return self.cmd("join", attempts=attempts)

    def send(self, port: int, data: bytes, confirmed: bool = False) -> dict[str, Any]:
        return self.cmd("send", port=port, hex=bytes(data).hex(), confirmed=confirmed)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._write({"op": "quit"})
                self.proc.wait(5)
            except (NodeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        self._sel.close()

    def __enter__(self) -> VirtualNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
