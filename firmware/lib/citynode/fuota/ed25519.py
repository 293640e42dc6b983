# Ed25519 signature verification (RFC 8032 §5.1.7) in plain MicroPython, for update packages: the node
# checks the package manifest's signature before anything is written. Integers are MicroPython's
# arbitrary-precision ints; SHA-512 (FIPS 180-4) is computed here because MicroPython's hashlib has no
# sha512 on most ports (hashlib.sha512 is used when it exists). Verification only: a node never signs.
from citynode.compat import const

_MASK64 = const(0xFFFFFFFFFFFFFFFF)

# FIPS 180-4 §4.2.3: the first 64 bits of the fractional parts of the cube roots of the first 80 primes
_K = (
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc3956c25bf348b53859f111f1b605d019"
    "923f82a4af194f9bab1c5ed5da6d8118d807aa98a303024212835b0145706fbe243185be4ee4b28c550c7dc3d5ffb4e2"
    "72be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235c19bf174cf692694e49b69c19ef14ad2efbe4786384f25e3"
    "0fc19dc68b8cd5b5240ca1cc77ac9c652de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5"
    "983e5152ee66dfaba831c66d2db43210b00327c898fb213fbf597fc7beef0ee4c6e00bf33da88fc2d5a79147930aa725"
    "06ca6351e003826f142929670a0e6e7027b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed53380d139d95b3df"
    "650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353ba2bfe8a14cf10364a81a664bbc423001"
    "c24b8b70d0f89791c76c51a30654be30d192e819d6ef5218d69906245565a910f40e35855771202a106aa07032bbd1b8"
    "19a4c116b8d2d0c81e376c085141ab532748774cdf8eeb9934b0bcb5e19b48a8391c0cb3c5c95a634ed8aa4ae3418acb"
    "5b9cca4f7763e373682e6ff3d6b2b8a3748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec"
    "90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532bca273eceea26619cd186b8c721c0c207"
    "eada7dd6cde0eb1ef57d4f7fee6ed17806f067aa72176fba0a637dc5a2c898a6113f9804bef90dae1b710b35131c471b"
    "28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc431d67c49c100d4c4cc5d4becb3e42b6597f299cfc657e2a"
    "5fcb6fab3ad6faec6c44198c4a475817"
)
# FIPS 180-4 §5.3.5: initial hash value (square roots of the first 8 primes)
_H0 = (
    "6a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82ba54ff53a5f1d36f1510e527fade682d19b05688c2b3e6c1f"
    "1f83d9abfb41bd6b5be0cd19137e2179"
)


def _sha512_soft(data):
    from binascii import unhexlify

    k = unhexlify(_K)
    kk = [int.from_bytes(k[i:i + 8], "big") for i in range(0, 640, 8)]
    h0 = unhexlify(_H0)
    h = [int.from_bytes(h0[i:i + 8], "big") for i in range(0, 64, 8)]
    n = len(data)
    # padding: 0x80, zeros, then the message length in bits as a 128-bit big-endian integer
    pad = bytearray(((n + 17 + 127) // 128) * 128 - n)
    pad[0] = 0x80
    bits = n * 8
    for i in range(8):
        pad[len(pad) - 1 - i] = (bits >> (8 * i)) & 0xFF
    msg = bytes(data) + bytes(pad)
    m = _MASK64
    w = [0] * 80
    for off in range(0, len(msg), 128):
        for t in range(16):
            w[t] = int.from_bytes(msg[off + 8 * t:off + 8 * t + 8], "big")
        for t in range(16, 80):
            x = w[t - 15]
            s0 = ((x >> 1) | (x << 63)) ^ ((x >> 8) | (x << 56)) ^ (x >> 7)
            x = w[t - 2]
            s1 = ((x >> 19) | (x << 45)) ^ ((x >> 61) | (x << 3)) ^ (x >> 6)
            w[t] = (w[t - 16] + (s0 & m) + w[t - 7] + (s1 & m)) & m
        a, b, c, d, e, f, g, hh = h
        for t in range(80):
            s1 = ((e >> 14) | (e << 50)) ^ ((e >> 18) | (e << 46)) ^ ((e >> 41) | (e << 23))
            ch = (e & f) ^ (~e & g)
            t1 = (hh + (s1 & m) + (ch & m) + kk[t] + w[t]) & m
            s0 = ((a >> 28) | (a << 36)) ^ ((a >> 34) | (a << 30)) ^ ((a >> 39) | (a << 25))
            t2 = ((s0 & m) + ((a & b) ^ (a & c) ^ (b & c))) & m
            hh = g
            g = f
            f = e
            e = (d + t1) & m
            d = c
            c = b
            b = a
            a = (t1 + t2) & m
        h = [(v + x) & m for v, x in zip(h, (a, b, c, d, e, f, g, hh))]
    return b"".join(v.to_bytes(8, "big") for v in h)


def sha512(data):
    try:
        import hashlib

        return hashlib.sha512(data).digest()
    except (ImportError, AttributeError):
        return _sha512_soft(data)


def _inv(x, p):
    return pow(x, p - 2, p)


def _add(P, Q, p, d2):
    # RFC 8032 §5.1.4: addition in extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z
    x1, y1, z1, t1 = P
    x2, y2, z2, t2 = Q
    a = (y1 - x1) * (y2 - x2) % p
    b = (y1 + x1) * (y2 + x2) % p
    c = t1 * d2 * t2 % p
    dd = z1 * 2 * z2 % p
    e = b - a
    f = dd - c
    g = dd + c
    h = b + a
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _decode_point(s, p, d):
    # RFC 8032 §5.1.3
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= p:
        return None
    u = (y * y - 1) % p
    v = (d * y * y + 1) % p
    x2 = u * _inv(v, p) % p
    x = pow(x2, (p + 3) // 8, p)
    if (x * x - x2) % p:
        x = x * pow(2, (p - 1) // 4, p) % p
        if (x * x - x2) % p:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = p - x
    return (x, y, 1, x * y % p)


def verify(public_key, message, signature):
    """True when ``signature`` (64 bytes) is a valid Ed25519 signature of ``message`` by
    ``public_key`` (32 bytes). Never raises on malformed input: it answers False (MemoryError
    propagates)."""
    try:
        if len(public_key) != 32 or len(signature) != 64:
            return False
        p = (1 << 255) - 19
        d = -121665 * _inv(121666, p) % p
        el = (1 << 252) + 27742317777372353535851937790883648493  # the group order L
        a = _decode_point(bytes(public_key), p, d)
        r = _decode_point(bytes(signature[:32]), p, d)
        if a is None or r is None:
            return False
        s = int.from_bytes(bytes(signature[32:]), "little")
        if s >= el:
            return False
        k = int.from_bytes(sha512(bytes(signature[:32]) + bytes(public_key) + bytes(message)), "little") % el
        by = 4 * _inv(5, p) % p
        b = _decode_point(by.to_bytes(32, "little"), p, d)  # the base point: y = 4/5, x even
        d2 = 2 * d % p
        # [S]B - [k]A in one double-and-add over both scalars (Straus), then compared with R
        na = ((p - a[0]) % p, a[1], 1, (p - a[3]) % p)
        both = _add(b, na, p, d2)
        q = (0, 1, 1, 0)
        for i in range(255, -1, -1):
            q = _add(q, q, p, d2)
            bs = (s >> i) & 1
            bk = (k >> i) & 1
            if bs and bk:
                q = _add(q, both, p, d2)
            elif bs:
                q = _add(q, b, p, d2)
            elif bk:
                q = _add(q, na, p, d2)
        x, y, z, _ = q
        return (x - r[0] * z) % p == 0 and (y - r[1] * z) % p == 0
    except MemoryError:
        raise  # not an answer about the signature: the caller reports it as such
    except Exception:
        return False
