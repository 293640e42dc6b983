# Small JSON files in flash that a power cut cannot corrupt.
#
# write: the new content goes to NAME.tmp, is flushed, then renamed over NAME. On littlefs (the
# ESP32 default) rename is atomic; on FAT MicroPython removes the old file first, so a cut between
# the two steps leaves only NAME.tmp, which read() then recovers. A torn NAME.tmp (cut while it was
# written) fails to parse and is ignored: the previous NAME is still whole.
import json
import os


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _load(path):
    with open(path) as f:
        return json.loads(f.read())


def read(path, default=None):
    """The JSON value at path, recovering an interrupted write; default when neither copy is whole."""
    try:
        return _load(path)
    except (OSError, ValueError):
        pass
    tmp = path + ".tmp"
    try:
        value = _load(tmp)
    except (OSError, ValueError):
        return default
    try:  # finish the interrupted rename
        os.rename(tmp, path)
    except OSError:
        pass
    return value


def write(path, value):
    """Replace the JSON value at path so that a power cut leaves the old or the new value, never a mix."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(value))
        if hasattr(f, "flush"):
            f.flush()
    try:
        os.rename(tmp, path)
    except OSError:  # a FAT volume refuses to rename over an existing file
        os.remove(path)
        os.rename(tmp, path)


def remove(path):
    for name in (path, path + ".tmp"):
        if _exists(name):
            os.remove(name)
