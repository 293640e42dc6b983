# Installing a checked update package (citynode.fuota.package.check) into the inactive app slot,
# then switching to it (citynode.fuota.slots): the step from a reassembled data block to a running
# update.
#
# A frozen factory app (in the firmware image, not on the filesystem) cannot be copied into a slot: a
# node running it takes only a full package (manifest "full": true, `citynode fuota build --full`: every
# file of the new tree) and refuses a partial one ("partial package, frozen app": refused_other). A
# full package is installed alone, nothing of the running tree is copied.
#
# Order, so that a power cut at any write leaves the old app or the new one, never a mix:
#   1. the package was verified (signature, base version, every hash, paths) before this runs;
#   2. the inactive slot is emptied and filled: the running tree's files (those neither replaced nor
#      deleted), then the package's files streamed from the data block, then VERSION; every file is
#      written to NAME.tmp and renamed, and the new files are hashed again as read back from flash;
#   3. one atomic write of the marker makes the slot active, on trial (slots.swap).
# Only step 3 touches what the node boots; a cut before it leaves the staged slot unused (it is
# emptied again by the next install).
#
# Where it runs: in the boot after the block is complete, before the app is imported (pending(), called
# by slots.select from main.py), so that the check (Ed25519 in big integers, SHA-512, SHA-256 per file)
# has the heap to itself instead of sharing it with the MAC, the role and the drivers. The running app
# only hands the block over: one atomic write of fuota.json with an "install" entry
# {"seq", "length", "running", "tree"} (citynode.fuota.node.FuotaNode.finish), then it reboots.
# pending() checks, installs (or records the refusal) with "block": seq in the same atomic write of
# slots.json, then drops the block file and the entry. A power cut anywhere in it: the next boot finds
# the entry again; when slots.json already carries its seq the outcome is recorded and only the
# clean-up is left, else the check and install run again from the start (the block is still whole).
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
    if running_tree is not None and _isdir(running_tree) and manifest.get("full") is not True:
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


def install(manifest, store, factory_tree=None, root="", block=None):
    """Stage and switch (on trial; the node reboots into it next). Returns the new slot's name."""
    m = slots.read(root)
    active = m.get("active")
    running = slots.slot_dir(active, root) if active else factory_tree
    slot = stage(manifest, store, running, root)
    slots.swap(slot, manifest["target"], root, block)
    return slot


def _check_install(p, root, out):
    """Check the handed-over block and install it; the outcome goes to slots.json with ``p["seq"]``."""
    import gc
    from binascii import unhexlify

    from citynode import files
    from citynode.fuota import package
    from citynode.fuota.store import BLOCK_PATH, FileStore

    seq = p.get("seq")
    pub = (files.read(root + "config.json", None) or {}).get("fuota_pub")
    length = p.get("length", 0)
    store = FileStore(root + BLOCK_PATH, length)
    reason = None
    try:
        if not pub:
            reason = "no fuota_pub"
        else:
            try:
                store.open()
            except OSError:
                reason = "no block"
        if reason is None:
            manifest, reason = package.check(store, length, unhexlify(pub), p.get("running"))
            package = None
            gc.collect()
        if reason is None and manifest.get("full") is not True and not slots.read(root).get("active") \
                and not p.get("tree"):
            # the factory app is frozen into the image: there is no tree to copy the unchanged files from
            reason = "partial package, frozen app"
        if reason is None:
            try:
                slot = install(manifest, store, p.get("tree"), root, seq)
                out("update %s installed in slot %s" % (manifest["target"], slot))
            except (OSError, InstallError) as exc:
                reason = "install: %s" % (exc,)
            except MemoryError:
                reason = "out of memory"
    finally:
        store.close()
    if reason is not None:
        slots.refused(reason, root, seq)
        out("update refused: %s" % reason)


def pending(state, root="", out=print):
    """The boot step: ``state`` is fuota.json with an "install" entry (the hand-over). Checks the block and
    installs it in the inactive slot on trial, or records why it was refused (slots.json), then drops the
    entry and the block. Runs before the app is imported; safe to run again after a power cut."""
    from citynode import files
    from citynode.fuota.store import BLOCK_PATH, STATE_PATH

    p = state["install"]
    if slots.read(root).get("block") != p.get("seq"):  # else: done before a power cut
        _check_install(p, root, out)
    try:  # the outcome is recorded: the block is not needed any more (removed first, so that a cut
        os.remove(root + BLOCK_PATH)  # between the two leaves the entry, not a stray block)
    except OSError:
        pass
    del state["install"]
    files.write(root + STATE_PATH, state)
