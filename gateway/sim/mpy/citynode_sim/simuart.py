# Simulated UART (scripted byte streams) and the scripted-sensor base of the UART sensor simulators.
# Its own module: not every role's sim board has a UART, few need the I2C bus of citynode_sim.simbus.
from citynode_sim.simio import LOG_LIMIT, log  # noqa: F401  (re-exported)
from citynode_sim.simrandom import SimRandom


class SimUART:
    """UART with a scripted receive stream. `responder(data)` sees every write and may feed() replies.

    `chunk` limits how many bytes one read() returns, to exercise partial-frame handling.
    read() returns None when nothing is waiting, like machine.UART after its timeout.
    """

    def __init__(self, rx=b"", responder=None, chunk=0):
        self.rx = bytearray(rx)
        self.tx = []
        self.responder = responder
        self.chunk = chunk

    def feed(self, data):
        self.rx.extend(data)

    def any(self):
        return len(self.rx)

    def read(self, n=-1):
        if not self.rx:
            return None
        if n is None or n < 0:
            n = len(self.rx)
        if self.chunk:
            n = min(n, self.chunk)
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out

    def readinto(self, buf, n=-1):
        data = self.read(len(buf) if n < 0 else n)
        if not data:
            return None
        for i in range(len(data)):
            buf[i] = data[i]
        return len(data)

    def write(self, data):
        data = bytes(data)
        log(self.tx, data)
        if self.responder is not None:
            self.responder(data)
        return len(data)

    def flush(self):
        pass


class ScriptedUART(SimUART):
    """Shared plumbing: scripted values, injected bytes, optional streaming paced by a clock."""

    def __init__(self, values=None, seed=1, inject=(), corrupt=(), dead=False, chunk=0, clock=None,
                 period_ms=1000):
        SimUART.__init__(self, b"", self._on_write, chunk)
        self.values = list(values) if values else []
        self.rng = SimRandom(seed)
        self.inject = list(inject)  # byte strings fed before the next frames, one per frame
        self.corrupt = set(corrupt)  # indexes (0-based) of data frames sent with a bad checksum
        self.dead = dead
        self.clock = clock
        self.period_ms = period_ms
        self.sent = 0
        self.streaming = False
        self._next_ms = 0

    def _value(self):
        if self.values:
            return self.values.pop(0) if len(self.values) > 1 else self.values[0]
        return self._random_value()

    def _emit_data(self):
        if self.inject:
            self.feed(self.inject.pop(0))
        frame = bytearray(self._data_frame(self._value()))
        if self.sent in self.corrupt:
            frame[-2 if frame[0] == 0xAA else -1] ^= 0x5A  # break the checksum byte
        self.sent += 1
        self.feed(frame)

    def any(self):
        if self.streaming and not self.dead and not self.rx:
            if self.clock is None:
                self._emit_data()
            elif self.clock.ticks_ms() >= self._next_ms:
                self._next_ms = self.clock.ticks_ms() + self.period_ms
                self._emit_data()
        return len(self.rx)
