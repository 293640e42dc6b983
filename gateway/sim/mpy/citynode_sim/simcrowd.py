# Crowd-counting radios of the sim board (used by SimHal.wifi_source / SimHal.bluetooth): the
# synthetic populations of citynode_sim.synthetic, paced by the sim clock so that every window
# hears the same devices again, as a node standing in a square would.
class PacedWifi:
    """A SyntheticWifi population replayed every `period_s` of virtual time: the same devices keep
    probing (as people standing around do), so a window counts the population, not the poll rate."""

    def __init__(self, hal, kwargs, period_s):
        self.hal = hal
        self.kwargs = dict(kwargs)
        self.kwargs.setdefault("seed", hal.device_seed(5))
        self.period_ms = int(period_s * 1000)
        self.source = None
        self.started_ms = None

    def read(self, buf):
        now = self.hal.clock.ticks_ms()
        if self.source is None or now - self.started_ms >= self.period_ms:
            from citynode_sim.synthetic import SyntheticWifi

            self.source = SyntheticWifi(**self.kwargs)
            self.started_ms = now
        return self.source.read(buf)

    def quiet_until_ms(self):
        """After a read of 0: the virtual ms of the next replay (citynode_sim.simlink polls less)."""
        return self.started_ms + self.period_ms if self.started_ms is not None else 0


class PacedBluetooth:
    """Stand-in for the `bluetooth` module on the sim board: a SyntheticBluetooth population whose
    adverts arrive by IRQ when a scan starts and again every `period_s` of virtual time while the
    scan runs (a continuous gap_scan(0) on a real node hears the same devices over and over)."""

    def __init__(self, hal, kwargs, period_s, adverts=None):
        if adverts is None:  # given: the population lives on the host (citynode_sim.simlink)
            from citynode_sim.synthetic import SyntheticBluetooth

            kwargs = dict(kwargs)
            kwargs.setdefault("seed", hal.device_seed(6))
            adverts = SyntheticBluetooth(**kwargs).adverts
        self.adverts = adverts
        self.clock = hal.clock
        self.period_ms = int(period_s * 1000)

    def BLE(self):
        return _PacedBLE(self)


class _PacedBLE:
    _IRQ_SCAN_RESULT = 5
    _IRQ_SCAN_DONE = 6

    def __init__(self, owner):
        self.owner = owner
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
        addr = self._addr
        for addr_type, a, rssi in self.owner.adverts:
            addr[:] = a
            # like the real module: the memoryviews are valid only during the callback
            self._irq(self._IRQ_SCAN_RESULT, (addr_type, memoryview(addr), 0, rssi, memoryview(self._data)))
        for i in range(6):
            addr[i] = 0  # no address lingers in the simulator's scratch either

    def gap_scan(self, duration_ms, interval_us=1280000, window_us=11250, active=False):
        clock = self.owner.clock
        if self._timer is not None:
            clock.cancel(self._timer)
            self._timer = None
        if duration_ms is None:
            return
        self._deliver()
        if duration_ms == 0:
            self._timer = clock.every(self.owner.period_ms, self._deliver)
        elif self._irq is not None:
            self._irq(self._IRQ_SCAN_DONE, ())
