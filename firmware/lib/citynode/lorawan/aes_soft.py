# AES-128 in plain Python (FIPS-197), for runtimes without a native AES: a MicroPython port built
# without cryptolib, a CircuitPython board without `aes`, a CPython without `cryptography`.
# Loaded by aes.py only when no native backend exists; about 100x slower than native, which is still
# a few milliseconds per LoRaWAN frame. The S-box is computed at import from its definition
# (FIPS-197 §5.1.1: multiplicative inverse in GF(2^8), then the affine transform) rather than stored.


def _xtime(a):
    # FIPS-197 §4.2.1: multiplication by x (i.e. {02}) modulo m(x) = x^8 + x^4 + x^3 + x + 1
    a <<= 1
    return (a ^ 0x11B) if a & 0x100 else a


def _mul(a, b):
    # FIPS-197 §4.2: GF(2^8) product by repeated xtime
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = _xtime(a)
        b >>= 1
    return r


def _rotl8(x, n):
    return ((x << n) | (x >> (8 - n))) & 0xFF


def _tables():
    sbox = bytearray(256)
    inv = bytearray(256)
    for a in range(256):
        # inverse: a^254 (0 maps to 0)
        r = 1
        p = a
        e = 254
        while e:
            if e & 1:
                r = _mul(r, p)
            p = _mul(p, p)
            e >>= 1
        b = r if a else 0
        # FIPS-197 §5.1.1 affine transform with c = {63}
        s = b ^ _rotl8(b, 1) ^ _rotl8(b, 2) ^ _rotl8(b, 3) ^ _rotl8(b, 4) ^ 0x63
        sbox[a] = s
        inv[s] = a
    return bytes(sbox), bytes(inv)


_SBOX, _INV_SBOX = _tables()


class SoftAES:
    """AES-128 (FIPS-197) on one 16-byte block: ``encrypt_into(src, dst)``, ``decrypt_into(src, dst)``."""

    def __init__(self, key):
        # FIPS-197 §5.2: key expansion, Nk = 4, Nr = 10 -> 11 round keys of 16 bytes
        w = bytearray(176)
        w[0:16] = key
        rcon = 1
        for i in range(16, 176, 4):
            t0, t1, t2, t3 = w[i - 4], w[i - 3], w[i - 2], w[i - 1]
            if i % 16 == 0:
                t0, t1, t2, t3 = _SBOX[t1] ^ rcon, _SBOX[t2], _SBOX[t3], _SBOX[t0]
                rcon = _xtime(rcon)
            w[i] = w[i - 16] ^ t0
            w[i + 1] = w[i - 15] ^ t1
            w[i + 2] = w[i - 14] ^ t2
            w[i + 3] = w[i - 13] ^ t3
        self._w = w
        self._s = bytearray(16)
        self._t = bytearray(16)

    def encrypt_into(self, src, dst):
        w = self._w
        s = self._s
        t = self._t
        sb = _SBOX
        for i in range(16):
            s[i] = src[i] ^ w[i]
        for rnd in range(1, 11):
            # SubBytes + ShiftRows (§5.1.1, §5.1.2): row r of column c comes from column (c + r) % 4
            for c in range(4):
                for r in range(4):
                    t[4 * c + r] = sb[s[4 * ((c + r) & 3) + r]]
            k = 16 * rnd
            if rnd < 10:
                # MixColumns (§5.1.3)
                for c in range(0, 16, 4):
                    a0, a1, a2, a3 = t[c], t[c + 1], t[c + 2], t[c + 3]
                    x = a0 ^ a1 ^ a2 ^ a3
                    s[c] = a0 ^ x ^ _xtime(a0 ^ a1) ^ w[k + c]
                    s[c + 1] = a1 ^ x ^ _xtime(a1 ^ a2) ^ w[k + c + 1]
                    s[c + 2] = a2 ^ x ^ _xtime(a2 ^ a3) ^ w[k + c + 2]
                    s[c + 3] = a3 ^ x ^ _xtime(a3 ^ a0) ^ w[k + c + 3]
            else:
                for i in range(16):
                    s[i] = t[i] ^ w[k + i]
        for i in range(16):
            dst[i] = s[i]

    def decrypt_into(self, src, dst):
        w = self._w
        s = self._s
        t = self._t
        ib = _INV_SBOX
        for i in range(16):
            s[i] = src[i] ^ w[160 + i]
        for rnd in range(9, -1, -1):
            # InvShiftRows + InvSubBytes (§5.3.1, §5.3.2), then AddRoundKey
            k = 16 * rnd
            for c in range(4):
                for r in range(4):
                    t[4 * ((c + r) & 3) + r] = ib[s[4 * c + r]] ^ w[k + 4 * ((c + r) & 3) + r]
            if rnd:
                # InvMixColumns (§5.3.3): {0e}, {0b}, {0d}, {09}
                for c in range(0, 16, 4):
                    a0, a1, a2, a3 = t[c], t[c + 1], t[c + 2], t[c + 3]
                    s[c] = _mul(a0, 14) ^ _mul(a1, 11) ^ _mul(a2, 13) ^ _mul(a3, 9)
                    s[c + 1] = _mul(a0, 9) ^ _mul(a1, 14) ^ _mul(a2, 11) ^ _mul(a3, 13)
                    s[c + 2] = _mul(a0, 13) ^ _mul(a1, 9) ^ _mul(a2, 14) ^ _mul(a3, 11)
                    s[c + 3] = _mul(a0, 11) ^ _mul(a1, 13) ^ _mul(a2, 9) ^ _mul(a3, 14)
            else:
                for i in range(16):
                    s[i] = t[i]
        for i in range(16):
            dst[i] = s[i]
