"""A busio.I2C look-alike over citynode's simulated I2C bus, so CircuitPython drivers run on CPython.

Only what adafruit_bus_device.I2CDevice calls is implemented: try_lock/unlock, writeto,
readfrom_into and writeto_then_readfrom with their start/end slicing keywords. Every transfer goes
to the same citynode_sim.sim.SimI2C (and so the same register map) our own drivers use.
"""

from __future__ import annotations

import env_sim_paths  # noqa: F401  (firmware/lib on sys.path)
from citynode_sim.sim import SimI2C


class BusioI2CAdapter:
    """busio.I2C interface over a SimI2C; records the lock discipline so misuse fails loudly."""

    def __init__(self, bus: SimI2C) -> None:
        self.bus = bus
        self.locked = False

    def try_lock(self) -> bool:
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self) -> None:
        assert self.locked, "unlock() without try_lock()"
        self.locked = False

    def _check(self) -> None:
        assert self.locked, "bus used without try_lock()"

    def scan(self) -> list[int]:
        self._check()
        return self.bus.scan()

    def writeto(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        self._check()
        self.bus.writeto(address, bytes(buffer[start:end]))

    def readfrom_into(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        self._check()
        end = len(buffer) if end is None else end
        tmp = bytearray(end - start)
        self.bus.readfrom_into(address, tmp)
        buffer[start:end] = tmp

    def writeto_then_readfrom(self, address: int, buffer_out, buffer_in, *, out_start: int = 0,
                              out_end: int | None = None, in_start: int = 0, in_end: int | None = None) -> None:
        self._check()
        self.bus.writeto(address, bytes(buffer_out[out_start:out_end]))
        in_end = len(buffer_in) if in_end is None else in_end
        tmp = bytearray(in_end - in_start)
        self.bus.readfrom_into(address, tmp)
        buffer_in[in_start:in_end] = tmp
