# The sim board's `bluetooth` module for a node whose simulators run on the host (citynode_sim.simlink):
# the BLE population (citynode_sim.synthetic.SyntheticBluetooth, paced by citynode_sim.simcrowd) lives
# in the host process, and each scan period its adverts come over the link as raw records and are
# handed to the scan IRQ one by one, as a real BLE stack hands them over from its own buffers. The node
# holds no population, only one record at a time.
#
# Record (8 bytes, the host's "ble" "adverts" reply): addr_type, the 6-byte address, rssi (signed dBm).
_IRQ_SCAN_RESULT = 5
_IRQ_SCAN_DONE = 6
_RECORD = 8


class LinkBluetooth:
    """Stand-in for the `bluetooth` module: BLE() is the host population's scanner."""

    def __init__(self, link, period_ms):
        self._link = link
        self.period_ms = period_ms

    def BLE(self):
        return _LinkBLE(self._link, self.period_ms)


class _LinkBLE:
    def __init__(self, link, period_ms):
        self._link = link
        self._period_ms = period_ms
        self._active = False
        self._irq = None
        self._timer = None
        self._addr = bytearray(6)
        self._data = bytearray(3)

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
        return self._active

    def irq(self, handler):
        self._irq = handler

    def _deliver(self):
        if self._irq is None:
            return
        records = self._link.call("ble", "adverts")
        addr = self._addr
        for o in range(0, len(records) - _RECORD + 1, _RECORD):
            for i in range(6):
                addr[i] = records[o + 1 + i]
            rssi = records[o + 7]
            # like the real module: the memoryviews are valid only during the callback
            self._irq(_IRQ_SCAN_RESULT, (records[o], memoryview(addr), 0, rssi - 256 if rssi > 127 else rssi,
                                         memoryview(self._data)))
        for i in range(len(records)):
            records[i] = 0  # no address lingers in the simulator's buffers either
        for i in range(6):
            addr[i] = 0

    def gap_scan(self, duration_ms, interval_us=1280000, window_us=11250, active=False):
        clock = self._link.clock
        if self._timer is not None:
            clock.cancel(self._timer)
            self._timer = None
        if duration_ms is None:
            return
        self._deliver()
        if duration_ms == 0:
            self._timer = clock.every(self._period_ms, self._deliver)
        elif self._irq is not None:
            self._irq(_IRQ_SCAN_DONE, ())
