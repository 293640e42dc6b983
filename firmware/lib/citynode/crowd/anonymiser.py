# Counts distinct devices per window without ever keeping an address.
#
# Method: each address (6 bytes) is hashed with HMAC-SHA256 (RFC 2104) under a 32-byte key from
# os.urandom(); the first 4 bytes of the MAC go into a fixed-size open-addressing set. At window end only
# the two counts are returned; the set is wiped and a NEW random key is drawn. The key is never stored,
# logged or sent, so a device seen in two windows gives unrelated hashes: windows cannot be linked, and
# nothing that leaves the node (two integers) depends on an address except through the count.
#
# 4 bytes are kept, 31 bits of them compared (the last byte's low bit marks a used slot): two devices
# of one window merge with probability n*(n-1)/2 / 2**31 (birthday bound), 6e-5 for 512 devices and
# 2e-4 for 1000, i.e. an undercount of one device in one window out of several thousand; negligible
# next to the method's real limits below, and half the RAM of 8-byte hashes. Memory is flat: the sets are
# preallocated, cap * 4/3 + 1 slots of 4 bytes per kind (load factor <= 0.75, not rounded up to a power
# of two: 2 x 2732 bytes for 512 devices per kind instead of 2 x 4096); beyond `cap` devices per kind
# new devices are not counted and `last_overflow` reports it for that window. The slot count changes
# neither what is kept (4 bytes of a keyed hash) nor how long (one window), only where it is kept.
#
# Limits (see the crowd counting README section): a randomised MAC (locally administered bit set) may
# change during a window and count twice; one person with phone + watch counts twice; BLE devices with
# rotating private addresses count once per address.
import hashlib
import os

from citynode.compat import const

try:
    from citynode.drivers import ConfigError
except ImportError:

    class ConfigError(ValueError):
        def __init__(self, field, message="invalid value"):
            super().__init__("%s: %s" % (field, message))
            self.field = field


_KEY_LEN = const(32)  # HMAC-SHA256 key (RFC 2104 2: at least L = 32 bytes)
_BLOCK = const(64)  # SHA-256 block size
_DIGEST = const(4)  # truncated hash kept per device
_MAC_LEN = const(6)
_LOCAL_BIT = const(0x02)  # IEEE 802 first octet: locally administered (randomised) address
_GROUP_BIT = const(0x01)  # first octet: group (multicast) address, never a transmitter

WIFI = const(0)
BLE = const(1)


class _HashSet:
    """Fixed-capacity set of 4-byte values in one bytearray (linear probing, all-zero = empty slot)."""

    def __init__(self, cap):
        self._slots = cap + cap // 3 + 1  # load factor <= 0.75
        self._t = bytearray(self._slots * _DIGEST)
        self.cap = cap
        self.count = 0
        self.overflow = False

    def add(self, d):
        # d: digest (>= 4 bytes). Returns True if new.
        t = self._t
        slots = self._slots
        i = (d[0] | (d[1] << 8) | (d[2] << 16)) % slots
        last = d[3] | 1  # stored with its low bit set, so no value is all zero
        while True:
            o = i * _DIGEST
            if t[o + 3] == 0:  # empty slot: not present
                if self.count >= self.cap:
                    self.overflow = True
                    return False
                t[o] = d[0]
                t[o + 1] = d[1]
                t[o + 2] = d[2]
                t[o + 3] = last
                self.count += 1
                return True
            if t[o + 3] == last and t[o] == d[0] and t[o + 1] == d[1] and t[o + 2] == d[2]:
                return False
            i += 1
            if i == slots:
                i = 0

    def clear(self):
        t = self._t
        for k in range(len(t)):
            t[k] = 0
        self.count = 0
        self.overflow = False


class Anonymiser:
    """Distinct-device counter with a per-window keyed hash.

    cap             devices per kind (WiFi, BLE) per window; RAM = 2 * (cap * 4/3 + 1) * 4 bytes
    rssi_floor_dbm  sightings weaker than this are ignored (-100..0); keeps far-away devices out
    skip_randomised ignore WiFi addresses with the locally administered bit (randomised MACs)
    urandom         key source (os.urandom); injectable for tests only
    """

    def __init__(self, cap=512, rssi_floor_dbm=-90, skip_randomised=False, urandom=os.urandom):
        if not isinstance(cap, int) or not 1 <= cap <= 8192:
            raise ConfigError("cap", "must be 1..8192, got %r" % (cap,))
        if not isinstance(rssi_floor_dbm, int) or not -127 <= rssi_floor_dbm <= 0:
            raise ConfigError("rssi_floor_dbm", "must be -127..0 dBm, got %r" % (rssi_floor_dbm,))
        self.rssi_floor_dbm = rssi_floor_dbm
        self.skip_randomised = skip_randomised
        self._urandom = urandom
        self._sets = (_HashSet(cap), _HashSet(cap))
        self._ipad = bytearray(_BLOCK)
        self._opad = bytearray(_BLOCK)
        self._scratch = bytearray(_MAC_LEN)  # the only place a raw address is copied to; wiped after use
        self.below_floor = 0  # sightings ignored this window (diagnostics, no identities)
        self.last_overflow = False
        self._rekey()

    def __repr__(self):  # never shows key material
        return "<Anonymiser wifi=%d ble=%d>" % (self._sets[WIFI].count, self._sets[BLE].count)

    def _rekey(self):
        key = self._urandom(_KEY_LEN)
        if len(key) != _KEY_LEN:
            raise ConfigError("urandom", "returned %d bytes" % len(key))
        for i in range(_BLOCK):
            k = key[i] if i < _KEY_LEN else 0
            self._ipad[i] = k ^ 0x36  # RFC 2104 2: ipad
            self._opad[i] = k ^ 0x5C  # RFC 2104 2: opad
        # `key` is an immutable bytes object: dropped here, its memory is reused by the next allocations.

    def add(self, kind, buf, off, rssi):
        """Count the address buf[off:off+6] of `kind` (WIFI or BLE) seen at `rssi` dBm.

        Returns True if it is a new device in this window. Group addresses are never counted.
        """
        if rssi < self.rssi_floor_dbm:
            self.below_floor += 1
            return False
        first = buf[off]
        if first & _GROUP_BIT and kind == WIFI:
            return False
        if self.skip_randomised and kind == WIFI and first & _LOCAL_BIT:
            return False
        s = self._scratch
        for i in range(_MAC_LEN):
            s[i] = buf[off + i]
        h = hashlib.sha256(self._ipad)
        h.update(s)
        for i in range(_MAC_LEN):
            s[i] = 0
        inner = h.digest()
        h = hashlib.sha256(self._opad)
        h.update(inner)
        return self._sets[kind].add(h.digest())

    def add_wifi(self, buf, off, rssi):
        return self.add(WIFI, buf, off, rssi)

    def add_ble(self, buf, off, rssi):
        return self.add(BLE, buf, off, rssi)

    def counts(self):
        """Counts so far in this window (no identities)."""
        return {"wifi_devices": self._sets[WIFI].count, "ble_devices": self._sets[BLE].count}

    def end_window(self):
        """Close the window: return the counts, forget every hash, draw a new key.

        Returns {"wifi_devices": n, "ble_devices": m}; `last_overflow` tells whether a cap was reached.
        """
        out = self.counts()
        self.last_overflow = self._sets[WIFI].overflow or self._sets[BLE].overflow
        for s in self._sets:
            s.clear()
        self.below_floor = 0
        self._rekey()
        return out
