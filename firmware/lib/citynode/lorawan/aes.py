# AES-128 block encryption behind one small interface, whatever the runtime provides:
#   MicroPython   cryptolib.aes(key, 1)            (mode 1 = ECB; `ucryptolib` on old firmware)
#   CircuitPython aesio.AES(key, aesio.MODE_ECB)   (core module `aesio`; `aes` on old builds)
#   CPython       cryptography's AES/ECB           (gateway CLI, tests, network-server simulator)
#   anything else aes_soft.SoftAES (plain Python FIPS-197), loaded only when none of the above exists
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
            try:
                import aesio as _cp  # CircuitPython core module
            except ImportError:
                import aes as _cp  # same API under its older name

            _backend = "circuitpython"
        except ImportError:
            try:
                from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher
                from cryptography.hazmat.primitives.ciphers import algorithms as _alg
                from cryptography.hazmat.primitives.ciphers import modes as _modes

                _backend = "cryptography"
            except ImportError:
                _backend = "soft"

BACKEND = _backend


class AES:
    """AES-128 on single 16-byte blocks (ECB). ``key`` is 16 bytes.

    ``encrypt(block)`` returns a new 16-byte ``bytes``; ``encrypt_into(src, dst)`` writes into a
    caller-owned 16-byte ``bytearray`` (``dst`` must not be ``src``) so hot paths allocate nothing.
    ``decrypt_into`` exists for the network side only. The backend is fixed when the object is made.
    """

    def __init__(self, key):
        if len(key) != 16:
            raise LoRaWANError("AES key: need 16 bytes, got %d" % len(key))
        self._key = bytes(key)
        self._d = None
        self._b = b = _backend
        if b == "cryptolib":
            self._c = _cl.aes(bytes(key), _ECB)
        elif b == "circuitpython":
            self._c = _cp.AES(bytes(key), _cp.MODE_ECB)
        elif b == "cryptography":
            self._c = _Cipher(_alg.AES(bytes(key)), _modes.ECB()).encryptor()
        else:
            from citynode.lorawan.aes_soft import SoftAES

            self._c = SoftAES(bytes(key))

    def encrypt_into(self, src, dst):
        b = self._b
        if b == "cryptolib":
            self._c.encrypt(src, dst)
        elif b == "cryptography":
            dst[:] = self._c.update(bytes(src))
        else:
            self._c.encrypt_into(src, dst)

    def decrypt_into(self, src, dst):
        """AES-128 inverse cipher of one block (network side only: join-accept encryption, §6.2.6)."""
        d = self._d
        b = self._b
        if d is None:
            key = self._key
            if b == "cryptolib":
                d = _cl.aes(key, _ECB)
            elif b == "circuitpython":
                d = _cp.AES(key, _cp.MODE_ECB)
            elif b == "cryptography":
                d = _Cipher(_alg.AES(key), _modes.ECB()).decryptor()
            else:
                d = self._c  # SoftAES does both directions
            self._d = d
        if b == "cryptolib":
            d.decrypt(src, dst)
        elif b == "cryptography":
            dst[:] = d.update(bytes(src))
        else:
            d.decrypt_into(src, dst)  # CircuitPython aes and SoftAES share this name

    def encrypt(self, block):
        if len(block) != 16:
            raise LoRaWANError("AES block: need 16 bytes, got %d" % len(block))
        out = bytearray(16)
        self.encrypt_into(block, out)
        return bytes(out)
