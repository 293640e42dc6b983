# Simulated I2C bus (register-map devices) for citynode_sim.sim; the UART lives in citynode_sim.simuart
# (re-exported here on access) so that roles without I2C sensors do not load this module.
from citynode.compat import const
from citynode_sim.simio import LOG_LIMIT, log  # noqa: F401  (re-exported)


def __getattr__(name):
    if name == "SimUART":
        from citynode_sim.simuart import SimUART

        return SimUART
    raise AttributeError(name)

_ENODEV = const(19)  # errno MicroPython's machine.I2C raises when no device ACKs the address


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
