# Simulated UART (scripted byte streams) and the bounded logs of the sim peripherals. Its own module:
# every role's sim board needs a UART or a log, few need the I2C bus of citynode.hal.simbus.
from citynode.compat import const

LOG_LIMIT = const(64)  # recorded writes/commands kept per device: enough for a test, bounded for 1000 cycles


def log(entries, item):
    """Append to a bounded log (oldest entries dropped), so simulators do not grow the heap."""
    if len(entries) >= LOG_LIMIT:
        entries.pop(0)
    entries.append(item)


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
