# citynode node firmware. Runs unchanged on MicroPython (ESP32), the MicroPython unix port and,
# through the HAL, CircuitPython. Modules import under CPython too, for tests and tools.
VERSION = (0, 1, 0)
