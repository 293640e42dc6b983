# Simulated I2C bus (register-map devices) and UART (scripted byte streams) for citynode.hal.sim.
from citynode.compat import const

_ENODEV = const(19)  # errno MicroPython's machine.I2C raises when no device ACKs the address
LOG_LIMIT = const(64)  # recorded writes/commands kept per device: enough for a test, bounded for 1000 cycles


def log(entries, item):
    """Append to a bounded log (oldest entries dropped), so simulators do not grow the heap."""
    if len(entries) >= LOG_LIMIT:
        entries.pop(0)
    entries.append(item)


class RegisterDevice:
    """An I2C device modelled as a register map with an auto-incrementing register pointer."""

    def __init__(self, size=256):
        self.regs = bytearray(size)
        self.pointer = 0

    def read(self, reg, n):
        out = bytearray(n)
        for i in range(n):
            out[i] = self.read_reg((reg + i) & 0xFF)
        return out

    def write(self, reg, data):
        for i in range(len(data)):
            self.write_reg((reg + i) & 0xFF, data[i])

    def write_raw(self, buf):
        """A raw bus write: first byte sets the pointer, the rest are written auto-incrementing."""
        if len(buf):
            self.pointer = buf[0]
            if len(buf) > 1:
                self.write(buf[0], buf[1:])

    def read_reg(self, reg):
        return self.regs[reg]

    def write_reg(self, reg, value):
        self.regs[reg] = value


class SimI2C:
    """I2C bus holding RegisterDevices by 7-bit address. Missing addresses raise OSError(ENODEV)."""

    def __init__(self, devices=None):
        self.devices = dict(devices or {})
        self.transactions = 0

    def attach(self, addr, device):
        self.devices[addr] = device
        return device

    def _dev(self, addr):
        self.transactions += 1
        dev = self.devices.get(addr)
        if dev is None:
            raise OSError(_ENODEV)
        return dev

    def scan(self):
        return sorted(self.devices)

    # memory-style access (machine.I2C)
    def readfrom_mem(self, addr, reg, n, addrsize=8):
        return bytes(self._dev(addr).read(reg, n))

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        data = self._dev(addr).read(reg, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        self._dev(addr).write(reg, buf)

    # raw access: first written byte sets the register pointer (Bosch / most sensors, and busio style)
    def writeto(self, addr, buf, stop=True):
        self._dev(addr).write_raw(buf)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        dev = self._dev(addr)
        data = dev.read(dev.pointer, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]
        dev.pointer = (dev.pointer + len(buf)) & 0xFF

    def readfrom(self, addr, n, stop=True):
        buf = bytearray(n)
        self.readfrom_into(addr, buf)
        return bytes(buf)


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
