"""The LoRaWAN network-server SIMULATOR: one virtual gateway, join server and network server in a process.

This is a simulator for demos, tests and HIL rigs. It is NOT a network server to run a city's network
on and never a replacement for ChirpStack: no persistence, one virtual gateway, EU868 only, LoRaWAN
1.0.4 Class A (plus the Class C multicast of a FUOTA deployment, :mod:`gateway.sim.nssim.fuota`), no
roaming, no Class B, no FSK.

What it does, over the UDP datagrams of :mod:`citynode_sim.udp` (see that module for the format):

* OTAA joins (LoRaWAN 1.0.4 §6.2): MIC check with the AppKey, DevNonce must increase (§6.2.5: a reused
  DevNonce is rejected), a per-device JoinNonce counter, session keys (§6.2.6), a join-accept in RX1
  (JOIN_ACCEPT_DELAY1 = 5 s after the request) with DLSettings, RXDelay and an EU868 CFList (RP002 §2.4.4).
* Uplinks (§4.3): MIC check, 32-bit FCnt reconstruction (16-bit roll-over), replay rejection,
  retransmissions (same FCnt) answered but not forwarded, duplicates (the same transmission
  received twice, as through several gateways) dropped, FRMPayload decrypted; every rejected frame is logged with its reason.
* Downlinks in RX1 (or RX2): ACK for confirmed uplinks, queued application data (e.g. citynode config on
  FPort 2, optionally confirmed, with AckEvent on the device's ACK), MAC commands piggy-backed in FOpts
  or on FPort 0: answers (LinkCheckAns, DeviceTimeAns) and queued requests (LinkADRReq, DevStatusReq,
  RXParamSetupReq, DutyCycleReq, NewChannelReq, RXTimingSetupReq, DlChannelReq); a setting changes in
  the simulator's session only when the device's answer acknowledges it.
* ADR (:mod:`gateway.sim.nssim.adr`, ChirpStack's default algorithm) when the device sets the ADR bit;
  answers ADRACKReq with a downlink.
* Simulated link loss: :meth:`NetworkServerSim.link_loss` drops the next N frames (all, or one
  device's), so a node climbs back through its ADR backoff and eventually rejoins.
* ChirpStack v4 integration events (``chirpstack_api.integration`` messages) for every join, uplink,
  ACK, transmitted queue item, DevStatusAns and rejected join/MIC, kept in :attr:`events` and handed to
  the sinks (:mod:`gateway.sim.nssim.delivery`: HTTP integration form, MQTT).

Downlink timing follows a real gateway (Semtech UDP packet forwarder, ``txpk.tmst``): the simulator answers
at once and stamps the downlink with the node-clock time its preamble starts, uplink end + RECEIVE_DELAY1
(or + JOIN_ACCEPT_DELAY1); the virtual radio delivers it only to a receive window open at that moment.
``answer_delay_ms`` adds real backhaul latency, so a late network misses the windows like a real one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ConfigError
from gateway.sim.nssim import events as ev
from gateway.sim.nssim._firmware import crypto, frames, lorawan, maccmd, region, udp
from gateway.sim.nssim.adr import REQUIRED_SNR_DB, AdrState, adr_decision, loss_rate
from gateway.sim.nssim.delivery import EventSink
from gateway.sim.nssim.registry import DeviceKeys

__all__ = ["NetworkServerSim", "SimHandle", "LogEntry", "QueueItem", "Session", "DeviceState"]

log = logging.getLogger("citynode.nssim")

_GPS_EPOCH_UNIX = 315964800  # 1980-01-06T00:00:00Z
_GPS_LEAP_S = 18  # GPS - UTC since 2017-01-01 (IERS Bulletin C)
_HISTORY = 20  # ChirpStack keeps the last 20 uplinks for ADR
# Answers a device repeats in every uplink until it receives a downlink (LoRaWAN 1.0.4 §5.4, §5.7, §5.6)
_STICKY = ("RXParamSetupAns", "RXTimingSetupAns", "DlChannelAns")
# Request -> the answer that acknowledges it.
_ANSWER_OF = {
    "LinkADRReq": "LinkADRAns",
    "DutyCycleReq": "DutyCycleAns",
    "RXParamSetupReq": "RXParamSetupAns",
    "DevStatusReq": "DevStatusAns",
    "NewChannelReq": "NewChannelAns",
    "RXTimingSetupReq": "RXTimingSetupAns",
    "DlChannelReq": "DlChannelAns",
}


@dataclass(frozen=True)
class QueueItem:
    """An application downlink waiting for the device's next uplink."""

    id: str
    fport: int
    data: bytes
    confirmed: bool = False


@dataclass(frozen=True)
class LogEntry:
    """One line of the simulator's log: ``kind`` is join / join-rejected / uplink / downlink / dropped /
    mac / status; ``reason`` says why for rejections; ``fields`` carries details (fcnt, sf, ...)."""

    time: float
    kind: str
    dev_eui: str | None
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"nssim {self.kind} dev_eui={self.dev_eui or '-'} {self.reason} {extra}".rstrip()


@dataclass
class Session:
    """The network side of an OTAA session (what ChirpStack keeps in its device-session)."""

    dev_addr: int
    nwk_skey: bytes = field(repr=False)
    app_skey: bytes = field(repr=False)
    dr: int
    channels: list[int]  # uplink frequencies, index = channel
    ch_mask: int
    tx_power: int = 0
    nb_trans: int = 1
    fcnt_up: int | None = None  # last accepted 32-bit FCntUp
    fcnt_down: int = 0  # next FCntDown to use
    rx1_dr_offset: int = 0
    rx2_dr: int = region.RX2_DR
    rx2_freq_hz: int = region.RX2_FREQ_HZ
    rx1_delay_s: int = 1
    adr: bool = False
    dl_freqs: dict[int, int] = field(default_factory=dict)  # DlChannelReq: channel index -> RX1 frequency
    snr_history: deque = field(default_factory=lambda: deque(maxlen=_HISTORY))
    fcnt_history: deque = field(default_factory=lambda: deque(maxlen=_HISTORY))


@dataclass
class DeviceState:
    keys: DeviceKeys
    last_dev_nonce: int | None = None
    join_nonce: int = 0
    session: Session | None = None
    app_queue: deque = field(default_factory=deque)  # QueueItem
    mac_queue: list = field(default_factory=list)  # (name, fields) to send with the next downlink
    mac_pending: dict = field(default_factory=dict)  # request name -> fields, sent, awaiting the answer
    awaiting_ack: tuple[QueueItem, int] | None = None  # confirmed downlink sent, FCntDown
    link: tuple[int, float] | None = None  # (rssi dBm, snr dB) override for uplinks
    last_status: dict | None = None  # last DevStatusAns
    last_uplink: dict | None = None
    peer: tuple[str, int] | None = None  # the UDP address of the node's virtual radio
    # The node's clock: (tmst_ms, time.monotonic()) of its last uplink, and the GPS second that its
    # clock's 0 ms stands for (fixed at its first uplink; see NetworkServerSim.gps_time).
    clock_ref: tuple[int, float] | None = None
    gps_anchor_s: float | None = None


def _dr_of(sf: int, bw_hz: int) -> int | None:
    for i, p in enumerate(region.DATA_RATES):
        if p == (sf, bw_hz):
            return i
    return None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, sim: NetworkServerSim) -> None:
        self.sim = sim

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sim.handle_datagram(data, addr)
        except Exception:
            log.exception("nssim: frame from %s crashed the handler", addr)


class NetworkServerSim:
    """See the module docstring. Construct, then ``async with sim:`` (or ``sim.run_in_thread()``).

    devices: the registry (DeviceKeys). port: UDP port (0 = a free one; :attr:`port` after start).
    sinks: EventSinks for the integration events. rx1_delay_s: RXDelay sent in the join-accept.
    rx_window: 1 (RX1) or 2 (RX2) for every downlink. cflist: channels 3..7 for the join-accept (Hz).
    adr_margin_db: ADR installation margin. answer_delay_ms: simulated backhaul latency (real ms).
    dedup_window_s: how long (real s) a transmission is remembered to drop its duplicates (the same bytes
    with the same node-clock time, as several gateways would forward it).
    frame_log: called with one line per PHYPayload, ``frame <up|down> dev_eui=<eui or -> <hex>``, for
    every frame heard (before any check: rejected frames too) and sent; keys are never written.
    """

    def __init__(
        self,
        devices: Iterable[DeviceKeys] = (),
        *,
        host: str = "127.0.0.1",
        port: int = udp.DEFAULT_PORT,
        sinks: Iterable[EventSink] = (),
        app: ev.Application | None = None,
        net_id: int = 0x000000,
        gateway_id: str = "0016c001ff10a235",
        rx1_delay_s: int = 1,
        rx_window: int = 1,
        cflist: tuple[int, ...] = (867100000, 867300000, 867500000, 867700000, 867900000),
        adr_margin_db: float = 10.0,
        adr_max_dr: int = 5,
        answer_delay_ms: float = 0.0,
        dedup_window_s: float = 0.2,
        frame_log: Callable[[str], None] | None = None,
    ) -> None:
        if rx_window not in (1, 2):
            raise ConfigError(f"rx_window: {rx_window!r} is not 1 or 2")
        if not 1 <= rx1_delay_s <= 15:
            raise ConfigError(f"rx1_delay_s: {rx1_delay_s!r} not in 1..15 (LoRaWAN 1.0.4 §5.7)")
        if len(cflist) > 5 or any(f and not region.valid_freq(f) for f in cflist):
            raise ConfigError(f"cflist: {cflist!r} must be up to 5 EU868 frequencies in Hz")
        self.host = host
        self.port = port
        self.sinks = list(sinks)
        self.app = app or ev.Application()
        self.net_id = net_id
        self.gateway_id = gateway_id
        self.rx1_delay_s = rx1_delay_s
        self.rx_window = rx_window
        self.cflist = tuple(cflist)
        self.adr_margin_db = adr_margin_db
        self.adr_max_dr = adr_max_dr
        self.answer_delay_ms = answer_delay_ms
        self.dedup_window_s = dedup_window_s
        # `citynode ns-sim --log-frames`: one line per PHYPayload heard or sent (see _log_frame)
        self.frame_log = frame_log
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.devices: dict[str, DeviceState] = {}
        for d in devices:
            self.add_device(d)
        self.events: list[ev.Event] = []
        self.log: list[LogEntry] = []
        self._loss_all = 0
        self._loss_dev: dict[str, int] = {}
        self._recent: dict[tuple[bytes, int], float] = {}
        self._next_addr = (net_id & 0x7F) << 25 | 0x00A0001  # RP002/TS002 NetID type 0: NwkID in the top 7 bits
        self._transport: asyncio.DatagramTransport | None = None
        self._queue: asyncio.Queue[ev.Event] | None = None
        self._deliver_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Called (under the lock, on the event loop) with (dev_eui, fport, payload, tmst_ms) for every
        # accepted, new uplink with an FPort, before its downlink is decided: what a listener queues
        # goes out in this uplink's receive window (the application-layer packages, gateway.sim.nssim.fuota).
        self.uplink_listeners: list[Callable[[str, int, bytes, int], None]] = []

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        for s in self.sinks:
            await s.start()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port)
        )
        self._transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]
        for s in self.sinks:  # a sink that also takes downlinks (MQTT command/down) starts taking them now
            attach = getattr(s, "attach", None)
            if attach is not None:
                await attach(self)
        self._deliver_task = asyncio.create_task(self._deliver())
        log.debug("nssim: listening on udp://%s:%d (%d devices) - a SIMULATOR, not a network server",
                 self.host, self.port, len(self.devices))

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._deliver_task is not None:
            assert self._queue is not None
            await self._queue.join()  # every event handed to the sinks before they close
            self._deliver_task.cancel()
            try:
                await self._deliver_task
            except asyncio.CancelledError:
                pass
            self._deliver_task = None
        for s in self.sinks:
            await s.close()

    async def __aenter__(self) -> NetworkServerSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def run_in_thread(self) -> SimHandle:
        """Start in a background thread with its own event loop (for synchronous callers and tests)."""
        return SimHandle(self)

    async def _deliver(self) -> None:
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            try:
                for s in self.sinks:
                    await s.deliver(self.app.application_id, event)
            finally:
                self._queue.task_done()

    # ------------------------------------------------------------------ control (thread-safe)
    def add_device(self, keys: DeviceKeys) -> None:
        with self._lock:
            self.devices[keys.dev_eui] = DeviceState(keys)

    def _dev(self, dev_eui: str) -> DeviceState:
        try:
            return self.devices[dev_eui.lower()]
        except KeyError:
            raise ConfigError(f"dev_eui: {dev_eui} is not in the simulator's registry") from None

    def queue_downlink(
        self, dev_eui: str, fport: int, data: bytes, confirmed: bool = False, *, item_id: str | None = None
    ) -> str:
        """Queue application data for the device's next uplink; returns the queue item id (``item_id``
        when given: an item handed over from ChirpStack's queue keeps its id, which its txack names).
        Downlinks arrive here from :mod:`gateway.sim.nssim.commands` (MQTT ``command/down``, the API
        simulator's ``DeviceService.Enqueue``) or from a caller in the same process."""
        if not 1 <= fport <= 223:
            raise ConfigError(f"fport: {fport} not in 1..223 (LoRaWAN 1.0.4 §4.3.2)")
        item = QueueItem(item_id or str(uuid.uuid4()), fport, bytes(data), confirmed)
        with self._lock:
            self._dev(dev_eui).app_queue.append(item)
        return item.id

    def queue_mac(self, dev_eui: str, name: str, fields: dict[str, Any] | None = None) -> None:
        """Queue a MAC command (network -> device, e.g. ``("LinkADRReq", {...})``) for the next downlink."""
        try:
            cid, by_device, _ = maccmd.info(name)
            if by_device:
                raise ConfigError(f"MAC command {name} is sent by devices, not by the network")
            # Every field spelled out (missing ones are 0), as the device will decode it.
            ((_, full),) = maccmd.decode_strict(maccmd.encode(name, fields or {}), uplink=False)
        except lorawan.MACCommandError as exc:
            raise ConfigError(f"MAC command: {exc}") from None
        with self._lock:
            self._dev(dev_eui).mac_queue.append((name, full))

    def link_loss(self, frames_: int, dev_eui: str | None = None) -> None:
        """Drop the next ``frames_`` uplink frames (joins included): all devices', or one device's."""
        with self._lock:
            if dev_eui is None:
                self._loss_all = frames_
            else:
                self._loss_dev[self._dev(dev_eui).keys.dev_eui] = frames_

    def set_link(self, dev_eui: str, rssi_dbm: int, snr_db: float) -> None:
        """Override the RSSI/SNR the gateway reports for this device's uplinks (drives ADR)."""
        with self._lock:
            self._dev(dev_eui).link = (rssi_dbm, snr_db)

    def events_of(self, kind: str, dev_eui: str | None = None) -> list[ev.Event]:
        with self._lock:
            return [e for e in self.events if e.kind == kind and (dev_eui is None or e.dev_eui == dev_eui)]

    def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 30.0) -> Any:
        """Block until ``predicate()`` (called under the lock) is truthy; returns it or raises TimeoutError
        with the last log lines."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                got = predicate()
                if got:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(str(e) for e in self.log[-10:])
                    raise TimeoutError(f"nssim: condition not met in {timeout_s} s; last log lines:\n{tail}")
                self._changed.wait(left)

    # ------------------------------------------------------------------ the node's clock, Class C
    def gps_time(self, dev_eui: str, tmst_ms: int) -> float:
        """The GPS time (s) of the moment ``tmst_ms`` of this node's clock.

        A virtual node's clock may run faster than real time (``VirtualClock(scale)``), so the
        simulator's GPS time for a node is that node's clock, anchored at its first uplink to the real
        GPS time of then: DeviceTimeAns, AppTimeAns (TS003) and the Class C session times all use it, and
        a node that synchronises its clock with either sees one consistent time line.
        """
        with self._lock:
            dev = self._dev(dev_eui)
            if dev.gps_anchor_s is None:
                dev.gps_anchor_s = time.time() - _GPS_EPOCH_UNIX + _GPS_LEAP_S - tmst_ms / 1000
            return dev.gps_anchor_s + tmst_ms / 1000

    def node_now_ms(self, dev_eui: str, scale: float) -> float | None:
        """This node's clock now (ms), estimated from its last uplink and the real time since, for a
        clock that runs ``scale`` times real time; None before its first uplink."""
        with self._lock:
            ref = self._dev(dev_eui).clock_ref
        if ref is None:
            return None
        return ref[0] + (time.monotonic() - ref[1]) * 1000 * scale

    def send_class_c(self, dev_eui: str, phy: bytes, freq_hz: int, dr: int, gps_s: float) -> bool:
        """Transmit ``phy`` (a multicast or Class C frame) to this node's radio so that its preamble
        starts at GPS time ``gps_s`` of the node's clock (``tmst_ms`` of the virtual radio); the node
        receives it only if its receiver listens on ``freq_hz`` / ``dr`` then. Thread-safe; False when
        the node has not been heard yet (no address, no clock)."""
        with self._lock:
            dev = self._dev(dev_eui)
            if dev.peer is None or dev.gps_anchor_s is None:
                return False
            tmst = int(round((gps_s - dev.gps_anchor_s) * 1000))
            peer = dev.peer
            self._log_frame("down", phy, dev.keys.dev_eui)
        sf, bw = region.dr_params(dr)
        header = {"v": udp.FORMAT_VERSION, "dir": "down", "freq_hz": freq_hz, "sf": sf, "bw_hz": bw, "cr": 5,
                  "invert_iq": True, "tmst_ms": tmst, "power_dbm": 14, "rssi": -80, "snr": 7.0}
        data = udp.encode_datagram(header, phy)
        if self._loop is not None and self._transport is not None:
            self._loop.call_soon_threadsafe(self._sendto, data, peer)
        return True

    # ------------------------------------------------------------------ records
    def _note(self, kind: str, dev_eui: str | None, reason: str, **fields: Any) -> None:
        entry = LogEntry(time.time(), kind, dev_eui, reason, fields)
        self.log.append(entry)
        (log.warning if kind in ("dropped", "join-rejected") else log.info)("%s", entry)
        self._changed.notify_all()

    def _emit(self, kind: str, dev_eui: str, message: Any) -> None:
        e = ev.Event(kind, dev_eui, message)
        self.events.append(e)
        if self._queue is not None and self.sinks:
            self._queue.put_nowait(e)
        self._changed.notify_all()

    # ------------------------------------------------------------------ air interface
    def handle_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """One datagram from a virtual radio (runs on the event loop; public for tests)."""
        with self._lock:
            try:
                header, phy = udp.decode_datagram(data)
            except ValueError as exc:
                self._note("dropped", None, str(exc), peer=f"{addr[0]}:{addr[1]}")
                return
            if header["dir"] != "up":
                return
            self._log_frame("up", phy)
            radio = {"freq_hz": header["freq_hz"], "sf": header["sf"], "bw_hz": header["bw_hz"]}
            try:
                mtype = frames.mtype_of(phy)
            except lorawan.FrameError as exc:
                self._note("dropped", None, str(exc), **radio)
                return
            if mtype == frames.JOIN_REQUEST:
                self._join(header, phy, addr, radio)
            elif mtype in (frames.UNCONFIRMED_UP, frames.CONFIRMED_UP):
                self._uplink(header, phy, addr, radio, mtype)
            else:
                self._note("dropped", None, f"MType {frames.MTYPE_NAMES[mtype]} is not an uplink", **radio)

    def _frame_dev_eui(self, phy: bytes) -> str | None:
        """The DevEUI a frame belongs to: a join-request carries it, a data frame's DevAddr names a session."""
        try:
            mtype = frames.mtype_of(phy)
            if mtype == frames.JOIN_REQUEST:
                return frames.parse_join_request(phy).dev_eui.hex()
            if mtype in (frames.UNCONFIRMED_UP, frames.CONFIRMED_UP, frames.UNCONFIRMED_DOWN,
                         frames.CONFIRMED_DOWN):
                addr = frames.unpack_data(phy).dev_addr
                owners = [d.keys.dev_eui for d in self.devices.values()
                          if d.session is not None and d.session.dev_addr == addr]
                return owners[0] if len(owners) == 1 else None
        except (lorawan.FrameError, ValueError):
            return None
        return None

    def _log_frame(self, direction: str, phy: bytes, dev_eui: str | None = None) -> None:
        if self.frame_log is None:
            return
        eui = dev_eui or self._frame_dev_eui(phy) or "-"
        self.frame_log(f"frame {direction} dev_eui={eui} {phy.hex()}")

    def _lost(self, dev_eui: str | None, radio: dict[str, Any], what: str) -> bool:
        if self._loss_all > 0:
            self._loss_all -= 1
        elif dev_eui is not None and self._loss_dev.get(dev_eui, 0) > 0:
            self._loss_dev[dev_eui] -= 1
        else:
            return False
        self._note("dropped", dev_eui, f"link loss (simulated): {what} not heard", **radio)
        return True

    def _duplicate(self, phy: bytes, tmst_ms: int) -> bool:
        # One transmission heard twice (several gateways, or a repeated datagram) has the same bytes
        # and the same node-clock end time; a NbTrans repetition or a retry is a new transmission.
        now = time.monotonic()
        for k, t in list(self._recent.items()):
            if now - t > self.dedup_window_s:
                del self._recent[k]
        key = (phy, int(tmst_ms))
        if key in self._recent:
            return True
        self._recent[key] = now
        return False

    def _send(self, addr: tuple[str, int], header: dict[str, Any], phy: bytes) -> None:
        data = udp.encode_datagram(header, phy)
        if self._transport is None:
            return
        if self.answer_delay_ms > 0 and self._loop is not None:
            self._loop.call_later(self.answer_delay_ms / 1000, self._sendto, data, addr)
        else:
            self._sendto(data, addr)

    def _sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)

    def _link(self, dev: DeviceState, header: dict[str, Any]) -> tuple[int, float]:
        if dev.link is not None:
            return dev.link
        return int(header.get("rssi", -80)), float(header.get("snr", 7.0))

    # ------------------------------------------------------------------ joins
    def _join(self, header: dict[str, Any], phy: bytes, addr: tuple[str, int], radio: dict[str, Any]) -> None:
        try:
            jr = frames.parse_join_request(phy)
        except lorawan.FrameError as exc:
            self._note("dropped", None, str(exc), **radio)
            return
        dev_eui = jr.dev_eui.hex()
        if self._lost(dev_eui if dev_eui in self.devices else None, radio, "join-request"):
            return
        dev = self.devices.get(dev_eui)
        if dev is None:
            self._note("join-rejected", dev_eui, "unknown DevEUI (not in the registry)", **radio)
            return
        k = dev.keys
        if jr.join_eui.hex() != k.join_eui:
            self._reject_join(dev, f"JoinEUI {jr.join_eui.hex()} does not match the registry's {k.join_eui}", radio)
            return
        try:
            jr = frames.parse_join_request(phy, k.app_key)
        except lorawan.MICError as exc:
            self._reject_join(dev, str(exc), radio)
            return
        if self._duplicate(phy, header["tmst_ms"]):
            self._note("dropped", dev_eui, "duplicate join-request (the same transmission received twice)")
            return
        if dev.last_dev_nonce is not None and jr.dev_nonce <= dev.last_dev_nonce:
            self._reject_join(
                dev, f"DevNonce {jr.dev_nonce} already used (last accepted {dev.last_dev_nonce}); LoRaWAN 1.0.4 "
                "§6.2.5 requires a new, increasing DevNonce (replayed join-request?)", radio, dev_nonce=jr.dev_nonce)
            return
        dr = _dr_of(header["sf"], header["bw_hz"])
        if dr is None:
            self._reject_join(dev, f"SF{header['sf']}/{header['bw_hz']} Hz is not an EU868 data rate", radio)
            return
        dev.last_dev_nonce = jr.dev_nonce
        dev.join_nonce += 1
        dev_addr = self._next_addr
        self._next_addr += 1
        nwk, app = crypto.derive_session_keys(k.app_key, dev.join_nonce, self.net_id, jr.dev_nonce)
        channels = list(region.DEFAULT_CHANNELS) + [f for f in self.cflist]
        mask = 0
        for i, f in enumerate(channels):
            if f:
                mask |= 1 << i
        dev.session = Session(dev_addr=dev_addr, nwk_skey=nwk, app_skey=app, dr=dr, channels=channels, ch_mask=mask,
                              rx1_delay_s=self.rx1_delay_s)
        dev.mac_pending.clear()
        dev.awaiting_ack = None
        ja = frames.build_join_accept(k.app_key, dev.join_nonce, self.net_id, dev_addr, rx1_dr_offset=0,
                                      rx2_dr=region.RX2_DR, rx_delay_s=self.rx1_delay_s,
                                      frequencies=list(self.cflist) if self.cflist else None)
        rssi, snr = self._link(dev, header)
        if self.rx_window == 1:
            freq, dl_dr, delay = header["freq_hz"], region.rx1_dr(dr, 0), region.JOIN_ACCEPT_DELAY1_MS
        else:
            freq, dl_dr, delay = region.RX2_FREQ_HZ, region.RX2_DR, region.JOIN_ACCEPT_DELAY2_MS
        self._log_frame("down", ja, dev_eui)  # a join-accept is encrypted: its DevEUI comes from the request
        self._send_down(addr, header, ja, freq, dl_dr, delay, rssi, snr)
        self._note("join", dev_eui, "join-accept sent", dev_nonce=jr.dev_nonce, join_nonce=dev.join_nonce,
                   dev_addr=f"{dev_addr:08x}", dr=dr, window=self.rx_window)
        self._emit("join", dev_eui, ev.join_event(self.app, k, dev_addr))

    def _reject_join(self, dev: DeviceState, reason: str, radio: dict[str, Any], **fields: Any) -> None:
        self._note("join-rejected", dev.keys.dev_eui, reason, **radio, **fields)
        self._emit("log", dev.keys.dev_eui, ev.log_event(self.app, dev.keys, "OTAA", reason))

    def _send_down(self, addr: tuple[str, int], up: dict[str, Any], phy: bytes, freq: int, dr: int, delay_ms: int,
                   rssi: int, snr: float) -> None:
        sf, bw = region.dr_params(dr)
        header = {"v": udp.FORMAT_VERSION, "dir": "down", "freq_hz": freq, "sf": sf, "bw_hz": bw, "cr": 5,
                  "invert_iq": True, "tmst_ms": int(up["tmst_ms"]) + delay_ms, "power_dbm": 14,
                  "rssi": rssi, "snr": snr}
        self._send(addr, header, phy)

    # ------------------------------------------------------------------ uplinks
    def _uplink(self, header: dict[str, Any], phy: bytes, addr: tuple[str, int], radio: dict[str, Any],
                mtype: int) -> None:
        try:
            raw = frames.unpack_data(phy)
        except lorawan.FrameError as exc:
            self._note("dropped", None, str(exc), **radio)
            return
        cands = [d for d in self.devices.values() if d.session is not None and d.session.dev_addr == raw.dev_addr]
        if self._lost(cands[0].keys.dev_eui if len(cands) == 1 else None, radio, "uplink"):
            return
        if not cands:
            self._note("dropped", None, f"unknown DevAddr {raw.dev_addr:08x} (no session)", fcnt16=raw.fcnt, **radio)
            return
        frame = None
        dev = cands[0]
        problem = ""
        for d in cands:  # several devices may share a DevAddr: the MIC tells them apart
            s = d.session
            assert s is not None
            last = s.fcnt_up - 1 if s.fcnt_up else None  # so that FCnt == last is seen (retransmission)
            try:
                frame = frames.parse_uplink(phy, s.nwk_skey, s.app_skey, s.dev_addr, last)
                dev = d
                break
            except lorawan.ReplayError:
                dev = d
                problem = (f"replayed or old frame: FCnt {raw.fcnt} (16 bits on air) is not above the last "
                           f"accepted {s.fcnt_up}")
                break
            except lorawan.MICError as exc:
                problem = str(exc)
        if frame is None:
            self._note("dropped", dev.keys.dev_eui, problem, fcnt16=raw.fcnt, **radio)
            code = "UPLINK_MIC" if "MIC" in problem else "UPLINK_F_CNT_RETRANSMISSION"
            self._emit("log", dev.keys.dev_eui, ev.log_event(self.app, dev.keys, code, problem))
            return
        if self._duplicate(phy, header["tmst_ms"]):
            self._note("dropped", dev.keys.dev_eui, "duplicate (the same transmission received twice)",
                       fcnt=frame.fcnt)
            return
        s = dev.session
        assert s is not None
        retrans = s.fcnt_up is not None and frame.fcnt == s.fcnt_up
        s.fcnt_up = frame.fcnt
        rssi, snr = self._link(dev, header)
        dr = _dr_of(header["sf"], header["bw_hz"])
        dr = s.dr if dr is None else dr
        confirmed = mtype == frames.CONFIRMED_UP
        dev_eui = dev.keys.dev_eui
        fields = {"fcnt": frame.fcnt, "fport": frame.fport, "dr": dr, "sf": header["sf"], "freq_hz": header["freq_hz"],
                  "confirmed": confirmed, "adr": frame.adr, "adr_ack_req": frame.adr_ack_req, "ack": frame.ack,
                  "rssi": rssi, "snr": snr, "len": len(frame.payload)}
        dev.last_uplink = fields
        dev.peer = addr
        dev.clock_ref = (int(header["tmst_ms"]), time.monotonic())
        self.gps_time(dev_eui, int(header["tmst_ms"]))  # anchors the node's GPS time line
        if retrans:
            self._note("uplink", dev_eui, "retransmission (same FCnt): not forwarded", **fields)
        else:
            self._note("uplink", dev_eui, "accepted", **fields)
            s.fcnt_history.append(frame.fcnt)
            s.adr = frame.adr
        answers: list[tuple[str, dict[str, Any]]] = []
        force = confirmed or frame.adr_ack_req
        if dev.awaiting_ack is not None and not retrans:
            item, fcnt_down = dev.awaiting_ack
            dev.awaiting_ack = None
            self._emit("ack", dev_eui, ev.ack_event(self.app, dev.keys, item.id, frame.ack, fcnt_down))
        if not retrans:
            cmds_raw = frame.payload if frame.fport == 0 else frame.fopts
            if cmds_raw:
                force |= self._device_mac(dev, cmds_raw, header, snr, answers)
            s.snr_history.append(snr)  # after the MAC answers: a LinkADRAns starts a new history
            if frame.fport:
                self._emit("up", dev_eui, ev.uplink_event(
                    self.app, dev.keys, dev_addr=s.dev_addr, adr=frame.adr, dr=dr, fcnt=frame.fcnt, fport=frame.fport,
                    confirmed=confirmed, data=frame.payload,
                    rx=ev.rx_info(self.gateway_id, rssi, snr), tx=ev.tx_info(header["freq_hz"], header["sf"],
                                                                               header["bw_hz"])))
            if frame.adr:
                self._adr(dev, header["sf"])
            if frame.fport:
                for listener in list(self.uplink_listeners):
                    listener(dev_eui, frame.fport, bytes(frame.payload), int(header["tmst_ms"]))
        if force or answers or dev.mac_queue or dev.app_queue:
            self._downlink(dev, addr, header, dr, confirmed, answers, rssi, snr)

    def _device_mac(self, dev: DeviceState, raw: bytes, header: dict[str, Any], snr: float,
                    answers: list[tuple[str, dict[str, Any]]]) -> bool:
        """Handle the device's MAC commands; returns True when a downlink is needed (sticky answers)."""
        cmds, problem = maccmd.decode(raw, uplink=True)
        s = dev.session
        assert s is not None
        dev_eui = dev.keys.dev_eui
        if problem:
            self._note("mac", dev_eui, f"MAC commands: {problem}")
        force = False
        seen: set[str] = set()
        for name, p in cmds:
            if name == "LinkCheckReq":  # §5.2: margin above the demodulation floor, gateway count
                margin = max(0, min(254, int(snr - REQUIRED_SNR_DB[header["sf"]])))
                answers.append(("LinkCheckAns", {"margin_db": margin, "gw_cnt": 1}))
            elif name == "DeviceTimeReq":  # §5.11: GPS time at the end of the uplink (the node's clock)
                gps = self.gps_time(dev_eui, int(header["tmst_ms"]))
                answers.append(("DeviceTimeAns", {"gps_seconds": int(gps) & 0xFFFFFFFF,
                                                  "fraction_256": int((gps % 1) * 256)}))
            elif name.endswith("Ans"):
                if name in _STICKY:
                    force = True
                if name in seen:  # one LinkADRAns per LinkADRReq in a block: all carry the same status
                    continue
                seen.add(name)
                self._answer(dev, name, p)
            self._note("mac", dev_eui, f"device sent {name}", **p)
        return force

    def _answer(self, dev: DeviceState, name: str, p: dict[str, Any]) -> None:
        s = dev.session
        assert s is not None
        req = next((r for r, a in _ANSWER_OF.items() if a == name), None)
        if name == "DevStatusAns":
            dev.mac_pending.pop("DevStatusReq", None)
            dev.last_status = dict(p)
            self._emit("status", dev.keys.dev_eui, ev.status_event(self.app, dev.keys, p["snr_db"], p["battery"]))
            return
        if req is None or req not in dev.mac_pending:
            if name not in _STICKY:
                self._note("mac", dev.keys.dev_eui, f"{name} without a pending {req}: ignored")
            return
        sent = dev.mac_pending.pop(req)
        ok = all(v for v in p.values()) if p else True
        if not ok:
            nack = ", ".join(k for k, v in p.items() if not v)
            self._note("mac", dev.keys.dev_eui, f"{req} rejected by the device ({nack} false): settings unchanged")
            return
        if req == "LinkADRReq":
            if sent["data_rate"] != region.DR_KEEP:
                s.dr = sent["data_rate"]
            if sent["tx_power"] != region.TX_POWER_KEEP:
                s.tx_power = sent["tx_power"]
            s.nb_trans = sent["nb_trans"] or 1
            if sent["ch_mask_cntl"] == 0:
                s.ch_mask = sent["ch_mask"]
            # Later ADR decisions use SNRs measured at the new settings only (our choice: an old SNR
            # at a higher power would keep the algorithm lowering the power).
            s.snr_history.clear()
        elif req == "RXParamSetupReq":
            s.rx1_dr_offset, s.rx2_dr, s.rx2_freq_hz = sent["rx1_dr_offset"], sent["rx2_data_rate"], sent["frequency_hz"]
        elif req == "RXTimingSetupReq":
            s.rx1_delay_s = sent["delay_s"] or 1
        elif req == "DlChannelReq":
            s.dl_freqs[sent["ch_index"]] = sent["frequency_hz"]
        elif req == "NewChannelReq":
            ch = sent["ch_index"]
            while len(s.channels) <= ch:
                s.channels.append(0)
            s.channels[ch] = sent["frequency_hz"]
            if sent["frequency_hz"]:
                s.ch_mask |= 1 << ch
            else:
                s.ch_mask &= ~(1 << ch)
        self._note("mac", dev.keys.dev_eui, f"{req} acknowledged: session updated", dr=s.dr, tx_power=s.tx_power,
                   nb_trans=s.nb_trans, ch_mask=f"{s.ch_mask:04x}")

    def _adr(self, dev: DeviceState, sf: int) -> None:
        s = dev.session
        assert s is not None
        busy = ("LinkADRReq", "NewChannelReq")
        if any(n in dev.mac_pending for n in busy) or any(n in busy for n, _ in dev.mac_queue):
            return  # one channel-plan change at a time: wait for the device's answer
        cur = AdrState(s.dr, s.tx_power, s.nb_trans)
        new = adr_decision(cur, max(s.snr_history), sf, max_dr=self.adr_max_dr,
                           installation_margin_db=self.adr_margin_db, loss=loss_rate(list(s.fcnt_history)))
        if new != cur:
            dev.mac_queue.append(("LinkADRReq", {"data_rate": new.dr, "tx_power": new.tx_power, "ch_mask": s.ch_mask,
                                                 "ch_mask_cntl": 0, "nb_trans": new.nb_trans}))
            self._note("mac", dev.keys.dev_eui, "ADR: LinkADRReq queued", dr=new.dr, tx_power=new.tx_power,
                       nb_trans=new.nb_trans, max_snr=max(s.snr_history))

    def _downlink(self, dev: DeviceState, addr: tuple[str, int], up: dict[str, Any], up_dr: int, ack: bool,
                  answers: list[tuple[str, dict[str, Any]]], rssi: int, snr: float) -> None:
        s = dev.session
        assert s is not None
        if self.rx_window == 1:
            dl_dr = region.rx1_dr(up_dr, s.rx1_dr_offset)
            freq, delay = up["freq_hz"], s.rx1_delay_s * 1000
            if freq in s.channels:  # RX1 on the uplink channel's frequency unless a DlChannelReq moved it
                freq = s.dl_freqs.get(s.channels.index(freq), freq)
        else:
            dl_dr, freq, delay = s.rx2_dr, s.rx2_freq_hz, s.rx1_delay_s * 1000 + 1000
        room = region.max_app_payload(dl_dr)
        cmds = answers + dev.mac_queue
        while cmds and len(maccmd.encode_all(cmds)) > room:
            cmds = cmds[:-1]
        mac = maccmd.encode_all(cmds)
        sent_cmds = cmds
        dev.mac_queue = [c for c in dev.mac_queue if c not in sent_cmds]
        item: QueueItem | None = dev.app_queue[0] if dev.app_queue else None
        if item is not None and len(mac) <= 15 and len(item.data) + len(mac) <= room:
            dev.app_queue.popleft()
            fport, payload, fopts, confirmed = item.fport, item.data, mac, item.confirmed
        else:
            item = None
            fport, payload, fopts, confirmed = (0, mac, b"", False) if mac else (None, b"", b"", False)
        fcnt_down = s.fcnt_down
        s.fcnt_down += 1
        phy = frames.build_downlink(s.nwk_skey, s.app_skey, s.dev_addr, fcnt_down, fport, payload, fopts, confirmed,
                                    adr=s.adr, ack=ack, fpending=bool(dev.app_queue))
        self._log_frame("down", phy, dev.keys.dev_eui)
        self._send_down(addr, up, phy, freq, dl_dr, delay, rssi, snr)
        for name, p in sent_cmds:
            if name in _ANSWER_OF:
                dev.mac_pending[name] = p
        names = ",".join(n for n, _ in sent_cmds) or "-"
        self._note("downlink", dev.keys.dev_eui, "scheduled", fcnt_down=fcnt_down, fport=fport, ack=ack,
                   confirmed=confirmed, mac=names, window=self.rx_window, dr=dl_dr, freq_hz=freq)
        if item is not None:
            sf, bw = region.dr_params(dl_dr)
            self._emit("txack", dev.keys.dev_eui, ev.txack_event(self.app, dev.keys, item.id, fcnt_down,
                                                                 self.gateway_id, freq, sf, bw))
            if confirmed:
                dev.awaiting_ack = (item, fcnt_down)


class SimHandle:
    """A NetworkServerSim running in a background thread; ``stop()`` (or ``with``) ends it cleanly."""

    def __init__(self, sim: NetworkServerSim) -> None:
        self.sim = sim
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nssim", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            raise TimeoutError("nssim: did not start within 10 s")

    @property
    def port(self) -> int:
        return self.sim.port

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.sim.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.sim.stop())
        self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
