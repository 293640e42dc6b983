# A virtual LoRa radio over UDP on 127.0.0.1, for the MicroPython unix port (and CPython): it lets the
# real citynode LoRaWAN MAC talk to the network-server simulator (gateway/sim/nssim) as if through the air.
# It implements the citynode.radio.base.Radio interface the MAC uses (configure / send / recv / sleep /
# standby) without subclassing base.Radio, which is built around an SPI chip.
#
# Datagram format (one LoRa packet per UDP datagram, both directions):
#
#   {"v":1,"dir":"up","freq_hz":868100000,"sf":7,"bw_hz":125000,"cr":5,"invert_iq":false,
#    "tmst_ms":123456,"power_dbm":14,"rssi":-80,"snr":7.5}\n<PHYPayload bytes>
#
# i.e. a one-line JSON header, a newline, then the raw PHYPayload. Header fields:
#   v          format version (1)
#   dir        "up" (node -> simulator) or "down" (simulator -> node)
#   freq_hz, sf, bw_hz, cr, invert_iq, power_dbm   the modulation the packet went out with
#   tmst_ms    up: the node's clock (ms) at the END of the transmission;
#              down: the node-clock time at which the downlink's preamble STARTS. Like the "tmst" of
#              Semtech's UDP packet-forwarder protocol (PROTOCOL.TXT, downstream "txpk.tmst"): the network server
#              answers right away and schedules the downlink at uplink end + RECEIVE_DELAY1/2, so RX
#              window timing is decided by the node's own clock and never by UDP or scheduling jitter.
#   rssi, snr  up: the link the node wants the simulator to see (optional, a path-loss stand-in, already
#              shifted by power_dbm - 14 dB);
#              down: what the node's receiver reports for this packet.
#
# Reception follows a real receiver (SX1276 datasheet §4.1.6 "Receiver modes", RX single): recv()
# listens on ONE frequency / SF / bandwidth / IQ polarity from the moment it is called for
# ``timeout_ms``; a downlink is received only if it is on that channel and its preamble starts while the
# receiver listens (a window that opens more than _LOCK_SYMBOLS symbols after the preamble started has
# missed it). A received packet occupies the receiver until its last symbol (time on air).
# Each radio has its own UDP socket; the simulator answers the socket an uplink came from, so many
# virtual nodes share one simulator (a downlink for another node would fail its DevAddr/MIC check anyway).
#
# Time: a VirtualClock, shared with the MAC (ClassA(now_ms=clock.now_ms, sleep_ms=clock.sleep_ms)). Node
# time advances when the node waits; with ``scale`` = 1 waits take real time. ``scale`` = 20 makes a wait
# of 20 node ms take one real ms, so the 1 s RX1 delay passes in 50 ms (fast tests and demos); the
# simulator must answer within that real time, as a real network must within RECEIVE_DELAY1. With
# ``skip_ms`` a longer wait (duty-cycle off-times, join back-off, the 5 s join-accept delay) really sleeps
# only ``skip_ms`` node-ms and jumps the clock over the rest: the network still gets real time to answer.
import json
import socket
import time

try:
    import select
except ImportError:  # pragma: no cover (every runtime this module supports has select)
    import uselect as select

from citynode.compat import const
from citynode.lorawan import airtime

FORMAT_VERSION = const(1)
DEFAULT_PORT = const(1700)
REF_POWER_DBM = const(14)  # rssi_dbm / snr_db describe the link at this conducted power
_LOCK_SYMBOLS = const(3)  # a receiver still locks on a preamble it joins this many symbols late
_MAX_DGRAM = const(1024)  # header (< 300 bytes) + PHYPayload (<= 255 bytes)
_MAX_PENDING = const(8)
_CONTINUOUS_STEP_MS = const(50)  # RX continuous: how often (node ms) the receiver looks at the air


class UdpRadioError(Exception):
    """The virtual radio was misused or its socket failed; the message names the argument."""


def _sleep_real_ms(ms):
    if ms <= 0:
        return
    if hasattr(time, "sleep_us"):
        time.sleep_us(int(ms * 1000))
    else:
        time.sleep(ms / 1000)


class VirtualClock:
    """Node time in ms (int, never wraps), advanced by waiting: ``sleep_ms`` (the MAC's waits, the
    radio's time on air and receive windows) moves it forward by exactly the requested amount and
    sleeps 1/``scale`` of it in real time. Computation takes no node time, as on a real node where it
    takes microseconds against receive windows of tens of ms; so host scheduling jitter, multiplied
    by ``scale``, never makes the MAC open a window late. ``skip_ms``: a wait longer than this sleeps
    only ``skip_ms`` node ms in real time and jumps over the rest (None = never skip).
    Pass ``now_ms`` and ``sleep_ms`` to the MAC and the clock to UdpRadio.

    ``epoch_ms`` (a Unix time in ms) makes the clock **steady**: node time is ``scale`` times the real
    time since ``epoch_ms``, whatever the node does (computation, sleeps outside the MAC, a reboot:
    a restarted node with the same ``epoch_ms`` goes on where it was, as a board's RTC would), and
    ``sleep_ms`` waits until that time; ``skip_ms`` is then ignored. A FUOTA session needs it: the
    network server times the Class C fragments by its estimate of the node's clock (the last uplink's
    time plus the real time since, times ``scale``), which a clock that jumps or stops would miss.
    """

    def __init__(self, scale=1, skip_ms=None, epoch_ms=None):
        if not scale >= 1:
            raise UdpRadioError("scale: must be >= 1 (got %r)" % (scale,))
        self.scale = scale
        self.skip_ms = skip_ms
        self.epoch_ms = epoch_ms
        self._t = 0
        self._wall0 = int(time.time()) if epoch_ms is None else epoch_ms // 1000
        if epoch_ms is not None:
            self._t = self._steady()

    def _steady(self):
        return int((time.time_ns() // 1000000 - self.epoch_ms) * self.scale)

    def now_ms(self):
        if self.epoch_ms is not None:
            t = self._steady()
            if t > self._t:
                self._t = t
        return self._t

    def sleep_ms(self, ms):
        if ms <= 0:
            return
        if self.epoch_ms is not None:
            target = self.now_ms() + int(ms)
            _sleep_real_ms((target - self._steady()) / self.scale)
            if target > self._t:
                self._t = target
            return
        real = ms
        if self.skip_ms is not None and ms > self.skip_ms:
            real = self.skip_ms
        _sleep_real_ms(real / self.scale)
        self._t += int(ms)

    def wall_s(self):
        """Seconds since the epoch in node time (ClassA's ``wall_s``): the real time at construction
        plus the node time since."""
        return self._wall0 + self.now_ms() // 1000

    def real_ms(self, node_ms):
        """Real milliseconds that ``node_ms`` node milliseconds take."""
        return node_ms / self.scale


def encode_datagram(header, phy):
    """One datagram: the header dict as one JSON line, then the PHYPayload bytes."""
    return json.dumps(header).encode() + b"\n" + bytes(phy)


def decode_datagram(data):
    """(header dict, PHYPayload bytes) from a datagram; ValueError naming what is wrong."""
    nl = data.find(b"\n")
    if nl < 0:
        raise ValueError("datagram: no header line")
    try:
        header = json.loads(data[:nl])
    except ValueError:
        raise ValueError("datagram: header is not JSON")
    if not isinstance(header, dict) or header.get("v") != FORMAT_VERSION:
        raise ValueError("datagram: header v must be %d" % FORMAT_VERSION)
    for key in ("dir", "freq_hz", "sf", "bw_hz", "tmst_ms"):
        if key not in header:
            raise ValueError("datagram: header lacks %r" % key)
    return header, bytes(data[nl + 1:])


class UdpRadio:
    """A LoRa radio whose air is UDP to the network-server simulator at ``host``:``port``.

    ``clock``: a VirtualClock (shared with the MAC). ``rssi_dbm`` / ``snr_db``: the link quality the
    simulator should see for this node's uplinks at REF_POWER_DBM (14 dBm) conducted power, a stand-in
    for path loss (change them any time); uplinks report them shifted by the configured power, so an
    ADR power reduction shows up as a lower SNR, as on air.
    ``bind_port``: local UDP port (0 = any free one). Same errors as a chip driver for bad arguments.
    Counters: ``tx_count``, ``rx_ok``, ``rx_timeouts``, ``rx_missed`` (downlinks whose preamble had
    started before the window opened) and ``last_event`` (a short text for logs).
    """

    CHIP = "udp"
    POWER_MIN_DBM = -4
    POWER_MAX_DBM = 20

    def __init__(self, host="127.0.0.1", port=DEFAULT_PORT, clock=None, rssi_dbm=-80, snr_db=7.0, bind_port=0):
        self.clock = clock if clock is not None else VirtualClock()
        self.rssi_dbm = rssi_dbm
        self.snr_db = snr_db
        self._addr = socket.getaddrinfo(host, port)[0][-1]
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(socket.getaddrinfo("127.0.0.1", bind_port)[0][-1])
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)
        self._pending = []  # (header, phy) downlinks received off the wire, not yet on air
        self.state = "standby"
        self.configured = False
        self.freq_hz = 0
        self.sf = 0
        self.bw_hz = 0
        self.cr = 5
        self.tx_power_dbm = 0
        self.preamble = 8
        self.invert_iq = False
        self.crc = True
        self.tx_count = 0
        self.rx_ok = 0
        self.rx_timeouts = 0
        self.rx_missed = 0
        self.last_event = None

    # ---- the Radio interface ----

    def configure(self, freq_hz, sf, bw_hz, cr=5, tx_power_dbm=14, preamble=8, invert_iq=False, crc=True):
        if not isinstance(freq_hz, int) or not 137000000 <= freq_hz <= 1020000000:
            raise UdpRadioError("freq_hz: %r is not a LoRa frequency in Hz" % (freq_hz,))
        if not isinstance(sf, int) or not 5 <= sf <= 12:
            raise UdpRadioError("sf: %r not in 5..12" % (sf,))
        if bw_hz not in (125000, 250000, 500000):
            raise UdpRadioError("bw_hz: %r not one of 125000, 250000, 500000" % (bw_hz,))
        if not 5 <= cr <= 8:
            raise UdpRadioError("cr: %r not in 5..8" % (cr,))
        self.freq_hz, self.sf, self.bw_hz, self.cr = freq_hz, sf, bw_hz, cr
        self.tx_power_dbm = tx_power_dbm
        self.preamble = preamble
        self.invert_iq = bool(invert_iq)
        self.crc = bool(crc)
        self.configured = True
        self.state = "standby"

    def send(self, data):
        """Transmit: block for the packet's time on air (node time), then hand it to the simulator."""
        if not self.configured:
            raise UdpRadioError("send: configure() first")
        n = len(data)
        if not 1 <= n <= 255:
            raise UdpRadioError("data: length must be 1..255 bytes (got %d)" % n)
        self.state = "tx"
        self.clock.sleep_ms(airtime.time_on_air_ms(n, self.sf, self.bw_hz, preamble=self.preamble))
        header = {"v": FORMAT_VERSION, "dir": "up", "freq_hz": self.freq_hz, "sf": self.sf, "bw_hz": self.bw_hz,
                  "cr": self.cr, "invert_iq": self.invert_iq, "tmst_ms": self.clock.now_ms(),
                  "power_dbm": self.tx_power_dbm, "rssi": self.rssi_dbm + self.tx_power_dbm - REF_POWER_DBM,
                  "snr": self.snr_db + self.tx_power_dbm - REF_POWER_DBM}
        self._sock.sendto(encode_datagram(header, data), self._addr)
        self.tx_count += 1
        self.state = "standby"

    def recv(self, timeout_ms, continuous=False):
        """Listen for ``timeout_ms`` node-ms on the configured channel. Returns (phy, rssi_dbm, snr_db)
        once a packet whose preamble starts in the window has been received to its end, else None.
        ``continuous`` (a Class C window, the chips' RX continuous mode): the receiver polls the air in
        steps of _CONTINUOUS_STEP_MS node-ms and returns the first packet as soon as it has been received,
        instead of at the end of the window."""
        if not self.configured:
            raise UdpRadioError("recv: configure() first")
        if timeout_ms < 1:
            raise UdpRadioError("timeout_ms: %r must be >= 1" % (timeout_ms,))
        self.state = "rx"
        clock = self.clock
        t_open = clock.now_ms()
        t_close = t_open + timeout_ms
        late = _LOCK_SYMBOLS * airtime.symbol_time_us(self.sf, self.bw_hz) // 1000
        self._drain()
        got = self._take(t_open - late, clock.now_ms() if continuous else t_close)
        while got is None and continuous and clock.now_ms() < t_close:
            step = t_close - clock.now_ms()
            clock.sleep_ms(step if step < _CONTINUOUS_STEP_MS else _CONTINUOUS_STEP_MS)
            self._drain()
            got = self._take(t_open - late, clock.now_ms())
        if got is None and not continuous:
            # Listen for the whole window (real time: the network may still be sending), then look
            # for a packet whose preamble started inside it.
            clock.sleep_ms(timeout_ms)
            self._drain()
            got = self._take(t_open - late, t_close)
        if got is None:
            self.rx_timeouts += 1
            self.state = "standby"
            return None
        header, phy = got
        end = header["tmst_ms"] + airtime.time_on_air_ms(len(phy), self.sf, self.bw_hz, preamble=self.preamble,
                                                         crc=False)
        wait = end - clock.now_ms()
        if wait > 0:
            clock.sleep_ms(wait)  # received to its last symbol
        self.rx_ok += 1
        self.state = "standby"
        self.last_event = "rx %d bytes at %d Hz SF%d" % (len(phy), self.freq_hz, self.sf)
        return phy, header.get("rssi", -80), header.get("snr", 7.0)

    def sleep(self):
        self.state = "sleep"

    def standby(self):
        self.state = "standby"

    def close(self):
        self._poll.unregister(self._sock)
        self._sock.close()

    # ---- helpers ----

    def _drain(self):
        # Queue every datagram that has arrived.
        while self._poll.poll(0):
            data, _ = self._sock.recvfrom(_MAX_DGRAM)
            try:
                header, phy = decode_datagram(data)
            except ValueError as e:
                self.last_event = str(e)
                continue
            if header["dir"] != "down":
                continue
            if len(self._pending) >= _MAX_PENDING:
                self._pending.pop(0)
            self._pending.append((header, phy))

    def _take(self, t_lock, t_close):
        # The first pending downlink on our channel whose preamble starts in [t_lock, t_close];
        # those whose time has passed are gone from the air (counted as missed when on our channel).
        keep = []
        found = None
        for item in self._pending:
            h = item[0]
            same = (h["freq_hz"] == self.freq_hz and h["sf"] == self.sf and h["bw_hz"] == self.bw_hz
                    and bool(h.get("invert_iq", True)) == self.invert_iq)
            t = h["tmst_ms"]
            if found is None and same and t_lock <= t <= t_close:
                found = item
            elif t < t_lock:
                if same:
                    self.rx_missed += 1
                    self.last_event = "missed a downlink: window opened %d ms after its preamble" % (t_lock - t)
            else:
                keep.append(item)
        self._pending = keep
        return found
