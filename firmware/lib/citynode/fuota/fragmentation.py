# LoRaWAN TS004 Fragmented Data Block Transport v1.0.0 / v2.0.0 (fPort 201), device side, with the
# decoder of the specification's FEC code (FragAlgo 0). Byte layouts as ChirpStack's
# lrwn/src/applayer/fragmentation/{v1,v2}.rs encode them; the decoder's design and memory bound in
# docs/design/fuota.md ("The FEC code").
#
# RAM: a session holds, besides its scalars, 2 bytes per fragment (column of a missing fragment), one
# bit per fragment twice (known bitmap, parity-line scratch), max_missing^2/8 bytes of pivot rows and
# three FragSize buffers. The data block itself lives in the store (a file on a node).
from citynode.compat import const
from citynode.fuota import le, put_le

_PACKAGE_ID = const(3)  # TS004: PackageIdentifier of fragmented data block transport
_CID_VERSION = const(0x00)
_CID_STATUS = const(0x01)
_CID_SETUP = const(0x02)
_CID_DELETE = const(0x03)
_CID_BLOCK_RECEIVED = const(0x04)  # v2: up FragDataBlockReceivedReq, down ...Ans
_CID_FRAGMENT = const(0x08)
_MAX_N = const(16383)  # DataFragment N and NbFragReceived are 14-bit fields
_ERR_ALGO = const(0x01)  # FragSessionSetupAns status bits
_ERR_MEMORY = const(0x02)
_ERR_INDEX = const(0x04)
_ERR_REPLAY = const(0x10)  # v2
_ST_MEMORY = const(0x01)  # v2 FragSessionStatusAns status bits (v1: bit 0 of the last byte)
_ST_MIC = const(0x02)
_ST_NO_SESSION = const(0x04)
_MAX_ANSWER = const(24)


def _prbs23(x):
    # TS004 FEC: 23-bit PRBS, x / 2 plus (bit0 XOR bit5) * 2^22 (a sum, as specified: the seed
    # 1 + 1001 * n may exceed 23 bits)
    return (x >> 1) + (((x ^ (x >> 5)) & 1) << 22)


def parity_line(n, m, line, version=2):
    """Set in the bitmap ``line`` (ceil(m/8) bytes, cleared here) the fragments XORed into coded
    fragment M+n. v1 draws m//2 times (a bit may repeat); v2 draws until m//2 distinct bits are set."""
    for i in range(len(line)):
        line[i] = 0
    mm = m + (1 if m & (m - 1) == 0 else 0)  # a power-of-two m draws modulo m + 1
    x = 1 + 1001 * n
    drawn = 0
    half = m // 2
    while drawn < half:
        r = m
        while r >= m:
            x = _prbs23(x)
            r = x % mm
        bit = 1 << (r & 7)
        if version == 2 and line[r >> 3] & bit:
            continue
        line[r >> 3] |= bit
        drawn += 1


def data_block_int_key(root_key):
    """TS004 v2: DataBlockIntKey = aes128_encrypt(GenAppKey (1.0.x) or AppKey (1.1), 0x30 | pad16)."""
    from citynode.lorawan.aes import AES

    blk = bytearray(16)
    blk[0] = 0x30
    return AES(root_key).encrypt(blk)


def _dbl(b):
    # RFC 4493 §2.3 subkey doubling
    out = bytearray(16)
    carry = 0
    for i in range(15, -1, -1):
        v = b[i]
        out[i] = ((v << 1) & 0xFF) | carry
        carry = v >> 7
    if carry:
        out[15] ^= 0x87
    return out


def block_mic(key, session_cnt, index, descriptor, store, n):
    """TS004 v2 MIC of the data block: aes128_cmac(key, B0 | block[0:n])[0:4], streamed from the store
    16 bytes at a time (RFC 4493). B0 = 0x49 | SessionCnt (2) | FragIndex | Descriptor (4) | 0 (4) | n (4)."""
    from citynode.lorawan.aes import AES

    aes = AES(key)
    x = bytearray(16)
    y = bytearray(16)
    aes.encrypt_into(bytes(16), y)
    k1 = _dbl(y)
    k2 = _dbl(k1)
    blk = bytearray(16)
    blk[0] = 0x49
    put_le(blk, 1, session_cnt, 2)
    blk[3] = index
    blk[4:8] = descriptor
    put_le(blk, 12, n, 4)
    total = 16 + n
    nblocks = (total + 15) // 16
    chunk = bytearray(16)
    for i in range(nblocks):
        if i > 0:
            off = (i - 1) * 16
            k = n - off
            if k >= 16:
                store.readinto(off, chunk)
                blk[:] = chunk
            else:
                part = bytearray(k)
                store.readinto(off, part)
                for j in range(16):
                    blk[j] = part[j] if j < k else (0x80 if j == k else 0)
        if i == nblocks - 1:
            sub = k1 if total % 16 == 0 else k2
            for j in range(16):
                x[j] ^= blk[j] ^ sub[j]
        else:
            for j in range(16):
                x[j] ^= blk[j]
        aes.encrypt_into(x, y)
        x[:] = y
    return bytes(x[:4])


class Fragmentation:
    """One node's TS004 state: at most one fragmentation session (FragIndex < ``max_sessions``).

    ``store``: where the data block is reassembled (``prepare(n)``, ``write``, ``readinto``).
    ``max_missing``: the most missing fragments the decoder can solve for (its RAM bound).
    ``root_key``: GenAppKey (LoRaWAN 1.0.x) for the v2 data-block MIC; without it a v2 block is not
    MIC-checked. State the app reads: ``complete``, ``length`` (the block's bytes without padding),
    ``descriptor``, ``mic_error``, ``pending`` (an uplink to send: v2 FragDataBlockReceivedReq) and
    ``answer_delay_max_s`` (spread a FragSessionStatusAns over [0, this] seconds).
    """

    def __init__(self, store, version=2, max_missing=128, root_key=None, max_sessions=1):
        self.version = 2 if version == 2 else 1
        self.store = store
        self.max_missing = max_missing
        self.max_sessions = max(1, min(4, max_sessions))
        self._int_key = data_block_int_key(root_key) if root_key is not None else None
        self.last_session_cnt = -1  # v2 replay protection; the app persists it
        self.pending = None
        self.answer_delay_max_s = 16
        self.active = False
        self._out = bytearray(_MAX_ANSWER)
        self._reset()

    def _reset(self):
        self.active = False
        self.complete = False
        self.mic_error = False
        self.memory_error = False
        self.received = 0
        self.length = 0
        self.descriptor = b"\x00\x00\x00\x00"
        self._known = self._col = self._colfrag = self._rows = self._pivot = None
        self._line = self._row = self._d1 = self._d2 = None

    # --- downlinks -------------------------------------------------------------------------------

    def handle(self, payload, now_gps_s=0):
        """Handle one downlink on the fragmentation port; return the answer bytes or None."""
        out = self._out
        n = 0
        pos = 0
        size = len(payload)
        while pos < size and n < _MAX_ANSWER - 5:
            cid = payload[pos]
            pos += 1
            if cid == _CID_VERSION:
                out[n] = _CID_VERSION
                out[n + 1] = _PACKAGE_ID
                out[n + 2] = self.version
                n += 3
            elif cid == _CID_STATUS:
                if pos + 1 > size:
                    break
                n = self._status(payload[pos], out, n)
                pos += 1
            elif cid == _CID_SETUP:
                need = 16 if self.version == 2 else 10
                if pos + need > size:
                    break
                out[n] = _CID_SETUP
                out[n + 1] = self._setup(payload, pos, need)
                n += 2
                pos += need
            elif cid == _CID_DELETE:
                if pos + 1 > size:
                    break
                idx = payload[pos] & 0x03
                pos += 1
                out[n] = _CID_DELETE
                if self.active and idx == self.index:
                    self._reset()
                    out[n + 1] = idx
                else:
                    out[n + 1] = idx | 0x04  # SessionDoesNotExist
                n += 2
            elif cid == _CID_BLOCK_RECEIVED and self.version == 2:  # FragDataBlockReceivedAns
                if pos + 1 > size:
                    break
                pos += 1
                self.pending = None
            elif cid == _CID_FRAGMENT:
                if pos + 2 <= size:
                    self._fragment(payload, pos, size)
                break  # a DataFragment takes the rest of the frame
            else:
                break
        return bytes(out[:n]) if n else None

    def _status(self, param, out, n):
        idx = (param >> 1) & 0x03
        participants = param & 0x01
        if not self.active or idx != self.index:
            if self.version == 1:
                return n  # v1 has no way to say "no such session": stay silent
            out[n] = _CID_STATUS
            out[n + 1] = _ST_NO_SESSION
            put_le(out, n + 2, idx << 14, 2)
            out[n + 4] = 0
            return n + 5
        missing = self.missing()
        if not participants and missing == 0:
            return n  # only devices still missing fragments answer
        rec = min(self.received, _MAX_N) | (idx << 14)
        miss = min(missing, 255)
        out[n] = _CID_STATUS
        if self.version == 1:
            put_le(out, n + 1, rec, 2)
            out[n + 3] = miss
            out[n + 4] = _ST_MEMORY if self.memory_error else 0
        else:
            out[n + 1] = (_ST_MEMORY if self.memory_error else 0) | (_ST_MIC if self.mic_error else 0)
            put_le(out, n + 2, rec, 2)
            out[n + 4] = miss
        return n + 5

    def _setup(self, b, pos, need, resume=False):
        idx = (b[pos] >> 4) & 0x03
        m = le(b, pos + 1, 2)
        size = b[pos + 3]
        control = b[pos + 4]
        status = idx << 6
        if (control >> 3) & 0x07:
            status |= _ERR_ALGO  # only FragAlgo / FragmentationMatrix 0 is defined
        if idx >= self.max_sessions:
            status |= _ERR_INDEX
        if m == 0 or m > _MAX_N or size == 0:
            status |= _ERR_MEMORY
        cnt = -1
        if self.version == 2:
            cnt = le(b, pos + 10, 2)
            if cnt <= self.last_session_cnt:
                status |= _ERR_REPLAY
        if status & 0x3F:
            return status
        self._reset()
        try:
            cols = min(self.max_missing, m)
            rb = (cols + 7) // 8
            self._known = bytearray((m + 7) // 8)
            self._line = bytearray((m + 7) // 8)
            from array import array

            self._col = array("H", bytes(2 * m))  # column + 1 of a missing fragment, 0 = none
            self._colfrag = array("H", bytes(2 * cols))
            self._rows = bytearray(cols * rb)
            self._pivot = bytearray(cols)
            self._row = bytearray(rb)
            self._d1 = bytearray(size)
            self._d2 = bytearray(size)
            if resume:  # the block file of the session set up before a reboot
                self.store.open("r+b")
                ok = True
            else:
                ok = self.store.prepare(m * size)
        except (MemoryError, OSError):
            ok = False
        if not ok:
            self._reset()
            return status | _ERR_MEMORY
        self.active = True
        self.index = idx
        self.nb_frag = m
        self.frag_size = size
        self.padding = b[pos + 5]
        self.length = m * size - self.padding if self.padding < m * size else 0
        self.descriptor = bytes(b[pos + 6:pos + 10])
        self.answer_delay_max_s = 1 << ((control & 0x07) + 4)  # BlockAckDelay: 2^(v+4) s
        self.ack_reception = self.version == 2 and bool(control & 0x40)
        self.session_cnt = cnt
        self.mic = bytes(b[pos + 12:pos + 16]) if self.version == 2 else None
        if cnt >= 0:
            self.last_session_cnt = cnt
        self.setup = bytes(b[pos:pos + need])  # the request's parameters: the app persists them
        self._cols = cols
        self._rb = rb
        self._ncols = 0
        self._npivots = 0
        self._nknown = 0
        return status

    # --- across a reboot ---------------------------------------------------------------------------

    def known(self):
        """The bitmap of the uncoded fragments already in the store (bit j: fragment j + 1), for the app
        to persist with ``setup`` after the store is flushed. Coded fragments (in the matrix, in RAM)
        are not in it."""
        return bytes(self._known) if self.active and not self.complete else None

    def restore(self, setup, known):
        """Resume the session set up by ``setup`` (the FragSessionSetupReq's parameters, as ``setup`` was)
        in the existing block file, with the uncoded fragments of ``known`` counted as received. True
        when resumed; the fragments received since ``known`` was taken must come again (redundancy)."""
        saved = self.last_session_cnt
        self.last_session_cnt = -1
        need = 16 if self.version == 2 else 10
        status = self._setup(setup, 0, need, resume=True) if len(setup) == need else 0x3F
        self.last_session_cnt = max(saved, self.last_session_cnt)
        if status & 0x3F or len(known) != len(self._known):
            self._reset()
            return False
        self._known[:] = known
        n = 0
        for i in range(self.nb_frag):
            if known[i >> 3] & (1 << (i & 7)):
                n += 1
        self._nknown = n
        self.received = n
        if n == self.nb_frag:
            self._solve()
        return True

    # --- the decoder -----------------------------------------------------------------------------

    def missing(self):
        """Fragments (equations) the block still needs; 0 when complete."""
        if not self.active or self.complete:
            return 0
        return self.nb_frag - self._nknown - self._npivots

    def _fragment(self, b, pos, end):
        if not self.active or self.complete:
            return
        v = le(b, pos, 2)
        if (v >> 14) != self.index:
            return
        nidx = v & 0x3FFF
        size = self.frag_size
        if end - pos - 2 != size or nidx == 0:
            return  # a fragment of the wrong size is not this session's
        m = self.nb_frag
        d1 = self._d1
        d1[:] = b[pos + 2:end]
        row = self._row
        for i in range(self._rb):
            row[i] = 0
        known = self._known
        if nidx <= m:
            j = nidx - 1
            if known[j >> 3] & (1 << (j & 7)):
                return  # repeated
            c = self._col[j]
            self.received += 1
            if c == 0:  # never part of a coded row: it is just data
                self.store.write(j * size, d1)
                known[j >> 3] |= 1 << (j & 7)
                self._nknown += 1
            else:  # a late uncoded fragment is the equation "column c = data"
                c -= 1
                row[c >> 3] |= 1 << (c & 7)
                self._insert(row, d1)
        else:
            line = self._line
            parity_line(nidx - m, m, line, self.version)
            d2 = self._d2
            col = self._col
            for j in range(m):
                if not line[j >> 3] & (1 << (j & 7)):
                    continue
                if known[j >> 3] & (1 << (j & 7)):
                    self.store.readinto(j * size, d2)
                    for k in range(size):
                        d1[k] ^= d2[k]
                    continue
                c = col[j]
                if c == 0:
                    if self._ncols >= self._cols:
                        self.memory_error = True  # more losses than the matrix can hold
                        return
                    c = self._ncols
                    self._ncols += 1
                    col[j] = c + 1
                    self._colfrag[c] = j
                else:
                    c -= 1
                row[c >> 3] |= 1 << (c & 7)
            self.received += 1
            self._insert(row, d1)
        if self._nknown + self._npivots == m:
            self._solve()

    def _insert(self, row, data):
        # Gaussian elimination in row-echelon form: one pivot row per column, its data kept in the
        # store slot of that column's missing fragment.
        rb = self._rb
        rows = self._rows
        d2 = self._d2
        size = self.frag_size
        for c in range(self._ncols):
            if not row[c >> 3] & (1 << (c & 7)):
                continue
            base = c * rb
            slot = self._colfrag[c] * size
            if self._pivot[c]:
                for i in range(rb):
                    row[i] ^= rows[base + i]
                self.store.readinto(slot, d2)
                for k in range(size):
                    data[k] ^= d2[k]
            else:
                for i in range(rb):
                    rows[base + i] = row[i]
                self.store.write(slot, data)
                self._pivot[c] = 1
                self._npivots += 1
                return
        # reduced to zero: the fragment told nothing new

    def _solve(self):
        # back-substitution from the last column: each pivot row only has bits at or after its column
        rb = self._rb
        rows = self._rows
        d1 = self._d1
        d2 = self._d2
        size = self.frag_size
        colfrag = self._colfrag
        for c in range(self._ncols - 1, -1, -1):
            base = c * rb
            slot = colfrag[c] * size
            self.store.readinto(slot, d1)
            for k in range(c + 1, self._ncols):
                if rows[base + (k >> 3)] & (1 << (k & 7)):
                    self.store.readinto(colfrag[k] * size, d2)
                    for i in range(size):
                        d1[i] ^= d2[i]
            self.store.write(slot, d1)
        self.complete = True
        self._nknown = self.nb_frag
        if self.version == 2 and self._int_key is not None:
            got = block_mic(self._int_key, self.session_cnt, self.index, self.descriptor, self.store,
                            self.length)
            self.mic_error = got != self.mic
        if self.ack_reception:
            self.pending = bytes((_CID_BLOCK_RECEIVED, self.index | (0x04 if self.mic_error else 0)))
        # the matrix is not needed any more
        self._rows = self._col = self._colfrag = self._pivot = self._line = None
