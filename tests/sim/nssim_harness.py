"""Test harness for the network-server simulator.

``SimNode``: gateway.sim.nssim.node.VirtualNode (the real ClassA MAC on the MicroPython unix port) with the
test device's keys; ``PyDevice``: a hand-driven device on CPython for frame-level tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.sim.nssim import DeviceKeys, device_from_mapping
from gateway.sim.nssim.node import SCALE, VirtualNode, build_node_lib

KEYS = device_from_mapping({
    "dev_eui": "70b3d57ed0060001",
    "join_eui": "70b3d57ed0000000",
    "app_key": "2b7e151628aed2a6abf7158809cf4f3c",
    "name": "aq-test-1",
    "role": "air_quality",
})


def compile_firmware(out: Path) -> Path:
    """The firmware as deployed (.mpy, gateway.field.firmware_build); returns its lib directory."""
    return build_node_lib(out)


class SimNode(VirtualNode):
    """The test node: a VirtualNode with the test device's keys by default."""

    def __init__(self, lib: Path, port: int, keys: DeviceKeys = KEYS, **kwargs: Any) -> None:
        super().__init__(lib, port, keys, **kwargs)


class PyDevice:
    """A hand-driven device on CPython for frame-level tests: it builds frames with the firmware's
    ``frames`` module and talks through the same UdpRadio (which runs on CPython too)."""

    def __init__(self, port: int, keys: DeviceKeys = KEYS, scale: int = SCALE) -> None:
        from gateway.sim.nssim._firmware import udp

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
        from gateway.sim.nssim._firmware import crypto, frames

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
        from gateway.sim.nssim._firmware import frames

        phy = frames.build_uplink(nwk_skey or self.nwk_skey, self.app_skey, self.dev_addr, fcnt, fport, data, fopts,
                                  confirmed, adr=False)
        return self.listen(self.transmit(phy), 1000)

    def close(self) -> None:
        self.radio.close()
