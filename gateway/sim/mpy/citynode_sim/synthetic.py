# Synthetic WiFi and BLE traffic for tests and the virtual device (no radio on the unix port).
#
# SyntheticWifi is a frame source (read(buf) -> whole records, see citynode/crowd/__init__.py) that emits
# probe requests from a population of devices, mixed with beacons, data frames and truncated probes.
# A fraction of the devices use randomised (locally administered) addresses, optionally changing them
# every `rotate_after` probes, which is what makes real-world counts inflate.
# SyntheticBluetooth stands in for the `bluetooth` module: gap_scan() delivers one advert per device
# through the IRQ, like the real module. Both use their own xorshift32 so MicroPython and CPython produce
# the same traffic for the same seed.
from citynode.crowd import RECORD_HEADER

_BROADCAST = b"\xff\xff\xff\xff\xff\xff"
_RATES_IE = b"\x01\x04\x02\x04\x0b\x16"  # Supported Rates element: 1, 2, 5.5, 11 Mb/s
_OUIS = (b"\x00\x1a\x11", b"\x3c\x5a\xb4", b"\xf4\xf5\xd8", b"\x00\x50\xf2")  # plausible vendor prefixes


class XorShift32:
    """Marsaglia xorshift32: deterministic and identical on every runtime."""

    def __init__(self, seed=1):
        self.s = (seed & 0xFFFFFFFF) or 1

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n


def random_mac(rng, randomised):
    """A unicast MAC: randomised = locally administered bit set (how phones randomise), else vendor OUI."""
    if randomised:
        first = (rng.below(256) & 0xFC) | 0x02
        return bytes((first, rng.below(256), rng.below(256), rng.below(256), rng.below(256), rng.below(256)))
    return _OUIS[rng.below(len(_OUIS))] + bytes((rng.below(256), rng.below(256), rng.below(256)))


def probe_request(mac, seq=0, ssid=b""):
    """An 802.11 probe request (IEEE 802.11-2020 9.3.3.9) from `mac`, wildcard or given SSID."""
    return (
        b"\x40\x00\x00\x00"
        + _BROADCAST
        + bytes(mac)
        + _BROADCAST
        + bytes(((seq << 4) & 0xFF, (seq >> 4) & 0xFF))
        + bytes((0, len(ssid)))
        + ssid
        + _RATES_IE
    )


def beacon(bssid):
    return b"\x80\x00\x00\x00" + _BROADCAST + bytes(bssid) * 2 + b"\x00\x00" + bytes(12) + b"\x00\x04test"


def data_frame(src):
    return b"\x08\x01\x00\x00" + bytes(src) + bytes(src) + _BROADCAST + b"\x00\x00" + b"\xaa\xaa\x03"


class SyntheticWifi:
    """Frame source with `devices` devices, each sending `probes` probe requests at a fixed RSSI.

    randomised_pct  percentage of devices with randomised addresses
    rotate_after    a randomised device draws a new address after this many probes (0 = never)
    noise           also emit beacons, data frames and truncated probe requests
    rssi_dbm        (weakest, strongest) RSSI range of the devices
    """

    def __init__(
        self, devices=40, probes=3, randomised_pct=50, rotate_after=0, noise=True, seed=1, rssi_dbm=(-95, -35)
    ):
        self._rng = XorShift32(seed)
        self._rotate = rotate_after
        self._noise = noise
        lo, hi = rssi_dbm
        self.devices = []  # [mac, rssi, randomised, probes sent]
        for i in range(devices):
            r = i * 100 < randomised_pct * devices
            self.devices.append([random_mac(self._rng, r), lo + self._rng.below(hi - lo + 1), r, 0])
        self._total = devices * probes  # probe i comes from device i % devices
        self._i = 0
        self._pending = None
        self.addresses_used = len(self.devices)  # addresses put on air, grows with rotation

    def expected_distinct(self, rssi_floor_dbm=-127):
        """Devices at or above the RSSI floor (the count a perfect counter reports if nothing rotates)."""
        return sum(1 for d in self.devices if d[1] >= rssi_floor_dbm)

    def _next_frames(self):
        dev = self.devices[self._i % len(self.devices)]
        self._i += 1
        if self._rotate and dev[2] and dev[3] and dev[3] % self._rotate == 0:
            dev[0] = random_mac(self._rng, True)
            self.addresses_used += 1
        dev[3] += 1
        out = [(probe_request(dev[0], dev[3]), dev[1])]
        if self._noise and self._i % 5 == 0:
            out.append((beacon(random_mac(self._rng, False)), -60))
            out.append((data_frame(dev[0]), dev[1]))
            out.append((probe_request(dev[0])[:16], dev[1]))  # truncated capture
        return out

    def read(self, buf):
        pos = 0
        while self._pending or self._i < self._total:
            frames = self._pending or self._next_frames()
            self._pending = None
            need = 0
            for f, _ in frames:
                need += RECORD_HEADER + len(f)
            if pos + need > len(buf):
                if pos == 0:
                    raise ValueError(
                        "buffer of %d bytes too small for %d bytes of records" % (len(buf), need)
                    )
                self._pending = frames  # emitted by the next call
                return pos
            for frame, rssi in frames:
                n = len(frame)
                buf[pos] = n & 0xFF
                buf[pos + 1] = n >> 8
                buf[pos + 2] = rssi & 0xFF
                buf[pos + 3] = 6  # channel 6
                buf[pos + RECORD_HEADER : pos + RECORD_HEADER + n] = frame
                pos += RECORD_HEADER + n
        return pos


class _SyntheticBLE:
    def __init__(self, adverts):
        self._adverts = adverts
        self._irq = None
        self._active = False

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
        return self._active

    def irq(self, handler):
        self._irq = handler

    def gap_scan(self, duration_ms, interval_us=1280000, window_us=11250, active=False):
        if duration_ms is None or self._irq is None:
            return
        data = bytearray(31)
        for addr_type, addr, rssi in self._adverts:
            a = bytearray(addr)
            # like the real module: memoryviews valid only during the callback
            self._irq(5, (addr_type, memoryview(a), 0, rssi, memoryview(data)[:3]))
            for i in range(6):
                a[i] = 0
        self._irq(6, ())


class SyntheticBluetooth:
    """Stand-in for the `bluetooth` module: BLE().gap_scan() reports each device's advert once."""

    def __init__(self, devices=20, random_pct=70, seed=2, rssi_dbm=(-95, -40)):
        rng = XorShift32(seed)
        lo, hi = rssi_dbm
        self.adverts = []
        for i in range(devices):
            rnd = i * 100 < random_pct * devices
            self.adverts.append((1 if rnd else 0, random_mac(rng, rnd), lo + rng.below(hi - lo + 1)))

    def BLE(self):
        return _SyntheticBLE(self.adverts)

    def expected_distinct(self, rssi_floor_dbm=-127):
        return sum(1 for a in self.adverts if a[2] >= rssi_floor_dbm)
