# Where a TS004 data block is reassembled: `size` bytes addressed by offset. The fragmentation package
# writes each fragment at (N - 1) * FragSize and keeps its coded rows in the slots of the fragments
# still missing, so the block needs no storage beyond its own size (docs/design/fuota.md).
#
# The node's FUOTA files (paths relative to its root): the block, and fuota.json, the state that
# survives a reboot (citynode.fuota.node; its "install" entry hands a complete block over to the boot
# step, citynode.fuota.install.pending).
STATE_PATH = "fuota.json"
BLOCK_PATH = "fuota.bin"


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

    def open(self, mode="rb"):
        """Open the block written earlier (a boot after the session: "rb" to check it, "r+b" to go on
        with it); OSError when there is none."""
        self.close()
        self._f = open(self.path, mode)

    def write(self, offset, data):
        self._f.seek(offset)
        self._f.write(data)

    def readinto(self, offset, out):
        if self._f is None:
            self.open()
        self._f.seek(offset)
        self._f.readinto(out)

    def flush(self):
        """Make the fragments written so far durable (before a checkpoint names them)."""
        if self._f is not None:
            self._f.flush()

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
