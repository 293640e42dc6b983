# The documented interface of CircuitPython's core `aesio` module (AES(key, mode), MODE_ECB,
# encrypt_into(src, dest), decrypt_into(src, dest)), served by MicroPython's cryptolib so the citynode
# AES adapter's CircuitPython branch runs on the MicroPython unix port. Test helper, not firmware.
import cryptolib

MODE_ECB = 1
MODE_CBC = 2
MODE_CTR = 6


class AES:
    def __init__(self, key, mode=MODE_ECB, IV=None):
        if len(key) not in (16, 24, 32):
            raise ValueError("Key length must be 16, 24, or 32 bytes")
        if mode != MODE_ECB:
            raise NotImplementedError("only MODE_ECB is provided by this test shim")
        self._key = bytes(key)
        self._enc = None
        self._dec = None

    def encrypt_into(self, src, dest):
        if len(src) != 16 or len(dest) < 16:
            raise ValueError("ECB needs 16-byte buffers")
        if self._enc is None:
            self._enc = cryptolib.aes(self._key, 1)
        self._enc.encrypt(src, dest)

    def decrypt_into(self, src, dest):
        if len(src) != 16 or len(dest) < 16:
            raise ValueError("ECB needs 16-byte buffers")
        if self._dec is None:
            self._dec = cryptolib.aes(self._key, 1)
        self._dec.decrypt(src, dest)
