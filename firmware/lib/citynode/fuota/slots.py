# A/B app slots: which app tree the node runs, switched by one atomic write of a marker file.
#
# Layout on the node's filesystem (paths relative to its root):
#   slots.json      the marker: {"active": "a"|"b"|null, "previous": ..., "trial": bool, "boots": n,
#                   "versions": {"a": "0.2.0", ...}, "update": outcome for the status uplink,
#                   "block": the sequence number of the last block handed over to the boot step}
#   app_a/, app_b/  two app trees (the package paths, e.g. citynode/app.mpy, below them)
#   the factory app (null): the tree the node was flashed with (frozen or in lib/), never written.
#
# Every write here is the marker's, through citynode.files.write (temp file + rename), so a power cut
# leaves either the old or the new marker: the node runs the old app or the new one, never a mix.
# Staging (citynode.fuota.install) only writes the slot that is not active.
#
# Boot (main.py calls select() before it imports the app): a data block handed over by the running app
# (fuota.json "install") is checked and installed first (citynode.fuota.install.pending), with the heap
# to itself: no MAC, role or drivers are built yet. Then a slot on trial counts its boots; after
# MAX_TRIAL_BOOTS boots without a confirm() (the new app crashed before its self-test passed) the marker
# goes back to the previous slot. The app runs the self-test in trial mode and calls confirm() or
# rollback("selftest").
import sys

from citynode import files
from citynode.compat import const

MARKER = "slots.json"
MAX_TRIAL_BOOTS = const(3)
_PREFIX = "app_"


def slot_dir(slot, root=""):
    return root + _PREFIX + slot


def read(root=""):
    m = files.read(root + MARKER)
    if not isinstance(m, dict):
        m = {"active": None, "previous": None, "trial": False, "boots": 0, "versions": {}}
    return m


def write(m, root=""):
    files.write(root + MARKER, m)


def running_version(factory_version, root=""):
    """The app version the node runs: the active slot's, else the factory app's."""
    m = read(root)
    if m.get("active"):
        return m.get("versions", {}).get(m["active"], factory_version)
    return factory_version


def inactive(m):
    """The slot a new version is staged in: never the active one nor the previous one (rollback)."""
    return "b" if m.get("active") == "a" else "a"


def swap(slot, version, root="", block=None):
    """Make ``slot`` (staged, checked) the active app, on trial: one atomic marker write. ``block``: the
    hand-over's sequence number (install.pending), recorded in the same write."""
    m = read(root)
    versions = dict(m.get("versions") or {})
    versions[slot] = version
    write({"active": slot, "previous": m.get("active"), "trial": True, "boots": 0, "versions": versions,
           "update": "installed", "detail": version, "block": block if block is not None else m.get("block")},
          root)


def confirm(root=""):
    """The new app passed its self-test: it stays (the previous slot may be reused)."""
    m = read(root)
    if m.get("trial"):
        m["trial"] = False
        m["boots"] = 0
        write(m, root)


def rollback(why, root=""):
    """Back to the previous app (one atomic marker write); ``why`` ("selftest" or "crash") goes to the
    status uplink."""
    m = read(root)
    failed = m.get("versions", {}).get(m.get("active"), "?")
    m["active"], m["previous"] = m.get("previous"), None
    m["trial"] = False
    m["boots"] = 0
    m["update"] = "rolled_back_" + why
    m["detail"] = failed
    write(m, root)
    return m


def refused(reason, root="", block=None):
    """Record a refused package for the status uplink: ``reason`` as package.check gives it (``block``:
    the hand-over's sequence number, recorded in the same write)."""
    if reason.startswith("base "):
        code = "refused_base"
    elif reason == "bad signature":
        code = "refused_signature"
    elif reason.startswith("hash "):
        code = "refused_hash"
    else:
        code = "refused_other"
    m = read(root)
    m["update"] = code
    m["detail"] = reason
    if block is not None:
        m["block"] = block
    write(m, root)


def _reset():
    # After the boot step: a board reboots into the trial with a clean heap; the unix port (no
    # machine.reset) goes on in the same process, the step's modules dropped below.
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):
        pass


def select(root="", forget=True):
    """At boot, before the app is imported: check and install a data block the app handed over
    (citynode.fuota.install.pending; then reboot), count a trial boot (rolling back after
    MAX_TRIAL_BOOTS), put the active slot first on sys.path and drop the modules already imported from
    the factory tree (this one included) so that the app is imported from the slot. Returns the
    marker."""
    state = files.read(root + "fuota.json", None)  # citynode.fuota.store.STATE_PATH
    if state and state.get("install"):
        from citynode.fuota import install

        try:
            install.pending(state, root)
        except Exception as exc:  # never a boot loop: drop the hand-over, report it, boot the app
            print("update boot step failed: %s: %s" % (type(exc).__name__, exc))
            try:
                refused("boot step: %s" % (type(exc).__name__,), root)
                state.pop("install", None)
                files.write(root + "fuota.json", state)
            except Exception:
                pass
        install = state = None
        _reset()
    state = None
    m = read(root)
    if m.get("trial"):
        m["boots"] = m.get("boots", 0) + 1
        if m["boots"] > MAX_TRIAL_BOOTS:
            m = rollback("crash", root)
        else:
            write(m, root)
    slot = m.get("active")
    if slot:
        path = slot_dir(slot, root)
        if path not in sys.path:
            sys.path.insert(0, path)
    if forget:  # the app is imported afresh: from the slot, and without this module in RAM
        for name in list(sys.modules):
            if name.startswith("citynode.fuota") or (slot and (name == "citynode" or name.startswith("citynode."))):
                del sys.modules[name]
        pkg = sys.modules.get("citynode")
        if pkg is not None and "fuota" in pkg.__dict__:
            delattr(pkg, "fuota")
    return m
