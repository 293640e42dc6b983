# VirtualRadio: the `sim` board's radio for the MicroPython unix port. Frames travel as UDP datagrams on
# 127.0.0.1 between the node and a network-server simulator, so a node can be taken through join,
# uplinks and downlinks without RF hardware. It is a Radio like the chip drivers: same configure/send/
# recv/sleep/standby, same argument checks and time on air.
#
# Datagram format (both directions): one line of JSON, a newline (0x0A), then the raw PHYPayload bytes.
#   node -> server: {"dir": "up", "freq": 868100000, "sf": 7, "bw": 125000, "cr": 5, "power": 14,
#                    "iq": false, "crc": true, "len": 23, "toa_us": 61696}\n<frame>
#   server -> node: {"dir": "down", "freq": 868100000, "sf": 7, "bw": 125000, "iq": true,
#                    "rssi": -60, "snr": 7.5}\n<frame>
# "iq" is the IQ inversion the frame was sent with (LoRaWAN downlinks: true). The node sends from an
# ephemeral port; the server answers to the datagram's source address.
# A downlink is received by recv() only if freq (within 1 kHz), sf, bw and iq match the current
# configuration, as a real receiver would; frames that do not match stay queued (up to 4, for at most
# 10 s) so that a frame meant for RX2 is not lost while RX1 is open.
import json
import socket

from citynode.compat import const
from citynode.radio.base import IRQ_RX_DONE, IRQ_TX_DONE, STATE_STANDBY, Radio, RadioError

_MAX_QUEUED = const(4)
_STALE_MS = const(10000)


def encode_datagram(header, frame):
    """Header dict + frame bytes -> datagram bytes."""
    return json.dumps(header).encode() + b"\n" + bytes(frame)


def decode_datagram(datagram):
    """Datagram bytes -> (header dict, frame bytes); ValueError if malformed."""
    i = datagram.find(b"\n")
    if i < 0:
        raise ValueError("datagram without a header line")
    header = json.loads(datagram[:i].decode())
    if not isinstance(header, dict):
        raise ValueError("datagram header is not a JSON object")
    return header, bytes(datagram[i + 1 :])


class VirtualRadio(Radio):
    """A Radio whose air is a UDP socket to a network-server simulator at (host, port)."""

    CHIP = "virtual"
    FREQ_MIN_HZ = 137000000
    FREQ_MAX_HZ = 1020000000
    POWER_MIN_DBM = -9
    POWER_MAX_DBM = 22

    def __init__(self, host="127.0.0.1", port=1780, clock=None, public_network=True):
        self._server = socket.getaddrinfo(host, port)[0][-1]
        self._sock = None
        self._queue = []  # [received_ms, header, frame]
        self._flags = 0
        self._packet = None
        self.sent = 0
        super().__init__(None, None, clock=clock, public_network=public_network)

    def _init_chip(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
        s.setblocking(False)
        self._sock = s
        self.state = STATE_STANDBY

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _apply_config(self):
        pass

    def _standby(self):
        pass

    def _sleep(self):
        pass

    def _start_tx(self, data, timeout_ms):
        header = {
            "dir": "up", "freq": self.freq_hz, "sf": self.sf, "bw": self.bw_hz, "cr": self.cr,
            "power": self.tx_power_dbm, "iq": self.invert_iq, "crc": self.crc, "len": len(data),
            "toa_us": self.time_on_air_us(len(data)),
        }
        try:
            self._sock.sendto(encode_datagram(header, data), self._server)
        except OSError as exc:
            raise RadioError("virtual radio: cannot send to the network-server simulator (%s)" % exc)
        self.sent += 1
        self._flags = IRQ_TX_DONE

    def _start_rx(self, timeout_ms):
        self._flags = 0
        self._packet = None
        return False  # the window is timed by Radio.recv

    def _drain(self):
        now = self._clock.ticks_ms()
        while True:
            try:
                data, _ = self._sock.recvfrom(1024)
            except OSError:
                break
            try:
                header, frame = decode_datagram(data)
            except ValueError:
                continue  # not ours: ignore, as a radio ignores noise
            if header.get("dir") != "down":
                continue
            self._queue.append([now, header, frame])
        # drop stale and excess frames, oldest first
        self._queue = [q for q in self._queue if self._clock.ticks_diff(now, q[0]) < _STALE_MS][-_MAX_QUEUED:]

    def _matches(self, h):
        try:
            return (abs(int(h.get("freq", 0)) - self.freq_hz) <= 1000 and h.get("sf") == self.sf
                    and h.get("bw") == self.bw_hz and bool(h.get("iq")) == self.invert_iq)
        except (TypeError, ValueError):
            return False

    def _irq_status(self):
        if self.state == "rx" and not self._flags:
            self._drain()
            for q in self._queue:
                if self._matches(q[1]):
                    self._queue.remove(q)
                    h = q[1]
                    self._packet = (q[2], int(h.get("rssi", -60)), float(h.get("snr", 7.0)))
                    self._flags = IRQ_RX_DONE
                    break
        return self._flags

    def _irq_clear(self):
        self._flags = 0

    def _read_packet(self):
        p = self._packet
        self._packet = None
        return p
