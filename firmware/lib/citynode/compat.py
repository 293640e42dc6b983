# Small shims so firmware modules import on MicroPython, CircuitPython and CPython alike.
try:
    from micropython import const
except ImportError:  # CircuitPython has it under micropython too; CPython does not

    def const(x):
        return x
