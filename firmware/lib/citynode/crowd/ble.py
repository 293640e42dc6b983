# BLE advertisements from bluetooth.BLE().gap_scan into the anonymiser (same counting path as WiFi).
#
# MicroPython `bluetooth` (docs: library/bluetooth, "Observer role"): gap_scan(duration_ms, interval_us,
# window_us, active) reports _IRQ_SCAN_RESULT = 5 with (addr_type, addr, adv_type, rssi, adv_data), where
# `addr` and `adv_data` are memoryviews valid only during the callback, and _IRQ_SCAN_DONE = 6.
# The module is passed in: it does not exist on the unix port (use synthetic.SyntheticBluetooth there).
# The IRQ is a scheduled (soft) callback, so hashing inside it is allowed; the address is copied only
# into the anonymiser's scratch buffer.
from citynode.compat import const

try:
    from citynode.drivers import ConfigError
except ImportError:

    class ConfigError(ValueError):
        def __init__(self, field, message="invalid value"):
            super().__init__("%s: %s" % (field, message))
            self.field = field


_IRQ_SCAN_RESULT = const(5)
_IRQ_SCAN_DONE = const(6)
ADDR_PUBLIC = const(0)
ADDR_RANDOM = const(1)  # static random or private (resolvable/non-resolvable): may rotate


class BLECounter:
    """Passive BLE scan feeding advertiser addresses into an Anonymiser.

    bluetooth    the `bluetooth` module (or a stand-in with the same API); None raises ConfigError
    skip_random  ignore random-type addresses (they rotate, see the README's limits)
    interval_us, window_us  scan timing; window == interval scans continuously
    """

    def __init__(self, bluetooth, anonymiser, skip_random=False, interval_us=100000, window_us=100000):
        if bluetooth is None:
            raise ConfigError("bluetooth", "no bluetooth module on this port")
        if not 0 < window_us <= interval_us:
            raise ConfigError("window_us", "must be > 0 and <= interval_us")
        self._ble = bluetooth.BLE()
        self._anon = anonymiser
        self.skip_random = skip_random
        self._interval_us = interval_us
        self._window_us = window_us
        self.adverts = 0
        self.scanning = False

    def start(self, duration_ms=0):
        """Start a passive scan (duration_ms 0 = until stop())."""
        self._ble.active(True)
        self._ble.irq(self._irq)
        self.scanning = True
        self._ble.gap_scan(duration_ms, self._interval_us, self._window_us, False)

    def stop(self):
        if self.scanning:
            self._ble.gap_scan(None)
        self.scanning = False

    def _irq(self, event, data):
        if event == _IRQ_SCAN_RESULT:
            addr_type, addr, _adv_type, rssi, _adv_data = data
            self.handle(addr_type, addr, rssi)
        elif event == _IRQ_SCAN_DONE:
            self.scanning = False

    def handle(self, addr_type, addr, rssi):
        """One advertisement: count its address (6 bytes) if it passes the filters."""
        if len(addr) != 6:
            return False
        if self.skip_random and addr_type == ADDR_RANDOM:
            return False
        self.adverts += 1
        return self._anon.add_ble(addr, 0, rssi)
