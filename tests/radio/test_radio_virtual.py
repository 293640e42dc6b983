"""VirtualRadio (the sim board's radio) on the MicroPython unix port, against a UDP peer in this test.

The peer plays the network-server simulator: it checks the uplink datagram's header and answers with a
downlink datagram in the documented format.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest


class Peer:
    """UDP network-server stand-in: records uplinks, answers each with the queued downlinks."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.uplinks: list[tuple[dict, bytes]] = []
        self.replies: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                continue
            head, _, frame = data.partition(b"\n")
            self.uplinks.append((json.loads(head), frame))
            for r in self.replies:
                self.sock.sendto(r, addr)
            self.replies = []

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


def down(frame: bytes, **header) -> bytes:
    h = {"dir": "down", "freq": 868100000, "sf": 7, "bw": 125000, "iq": True, "rssi": -57, "snr": 6.5}
    h.update(header)
    return json.dumps(h).encode() + b"\n" + frame


def test_uplink_datagram_format(mpy, peer):
    mpy.run(
        f"from citynode.radio.virtual import VirtualRadio\nr = VirtualRadio('127.0.0.1', {peer.port})\n"
        "r.configure(868100000, 9, 125000, tx_power_dbm=14)\nr.send(b'\\x40\\x01\\x02')\nr.recv(300)\nr.close()\n"
    )
    assert len(peer.uplinks) == 1
    head, frame = peer.uplinks[0]
    assert frame == b"\x40\x01\x02"
    assert head == {"dir": "up", "freq": 868100000, "sf": 9, "bw": 125000, "cr": 5, "power": 14, "iq": False,
                    "crc": True, "len": 3, "toa_us": 103424}  # SF9: 25.25 symbols of 4.096 ms


def test_downlink_is_received_when_the_window_matches(mpy, peer):
    peer.replies = [down(b"\x60\xaa", freq=869525000, sf=12), down(b"\x60\xbb")]
    got = mpy.json(
        f"import json\nfrom citynode.radio.virtual import VirtualRadio\nr = VirtualRadio('127.0.0.1', {peer.port})\n"
        "r.configure(868100000, 7, 125000)\nr.send(b'up')\n"
        "r.configure(868100000, 7, 125000, invert_iq=True, crc=False)\nrx1 = r.recv(2000)\n"
        "r.configure(869525000, 12, 125000, invert_iq=True, crc=False)\nrx2 = r.recv(2000)\n"
        "none = r.recv(100)\nr.close()\n"
        "print(json.dumps([list(rx1[0]), rx1[1], rx1[2], list(rx2[0]), none]))"
    )
    # the RX2 frame arrived first but is only heard once the receiver is on 869.525 MHz / SF12
    assert got == [[0x60, 0xBB], -57, 6.5, [0x60, 0xAA], None]


def test_downlink_with_normal_iq_is_not_heard(mpy, peer):
    peer.replies = [down(b"\x60\xbb", iq=False), b"garbage without header"]
    got = mpy.json(
        f"import json\nfrom citynode.radio.virtual import VirtualRadio\nr = VirtualRadio('127.0.0.1', {peer.port})\n"
        "r.configure(868100000, 7, 125000)\nr.send(b'up')\nr.configure(868100000, 7, 125000, invert_iq=True)\n"
        "print(json.dumps(r.recv(500)))"
    )
    assert got is None


def test_virtual_radio_imports_and_encodes_under_cpython():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware" / "lib"))
    from citynode.radio.virtual import decode_datagram, encode_datagram

    assert decode_datagram(encode_datagram({"dir": "down", "sf": 7}, b"\x01\n\x02")) == ({"dir": "down", "sf": 7}, b"\x01\n\x02")
    with pytest.raises(ValueError):
        decode_datagram(b"no header")
