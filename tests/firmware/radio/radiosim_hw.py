# Simulated hardware for the radio tests: a virtual clock, pins and an SPI bus with the MicroPython
# `machine` API. Plain Python that runs on the MicroPython unix port and on CPython alike.
#
# A simulated chip implements select(active), xfer(byte_in) -> byte_out and tick(now_us); the bus
# calls them exactly as a real SPI peripheral would clock the bytes.


class SequenceError(AssertionError):
    """The driver broke a sequence the datasheet requires. The message names the rule and the section."""


class FakeClock:
    """Virtual time with the MicroPython `time` API. Sleeping advances time and lets devices act."""

    def __init__(self):
        self.us = 0
        self.devices = []

    def ticks_us(self):
        return self.us

    def ticks_ms(self):
        return self.us // 1000

    def ticks_diff(self, a, b):
        return a - b

    def advance_us(self, us):
        self.us += us
        for d in self.devices:
            d.tick(self.us)

    def sleep_us(self, us):
        self.advance_us(us)

    def sleep_ms(self, ms):
        self.advance_us(ms * 1000)


class SimPin:
    """A GPIO. Output pins report writes to ``on_change(pin, value)``; input pins are driven by the
    simulated chip through ``drive()``, which fires the handler installed with ``irq()``."""

    IRQ_RISING = 1
    IRQ_FALLING = 2
    IN = 0
    OUT = 1

    def __init__(self, name, value=0, on_change=None, on_read=None):
        self.name = name
        self._value = value
        self.on_change = on_change
        self.on_read = on_read
        self.handler = None
        self.trigger = 0
        self.reads = 0

    def value(self, v=None):
        if v is None:
            self.reads += 1
            if self.on_read is not None:
                return self.on_read(self)
            return self._value
        v = 1 if v else 0
        old = self._value
        self._value = v
        if self.on_change is not None:
            self.on_change(self, old, v)
        return None

    def irq(self, handler=None, trigger=IRQ_RISING):
        self.handler = handler
        self.trigger = trigger

    def drive(self, v):
        v = 1 if v else 0
        old = self._value
        self._value = v
        if self.handler is not None:
            if (old == 0 and v == 1 and self.trigger & 1) or (old == 1 and v == 0 and self.trigger & 2):
                self.handler(self)


class SimSPI:
    """SPI master wired to one simulated chip; NSS is a SimPin whose changes select the chip."""

    def __init__(self, device, name="spi"):
        self.device = device
        self.name = name
        self.selected = False
        self.bytes_clocked = 0

    def select(self, active):
        self.selected = active
        self.device.select(active)

    def _xfer(self, b):
        if not self.selected:
            raise SequenceError("SPI transfer while NSS is high: the chip ignores it (select the chip first)")
        self.bytes_clocked += 1
        return self.device.xfer(b)

    def write(self, buf):
        for b in buf:
            self._xfer(b)

    def readinto(self, buf, write=0):
        for i in range(len(buf)):
            buf[i] = self._xfer(write)

    def read(self, n, write=0):
        buf = bytearray(n)
        self.readinto(buf, write)
        return bytes(buf)

    def write_readinto(self, wbuf, rbuf):
        if len(wbuf) != len(rbuf):
            raise ValueError("write_readinto: buffers must have the same length")
        for i in range(len(wbuf)):
            rbuf[i] = self._xfer(wbuf[i])


def make_nss(spi):
    """NSS pin (active low) that selects the chip on ``spi``."""

    def changed(pin, old, new):
        if old != new:
            spi.select(new == 0)

    return SimPin("nss", 1, on_change=changed)
