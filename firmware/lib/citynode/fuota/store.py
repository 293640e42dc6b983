# Where a TS004 data block is reassembled: `size` bytes addressed by offset. The fragmentation package
# writes each fragment at (N - 1) * FragSize and keeps its coded rows in the slots of the fragments
# still missing, so the block needs no storage beyond its own size (docs/design/fuota.md).


class RamStore:
    """A data block in a bytearray (tests, small blocks)."""

    def __init__(self, size):
        self.size = size
        self.buf = bytearray(size)

    def prepare(self, n):
        return n <= self.size

    def write(self, offset, data):
        self.buf[offset:offset + len(data)] = data

    def readinto(self, offset, out):
        n = len(out)
        out[:] = self.buf[offset:offset + n]


class FileStore:
    """A data block in a file on the node's flash filesystem, at most ``size`` bytes."""

    def __init__(self, path, size):
        self.path = path
        self.size = size
        self._f = None

    def prepare(self, n):
        """Create the file with ``n`` zero bytes; False when it cannot hold them."""
        if n > self.size:
            return False
        self.close()
        try:
            f = open(self.path, "wb")
            zero = bytes(64)
            left = n
            while left > 0:
                k = 64 if left > 64 else left
                f.write(zero[:k] if k < 64 else zero)
                left -= k
            f.close()
            self._f = open(self.path, "r+b")
        except OSError:
            return False
        return True

    def write(self, offset, data):
        self._f.seek(offset)
        self._f.write(data)

    def readinto(self, offset, out):
        self._f.seek(offset)
        self._f.readinto(out)

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
