# An update package, checked on the node before anything is written (docs/design/fuota.md, "Update
# package format"): the Ed25519 signature over header + manifest, the base version against the running
# one, and the SHA-256 of every file, streamed from the reassembled data block 256 bytes at a time.
#
#   "CNUP" | format (1) | manifest length (2, LE) | manifest (JSON) | signature (64) | file bodies
#
# manifest: {"format": 1, "base": "0.1.0", "target": "0.2.0", "files": [[path, size, sha256 hex], ...],
#            "delete": [path, ...]}; file bodies follow in the order of "files".
from citynode.compat import const

_FORMAT = const(1)
_HEAD = const(7)
_SIG = const(64)
_MAX_MANIFEST = const(4096)


def _bad_path(path):
    return not path or path[0] == "/" or ".." in path.split("/") or "\\" in path


def check(store, length, public_key, running_version):
    """Check the package in ``store`` (``readinto(offset, buf)``), ``length`` bytes long.

    Returns ``(manifest, None)`` when it may be installed, else ``(None, reason)``; the reason is
    short, for the node's status uplink. Never raises on a malformed package.
    """
    try:
        if length < _HEAD + _SIG:
            return None, "not a package"
        head = bytearray(_HEAD)
        store.readinto(0, head)
        if head[0:4] != b"CNUP":
            return None, "not a package"
        if head[4] != _FORMAT:
            return None, "package format %d" % head[4]
        n = head[5] | (head[6] << 8)
        if n > _MAX_MANIFEST or _HEAD + n + _SIG > length:
            return None, "truncated"
        signed = bytearray(_HEAD + n)
        store.readinto(0, signed)
        sig = bytearray(_SIG)
        store.readinto(_HEAD + n, sig)
        from citynode.fuota.ed25519 import verify

        if not verify(public_key, signed, sig):
            return None, "bad signature"
        import json

        manifest = json.loads(bytes(signed[_HEAD:]).decode())
        del signed
        if manifest.get("base") != running_version:
            return None, "base %s, running %s" % (manifest.get("base"), running_version)
        pos = _HEAD + n + _SIG
        import hashlib
        from binascii import hexlify

        buf = bytearray(256)
        for path, size, digest in manifest["files"]:
            if _bad_path(path):
                return None, "bad path"
            if pos + size > length:
                return None, "truncated"
            h = hashlib.sha256()
            left = size
            off = pos
            while left > 0:
                k = 256 if left > 256 else left
                part = buf if k == 256 else memoryview(buf)[:k]
                store.readinto(off, part)
                h.update(part)
                off += k
                left -= k
            if hexlify(h.digest()).decode() != digest:
                return None, "hash " + path
            pos += size
        for path in manifest.get("delete", ()):
            if _bad_path(path):
                return None, "bad path"
        if pos != length:
            return None, "trailing bytes"
        manifest["_offset"] = _HEAD + n + _SIG
        return manifest, None
    except MemoryError:
        return None, "out of memory"
    except Exception:
        return None, "malformed"
