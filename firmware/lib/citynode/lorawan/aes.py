# AES-128 block encryption behind one small interface, whatever the runtime provides:
#   MicroPython   cryptolib.aes(key, 1)            (mode 1 = ECB; `ucryptolib` on old firmware)
#   CircuitPython aes.AES(key, aes.MODE_ECB)
#   CPython       cryptography's AES/ECB           (gateway CLI, tests, network-server simulator)
# LoRaWAN 1.0.4 only ever needs the forward cipher (§6.2.3: even the join-accept is "decrypted" with
# aes128_encrypt), so no decrypt is offered: that keeps the CircuitPython and cryptolib paths identical.
from citynode.compat import const
from citynode.lorawan import LoRaWANError

_ECB = const(1)  # cryptolib mode 1 = ECB (MicroPython docs, cryptolib.aes)

_backend = None
try:
    import cryptolib as _cl  # MicroPython >= 1.20

    _backend = "cryptolib"
except ImportError:
    try:
        import ucryptolib as _cl  # MicroPython < 1.20

        _backend = "cryptolib"
    except ImportError:
        try:
            import aes as _cp  # CircuitPython

            _backend = "circuitpython"
        except ImportError:
            try:
                from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher
                from cryptography.hazmat.primitives.ciphers import algorithms as _alg
                from cryptography.hazmat.primitives.ciphers import modes as _modes

                _backend = "cryptography"
            except ImportError:
                _backend = None

BACKEND = _backend


class AES:
    """AES-128 in ECB mode, encrypt only. ``key`` is 16 bytes.

    ``encrypt(block)`` returns a new 16-byte ``bytes``; ``encrypt_into(src, dst)`` writes into a
    caller-owned 16-byte ``bytearray`` (``dst`` must not be ``src``) so hot paths allocate nothing.
    """

    def __init__(self, key):
        if len(key) != 16:
            raise LoRaWANError("AES key: need 16 bytes, got %d" % len(key))
        if _backend == "cryptolib":
            self._c = _cl.aes(bytes(key), _ECB)
        elif _backend == "circuitpython":
            self._c = _cp.AES(bytes(key), _cp.MODE_ECB)
        elif _backend == "cryptography":
            self._c = _Cipher(_alg.AES(bytes(key)), _modes.ECB()).encryptor()
        else:
            raise LoRaWANError("AES: no backend (need cryptolib, aes or the cryptography package)")

    def encrypt_into(self, src, dst):
        if _backend == "cryptolib":
            self._c.encrypt(src, dst)
        elif _backend == "circuitpython":
            self._c.encrypt_into(src, dst)
        else:
            dst[:] = self._c.update(bytes(src))

    def encrypt(self, block):
        if len(block) != 16:
            raise LoRaWANError("AES block: need 16 bytes, got %d" % len(block))
        out = bytearray(16)
        self.encrypt_into(block, out)
        return bytes(out)
