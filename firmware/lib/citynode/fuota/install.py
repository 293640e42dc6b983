# Installing a checked update package (citynode.fuota.package.check) into the inactive app slot,
# then switching to it (citynode.fuota.slots): the step from a reassembled data block to a running
# update.
#
# Order, so that a power cut at any write leaves the old app or the new one, never a mix:
#   1. the package was verified (signature, base version, every hash, paths) before this runs;
#   2. the inactive slot is emptied and filled: the running tree's files (those neither replaced nor
#      deleted), then the package's files streamed from the data block, then VERSION; every file is
#      written to NAME.tmp and renamed, and the new files are hashed again as read back from flash;
#   3. one atomic write of the marker makes the slot active, on trial (slots.swap).
# Only step 3 touches what the node boots; a cut before it leaves the staged slot unused (it is
# emptied again by the next install).
import os

from citynode.compat import const
from citynode.fuota import slots

_CHUNK = const(256)


class InstallError(Exception):
    pass


def _isdir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def _rmtree(path):
    if not _isdir(path):
        try:
            os.remove(path)
        except OSError:
            pass
        return
    for name in os.listdir(path):
        _rmtree(path + "/" + name)
    os.rmdir(path)


def _makedirs(path):
    part = ""
    for name in path.split("/"):
        part = part + "/" + name if part else name
        if part and not _isdir(part):
            os.mkdir(part)


def _walk(top, rel=""):
    """Relative paths of the files below ``top``."""
    out = []
    for name in os.listdir(top + "/" + rel if rel else top):
        r = rel + "/" + name if rel else name
        if _isdir(top + "/" + r):
            out.extend(_walk(top, r))
        else:
            out.append(r)
    return out


def _write_file(path, source, buf):
    """Write ``path`` from ``source(buf) -> n`` (0 at the end) through NAME.tmp + rename."""
    i = path.rfind("/")
    if i > 0:
        _makedirs(path[:i])
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        while True:
            n = source(buf)
            if not n:
                break
            f.write(buf if n == len(buf) else memoryview(buf)[:n])
    os.rename(tmp, path)


def _sha256_hex(path, buf):
    import hashlib
    from binascii import hexlify

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(buf if n == len(buf) else memoryview(buf)[:n])
    return hexlify(h.digest()).decode()


def stage(manifest, store, running_tree, root=""):
    """Fill the inactive slot with ``running_tree`` (a directory: the active slot, or the factory app
    on a filesystem) changed by the package; returns the slot's name. Nothing the node boots is
    touched."""
    m = slots.read(root)
    if m.get("trial"):
        raise InstallError("the running app is still on trial")
    slot = slots.inactive(m)
    if m.get("previous") == slot:  # that app is about to be overwritten: no rollback to it any more
        m["previous"] = None
        slots.write(m, root)
    top = slots.slot_dir(slot, root)
    _rmtree(top)
    os.mkdir(top)
    buf = bytearray(_CHUNK)
    new = {f[0] for f in manifest["files"]}
    gone = set(manifest.get("delete", ()))
    if running_tree is not None and _isdir(running_tree):
        for rel in _walk(running_tree):
            if rel in new or rel in gone or rel == "VERSION" or rel.endswith(".tmp"):
                continue
            with open(running_tree + "/" + rel, "rb") as src:
                _write_file(top + "/" + rel, src.readinto, buf)
    pos = manifest["_offset"]
    for path, size, digest in manifest["files"]:
        left = [size, pos]

        def source(b, left=left):
            k = min(len(b), left[0])
            if k:
                store.readinto(left[1], b if k == len(b) else memoryview(b)[:k])
                left[0] -= k
                left[1] += k
            return k

        _write_file(top + "/" + path, source, buf)
        if _sha256_hex(top + "/" + path, buf) != digest:  # read back from flash
            raise InstallError("written " + path)
        pos += size
    version = manifest["target"].encode()
    done = [False]

    def vsource(b):
        if done[0]:
            return 0
        done[0] = True
        b[:len(version)] = version
        return len(version)

    _write_file(top + "/VERSION", vsource, bytearray(len(version)))
    return slot


def install(manifest, store, factory_tree=None, root=""):
    """Stage and switch (on trial; the node reboots into it next). Returns the new slot's name."""
    m = slots.read(root)
    active = m.get("active")
    running = slots.slot_dir(active, root) if active else factory_tree
    slot = stage(manifest, store, running, root)
    slots.swap(slot, manifest["target"], root)
    return slot
