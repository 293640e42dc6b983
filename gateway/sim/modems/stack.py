"""The LoRaWAN stack inside a simulated AT modem: citynode's Class A MAC (the code the nodes run,
``citynode.lorawan.mac``) on CPython over the UDP virtual radio (``citynode_sim.udp``) to the
network-server simulator. Nothing of LoRaWAN is written again here: joins, frame counters, MICs,
encryption, ADR and the RX1/RX2 windows are the MAC's.

Time: the modem's clock is a :class:`citynode_sim.udp.VirtualClock` (``time_scale`` node-ms per real ms,
long waits skipped) that never runs behind the node's own virtual clock: before each operation it is
brought forward to the node time the AT command arrived at, so duty-cycle time-offs expire while the
node sleeps between cycles, as on a real modem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.paths import firmware_module

__all__ = ["DEAD_PORT", "ModemStack", "SendResult"]

# Where a join goes when the simulated modem has no network (ModemFaults.no_network): a UDP port on
# 127.0.0.1 nobody listens on (port 9, "discard"), so the join request is sent and no accept comes.
DEAD_PORT = 9


@dataclass(frozen=True)
class SendResult:
    """What one uplink brought back: the downlink's port (None: none, or MAC commands only) and
    data, whether a confirmed uplink was acknowledged, the receive window (1 or 2), RSSI (dBm) and
    SNR (dB) of the downlink, and the data rate after any ADR change."""

    port: int | None
    data: bytes
    ack: bool
    window: int | None
    rssi_dbm: int | None
    snr_db: float | None
    fpending: bool
    dr: int


class ModemStack:
    """One modem's LoRaWAN device: OTAA credentials, then :meth:`join` and :meth:`send`.

    ``port``: the network-server simulator's UDP port on 127.0.0.1. Errors are the MAC's own
    (``citynode.lorawan`` exceptions: NotJoinedError, PayloadTooLong, DutyCycleWait, ...)."""

    def __init__(self, port: int, *, time_scale: int = 5, skip_ms: int | None = 1500,
                 rssi_dbm: int = -80, snr_db: float = 7.0) -> None:
        udp = firmware_module("citynode_sim.udp")
        self._mac_mod = firmware_module("citynode.lorawan.mac")
        self._session_mod = firmware_module("citynode.lorawan.session")
        self.lorawan = firmware_module("citynode.lorawan")
        self.region = firmware_module("citynode.lorawan.region")
        self.clock = udp.VirtualClock(time_scale, skip_ms)
        self.radio = udp.UdpRadio(port=port, clock=self.clock, rssi_dbm=rssi_dbm, snr_db=snr_db)
        self._dead = udp.UdpRadio(port=DEAD_PORT, clock=self.clock)
        self.dev_eui: bytes | None = None
        self.join_eui: bytes | None = None
        self.app_key: bytes | None = None
        self.adr = True
        self.mac: Any = None
        # The modem's non-volatile memory: one session store per identity, so DevNonce keeps
        # increasing across joins (LoRaWAN 1.0.4 §6.2.5), as a modem keeps it in its flash.
        self._stores: dict[tuple[bytes, bytes], Any] = {}

    def close(self) -> None:
        for radio in (self.radio, self._dead):
            radio.close()

    def catch_up(self, node_ms: int) -> None:
        """Bring the modem's clock forward to the node's time (never back)."""
        ahead = node_ms - self.clock.now_ms()
        if ahead > 0:
            self.clock._t += ahead  # a jump, not a wait: the node already spent that time

    @property
    def joined(self) -> bool:
        return self.mac is not None and self.mac.joined

    @property
    def dr(self) -> int:
        return self.mac.session.dr if self.mac is not None else 0

    @property
    def dev_addr(self) -> int:
        return self.mac.session.dev_addr if self.joined else 0

    def max_payload(self) -> int:
        """Largest FRMPayload at the current data rate (RP002 2.4.6, minus pending MAC answers)."""
        if self.mac is None:
            return self.region.max_app_payload(0, False)
        return self.mac.max_payload()

    def reset_session(self) -> None:
        """Forget the session (new credentials, or a forced rejoin)."""
        self.mac = None

    def join(self, attempts: int = 1, *, network: bool = True) -> bool:
        """OTAA join with up to ``attempts`` join-requests (back-off and duty cycle included).
        ``network`` False: the requests go out where no network hears them."""
        if self.dev_eui is None or self.join_eui is None or self.app_key is None:
            raise self.lorawan.LoRaWANError("join: DevEUI, JoinEUI and AppKey must be set first")
        key = (self.dev_eui, self.join_eui)
        store = self._stores.get(key)
        if store is None:
            sm = self._session_mod
            store = self._stores[key] = sm.SessionStore(sm.MemoryStore(), sm.MemoryStore())
        elif store.session is not None and store.session.joined:
            store.forget()  # a new join: the old session goes, DevNonce stays
        mac = self._mac_mod.ClassA(self.radio if network else self._dead, store, self.clock.now_ms, self.clock.sleep_ms,
                                   dev_eui=self.dev_eui, join_eui=self.join_eui, app_key=self.app_key,
                                   battery=lambda: 255, wall_s=self.clock.wall_s)
        ok = bool(mac.join(attempts=attempts, wait=True))
        mac.radio = self.radio
        if ok:
            mac.session.adr = self.adr
            self.mac = mac
        return ok

    def send(self, port: int, data: bytes, confirmed: bool = False) -> SendResult:
        """One uplink and its receive windows (waits for the duty cycle like a modem's stack)."""
        if self.mac is None:
            raise self.lorawan.LoRaWANError("send: not joined")
        dl = self.mac.send(port, data, confirmed=confirmed, wait=True)
        dr = self.mac.session.dr
        if dl is None:
            return SendResult(None, b"", False, None, None, None, False, dr)
        return SendResult(dl.port, bytes(dl.data), bool(dl.ack), dl.window, int(dl.rssi_dbm), float(dl.snr_db),
                          bool(dl.fpending), dr)
