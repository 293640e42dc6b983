# AES-CMAC (RFC 4493), the MIC primitive of LoRaWAN 1.0.4 §4.4 and §6.2.5/§6.2.6.
# Subkeys K1/K2 are derived once per key (RFC 4493 §2.3); digest() reuses two preallocated 16-byte
# buffers and walks the message through a memoryview, so a MIC costs one 16-byte allocation (the result).
from citynode.compat import const
from citynode.lorawan.aes import AES

_RB = const(0x87)  # RFC 4493 §2.3: R_128 constant for the subkey doubling


def _dbl(block):
    # RFC 4493 §2.3: shift left by one bit; if the MSB was set, XOR the last byte with Rb.
    out = bytearray(16)
    carry = 0
    for i in range(15, -1, -1):
        b = block[i]
        out[i] = ((b << 1) & 0xFF) | carry
        carry = b >> 7
    if carry:
        out[15] ^= _RB
    return out


class CMAC:
    """AES-CMAC with a fixed 16-byte key. ``digest(msg)`` returns the 16-byte tag."""

    def __init__(self, key):
        self._aes = AES(key)
        self._x = bytearray(16)
        self._y = bytearray(16)
        l_block = bytearray(16)
        self._aes.encrypt_into(bytes(16), l_block)  # RFC 4493 §2.3 step 1: L = AES-128(K, 0^128)
        self._k1 = _dbl(l_block)
        self._k2 = _dbl(self._k1)

    def digest(self, msg, end=-1, prefix=None):
        """Tag over ``prefix + msg[:end]`` (all of ``msg`` when ``end`` is -1).

        ``prefix`` is an optional 16-byte block processed first (LoRaWAN's B0 block, §4.4), so a MIC
        needs no concatenated copy of the frame. ``msg`` is any bytes-like object.
        """
        mv = memoryview(msg)
        n = len(mv) if end < 0 else end
        x = self._x
        y = self._y
        for i in range(16):
            x[i] = 0
        if prefix is not None:
            if n == 0:  # the prefix alone is the (complete) last block
                mv = memoryview(prefix)
                n = 16
            else:
                self._aes.encrypt_into(prefix, x)
        # RFC 4493 §2.4 steps 2-3: n blocks, the last one complete (flag) or padded.
        nblocks = (n + 15) // 16
        complete = n > 0 and n % 16 == 0
        if nblocks == 0:
            nblocks = 1
        aes = self._aes
        pos = 0
        for _ in range(nblocks - 1):
            for i in range(16):
                y[i] = x[i] ^ mv[pos + i]
            aes.encrypt_into(y, x)
            pos += 16
        # Step 4: M_last = M_n XOR K1 when complete, else padding(M_n) XOR K2 (10^i padding).
        if complete:
            k = self._k1
            for i in range(16):
                y[i] = x[i] ^ mv[pos + i] ^ k[i]
        else:
            k = self._k2
            rem = n - pos
            for i in range(16):
                if i < rem:
                    b = mv[pos + i]
                elif i == rem:
                    b = 0x80
                else:
                    b = 0
                y[i] = x[i] ^ b ^ k[i]
        aes.encrypt_into(y, x)
        return bytes(x)


def aes_cmac(key, msg):
    """One-shot AES-CMAC (RFC 4493): 16-byte tag of ``msg`` under the 16-byte ``key``."""
    return CMAC(key).digest(msg)
