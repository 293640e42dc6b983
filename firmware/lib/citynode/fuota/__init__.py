# FUOTA: the LoRaWAN application-layer packages ChirpStack v4 drives (docs/design/fuota.md).
# Each package is a small module imported only when a downlink arrives on its fPort, so a node that is
# never updated pays nothing for them. A package object takes a downlink payload and returns the
# uplink answer (bytes, or None when the specification says the device stays silent); it never raises
# on malformed input.
from citynode.compat import const

PORT_MULTICAST = const(200)  # TS005 Remote Multicast Setup, default fPort
PORT_FRAGMENTATION = const(201)  # TS004 Fragmented Data Block Transport, default fPort
PORT_CLOCK = const(202)  # TS003 Application Layer Clock Synchronization, default fPort


def le(b, pos, n):
    """Unsigned little-endian integer of ``n`` bytes at ``b[pos]``."""
    v = 0
    for i in range(n - 1, -1, -1):
        v = (v << 8) | b[pos + i]
    return v


def put_le(buf, pos, value, n):
    for i in range(n):
        buf[pos + i] = (value >> (8 * i)) & 0xFF


class Fuota:
    """The three packages behind one call, each imported and made on the first downlink on its port.

    ``gen_app_key``: the node's GenAppKey (16 bytes; TS005 McRootKey, TS004 v2 MIC). ``store``: where a
    data block is reassembled (``citynode.fuota.store.FileStore`` on a node). ``versions``: the versions
    of TS003, TS004 and TS005 the device profile in ChirpStack names (1 or 2 each).
    """

    def __init__(self, gen_app_key, store, versions=(2, 2, 2), max_missing=128, max_groups=1,
                 freq_ok=None, dr_ok=None):
        self._key = gen_app_key
        self._store = store
        self._versions = versions
        self._max_missing = max_missing
        self._max_groups = max_groups
        self._freq_ok = freq_ok
        self._dr_ok = dr_ok
        self.clock = None
        self.fragmentation = None
        self.multicast = None

    def handle(self, port, payload, now_gps_s=0):
        """The answer (bytes) to send on ``port`` for a downlink there, or None (also for other ports)."""
        if port == PORT_CLOCK:
            if self.clock is None:
                from citynode.fuota.clock import ClockSync

                self.clock = ClockSync(self._versions[0])
            return self.clock.handle(payload, now_gps_s)
        if port == PORT_FRAGMENTATION:
            if self.fragmentation is None:
                from citynode.fuota.fragmentation import Fragmentation

                self.fragmentation = Fragmentation(self._store, self._versions[1], self._max_missing, self._key)
            return self.fragmentation.handle(payload, now_gps_s)
        if port == PORT_MULTICAST:
            if self.multicast is None:
                from citynode.fuota.multicast import MulticastSetup

                self.multicast = MulticastSetup(self._key, self._versions[2], self._max_groups, self._freq_ok,
                                                self._dr_ok)
            return self.multicast.handle(payload, now_gps_s)
        return None
