# Boot wiring: config.json + board.json -> HAL -> role, link, battery -> Node. main.py calls main().
#
# A bad config.json or board.json stops here with one line naming the field, e.g.
#   ConfigError: config interval: expected an integer 60..86400, got 30
# and the node waits (a watchdog-free idle) instead of boot-looping: a technician sees the line on
# the USB console or with `citynode check`.
#
# RAM: the wiring itself (citynode.boot), config validation (citynode.config, imported again by a
# config downlink) and the HAL's board-file helpers (citynode.hal) are needed once. main() builds
# the node, then drops them from sys.modules so the garbage collector returns their bytecode
# (~15 KB on the unix port, where every module lives in the heap; as much again in a non-frozen
# ESP32 build) before the first cycle.
import sys

BOARD_PATH = "board.json"
SIM_PATH = "sim.json"  # the virtual board's scenario (scripted sensors, seed, downlinks, cycles)
BOOT_ONLY = ("citynode.boot", "citynode.config", "citynode.hal", "citynode.boards")


def build(cfg=None, board=None, sim=None):
    """Everything a node needs, built from its files: (config, board, hal, clock, role, link, battery)."""
    from citynode.boot import build

    return build(cfg, board, sim)


def load_board(cfg):
    from citynode.boot import load_board

    return load_board(cfg)


def build_link(cfg, board, hal, sim, battery=None):
    from citynode.boot import build_link

    return build_link(cfg, board, hal, sim, battery)


def now_function(hal, clock):
    """The node's wall clock: the virtual board's epoch plus its virtual time, else time.time."""
    if getattr(hal, "clock", None) is clock and hasattr(clock, "ticks_ms"):
        base = 1767225600  # 2026-01-01T00:00:00Z: the virtual board's epoch

        def now():
            return base + clock.ticks_ms() // 1000

        return now
    import time

    return time.time


def forget(names):
    """Drop modules from sys.modules and from their parent package, so that once nothing else
    refers to their functions the garbage collector frees them; a later import loads them again."""
    for name in names:
        if sys.modules.pop(name, None) is None:
            continue
        parent, _, leaf = name.rpartition(".")
        package = sys.modules.get(parent)
        if package is not None and leaf in package.__dict__:
            delattr(package, leaf)


def trial():
    """An app installed over the air boots on trial (citynode.fuota.slots): it runs the self-test once;
    if every check passes it stays, else the node goes back to the previous app. Returns True when the
    node must reboot (rolled back)."""
    from citynode import files

    marker = files.read("slots.json", None)
    if not marker or not marker.get("trial"):
        return False
    import gc

    from citynode import selftest

    try:
        report = selftest.run()
        ok = all(c.get("ok") for c in report["checks"])
    except Exception as exc:  # a self-test that raises is a failed one
        print("selftest: %s: %s" % (type(exc).__name__, exc))
        ok = False
    selftest = report = None
    forget(("citynode.selftest",))
    gc.collect()
    from citynode.fuota import slots

    if ok:
        slots.confirm()
        print("update confirmed")
    else:
        slots.rollback("selftest")
        print("update rolled back: selftest failed")
    forget(("citynode.fuota.slots", "citynode.fuota"))
    return not ok


def reboot():
    try:
        import machine
    except ImportError:  # the unix port: the process ends, the harness starts main.py again
        return 3
    machine.reset()


def main(cycles=None):
    import gc

    if trial():
        return reboot()
    from citynode import boot

    started = boot.start(cycles)
    boot = None
    forget(BOOT_ONLY)
    gc.collect()
    if type(started) is int:
        return started
    cfg, hal, clock, role, link, battery, cycles, heap_report, pace = started
    started = None
    from citynode.app import Node  # after the boot-only modules are gone: the boot's heap peak

    node = Node(cfg, hal, role, link, battery=battery, now=now_function(hal, clock), clock=clock, pace=pace)
    node.run(cycles, heap_report=heap_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
