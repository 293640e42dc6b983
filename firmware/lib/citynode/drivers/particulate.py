# Laser particulate sensors on a UART (SDS011, PMS5003): the chip-agnostic part.
#
# The laser diode and fan wear out (SDS011: ~8000 h of laser life), so the sensor sleeps between
# measurements. A reading wakes it, waits out the warm-up (the fan must reach speed before the
# counts are stable: 30 s in both datasheets), averages a few frames and puts it back to sleep.
# Frame sync is a small state machine over a fixed receive buffer: garbage is skipped, partial frames
# wait for more bytes, bad checksums drop one byte and resynchronise on the next header.
from citynode.compat import const
from citynode.drivers import ConfigError, SensorError, check_range

_BUF = const(96)  # receive buffer; > 2 PMS5003 frames
_POLL_MS = const(20)
_TRIES = const(3)
_DEBUG = const(False)


class ParticulateSensor:
    """Base class: subclasses set NAME and FRAME_LEN and implement _parse(mv, n) plus the commands.

    _parse(mv, n) looks at the first n buffered bytes and returns (consumed, values): consumed bytes
    are dropped; values is None (no complete frame yet / not a data frame) or a dict of readings.
    Returning consumed == 0 means "need more bytes".
    """

    NAME = "particulate"
    FRAME_LEN = 10

    def __init__(self, uart, clock=None, *, warmup_s=30, samples=3, sample_interval_ms=1000,
                 timeout_ms=1500, sleep_after=True):
        if clock is None:
            from citynode.hal import clock as _clock

            clock = _clock()
        self.uart = uart
        self.clock = clock
        self.warmup_ms = check_range("warmup_s", warmup_s, 0, 300) * 1000
        self.samples = check_range("samples", samples, 1, 60)
        self.sample_interval_ms = check_range("sample_interval_ms", sample_interval_ms, 0, 60000)
        self.timeout_ms = check_range("timeout_ms", timeout_ms, 100, 60000)
        self.sleep_after = sleep_after
        self._buf = bytearray(_BUF)
        self._mv = memoryview(self._buf)
        self._n = 0
        self.awake_since = None  # ticks_ms of the last wake, None while asleep
        # diagnostics, never reset: useful in device_status and when debugging a noisy cable
        self.bad_checksums = 0
        self.skipped_bytes = 0
        self.frames = 0
        self.last_samples = 0

    # --- receive side -------------------------------------------------------------------------
    def _drop(self, k):
        """Forget the first k buffered bytes."""
        rest = self._n - k
        buf = self._buf
        for i in range(rest):  # forward copy; no allocation, safe because the regions move left
            buf[i] = buf[i + k]
        self._n = rest if rest > 0 else 0

    def _pump(self):
        """Move waiting UART bytes into the buffer. Returns True when bytes arrived."""
        uart = self.uart
        waiting = uart.any()
        if not waiting:
            return False
        room = _BUF - self._n
        if room < waiting:  # overflowing: keep the newest bytes, they hold the freshest frame
            drop = min(self._n, waiting - room)
            self.skipped_bytes += drop
            self._drop(drop)
            room = _BUF - self._n
        data = uart.read(min(waiting, room))
        if not data:
            return False
        k = len(data)
        self._buf[self._n:self._n + k] = data
        self._n += k
        return True

    def _take(self):
        """Parse everything buffered; return the first data frame's values, or None."""
        while self._n:
            consumed, values = self._parse(self._mv, self._n)
            if not consumed:
                return None
            self._drop(consumed)
            if values is not None:
                self.frames += 1
                return values
        return None

    def flush_input(self):
        """Drop buffered and waiting bytes (bounded: a streaming sensor never runs dry)."""
        for _ in range(8):
            waiting = self.uart.any()
            if not waiting:
                break
            self.uart.read(min(waiting, _BUF))
        self._n = 0

    def read_frame(self, timeout_ms=None):
        """Wait for one valid data frame; raise SensorError after timeout_ms."""
        clock = self.clock
        timeout_ms = self.timeout_ms if timeout_ms is None else timeout_ms
        start = clock.ticks_ms()
        while True:
            values = self._take()
            if values is not None:
                return values
            if not self._pump():
                if clock.ticks_diff(clock.ticks_ms(), start) >= timeout_ms:
                    raise SensorError(self.NAME, "no valid frame within %d ms (%d bad checksums)"
                                      % (timeout_ms, self.bad_checksums))
                clock.sleep_ms(_POLL_MS)

    # --- power and measurement ----------------------------------------------------------------
    def wake(self):
        """Start laser and fan; the warm-up clock starts now."""
        self._wake()
        self.awake_since = self.clock.ticks_ms()

    def sleep(self):
        """Stop laser and fan."""
        self._sleep()
        self.awake_since = None

    def warmup_remaining_ms(self):
        if self.awake_since is None:
            return self.warmup_ms
        left = self.warmup_ms - self.clock.ticks_diff(self.clock.ticks_ms(), self.awake_since)
        return left if left > 0 else 0

    def read(self):
        """Wake, warm up, average `samples` frames, sleep again. Returns {"pm2_5": ug/m3, ...}.

        A sample that stays unreadable after its retries is left out of the average (last_samples
        says how many made it); SensorError only when none did. Always tries to sleep the sensor again.
        """
        try:
            if self.awake_since is None:
                self.wake()
            self.clock.sleep_ms(self.warmup_remaining_ms())
            self.flush_input()  # frames from the warm-up are not representative
            sums = None
            good = 0
            error = None
            for i in range(self.samples):
                if i:
                    self.clock.sleep_ms(self.sample_interval_ms)
                try:
                    values = self.query()
                except SensorError as exc:  # one lost sample does not spoil the others
                    error = exc
                    continue
                good += 1
                if sums is None:
                    sums = dict(values)
                else:
                    for key in values:
                        sums[key] += values[key]
            if not good:
                raise error
            out = {}
            for key in sums:
                out[key] = round(sums[key] / good, 1)
            self.last_samples = good
            if _DEBUG:
                print(self.NAME, out, "bad", self.bad_checksums)
            return out
        finally:
            if self.sleep_after and self.awake_since is not None:
                try:
                    self.sleep()
                except SensorError:
                    pass  # the reading (or its error) matters more than a missed sleep

    # subclass hooks
    def _parse(self, mv, n):
        raise NotImplementedError

    def _wake(self):
        raise NotImplementedError

    def _sleep(self):
        raise NotImplementedError

    def _request(self):
        """Send whatever makes the sensor answer with one data frame (nothing in active mode)."""

    def query(self):
        """Request one data frame and return its values; a lost or corrupted answer is asked for
        again, up to _TRIES times, before SensorError."""
        error = None
        for _ in range(_TRIES):
            self._request()
            try:
                return self.read_frame()
            except SensorError as exc:
                error = exc
        raise error


def particulate_sensor(kind, uart, clock=None, **kwargs):
    """Build the driver named in the node configuration ("sds011" or "pms5003")."""
    if kind == "sds011":
        from citynode.drivers.sds011 import SDS011 as cls
    elif kind == "pms5003":
        from citynode.drivers.pms5003 import PMS5003 as cls
    else:
        raise ConfigError("particulate", "unknown sensor %r (sds011 or pms5003)" % (kind,))
    return cls(uart, clock, **kwargs)
