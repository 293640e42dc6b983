# AES-128 block encryption behind one small interface, whatever the runtime provides:
#   MicroPython   cryptolib.aes(key, 1)            (mode 1 = ECB; `ucryptolib` on old firmware)
#   CircuitPython aes.AES(key, aes.MODE_ECB)
#   CPython       cryptography's AES/ECB           (gateway CLI, tests, network-server simulator)
# A LoRaWAN 1.0.4 end-device only ever needs the forward cipher (§6.2.6: even the join-accept is
# "decrypted" with aes128_encrypt). The network side encrypts a join-accept with aes128_decrypt, which
# the network-server simulator needs: decrypt_into() builds a second cipher object on first use,
# because cryptolib refuses to switch one object between directions.
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
        self._key = bytes(key)
        self._d = None
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

    def decrypt_into(self, src, dst):
        """AES-128 inverse cipher of one block (network side only: join-accept encryption, §6.2.6)."""
        d = self._d
        if d is None:
            key = self._key
            if _backend == "cryptolib":
                d = _cl.aes(key, _ECB)
            elif _backend == "circuitpython":
                d = _cp.AES(key, _cp.MODE_ECB)
            else:
                d = _Cipher(_alg.AES(key), _modes.ECB()).decryptor()
            self._d = d
        if _backend == "cryptolib":
            d.decrypt(src, dst)
        elif _backend == "circuitpython":
            d.decrypt_into(src, dst)
        else:
            dst[:] = d.update(bytes(src))

    def encrypt(self, block):
        if len(block) != 16:
            raise LoRaWANError("AES block: need 16 bytes, got %d" % len(block))
        out = bytearray(16)
        self.encrypt_into(block, out)
        return bytes(out)
