# Boot wiring: config.json + board.json -> HAL -> role, link, battery -> Node. main.py calls main().
#
# A bad config.json or board.json stops here with one line naming the field, e.g.
#   ConfigError: config interval: expected an integer 60..86400, got 30
# and the node waits (a watchdog-free idle) instead of boot-looping: a technician sees the line on
# the USB console or with `citynode check`.
import sys

from citynode import config as _config
from citynode import files

BOARD_PATH = "board.json"
SIM_PATH = "sim.json"  # the virtual board's scenario (scripted sensors, seed, downlinks, cycles)


def load_board(cfg):
    board = files.read(BOARD_PATH)
    if not isinstance(board, dict):
        raise _config.ConfigError("board.json", "missing or unreadable")
    name = board.get("name")
    if name != cfg["board"]:
        raise _config.ConfigError("board", "config names %r but board.json is %r" % (cfg["board"], name))
    return board


def build(cfg=None, board=None, sim=None):
    """Everything a node needs, built from its files: (config, board, hal, clock, role, link, battery)."""
    from citynode import hal as _hal
    from citynode import roles

    cfg = cfg or _config.load()
    board = board or load_board(cfg)
    if sim is None:
        sim = files.read(SIM_PATH, {}) if _hal.backend_name(board) == "sim" else {}
    kwargs = {}
    if _hal.backend_name(board) == "sim":
        kwargs = {"seed": sim.get("seed", 1), "values": sim.get("values", {})}
    hal = _hal.load(board, **kwargs)
    clock = getattr(hal, "clock", None) or _hal.clock()
    role = roles.build(cfg, board, hal, clock)
    battery = _battery(board, hal)
    link = build_link(cfg, board, hal, sim, battery)
    return cfg, board, hal, clock, role, link, battery


def _battery(board, hal):
    from citynode.drivers.battery import Battery

    try:
        reader = Battery(hal.adc("battery"), hal.battery_divider())
    except Exception:
        return None
    return reader.read_volts


def build_link(cfg, board, hal, sim, battery=None):
    """The LoRaWAN link for this board: the software MAC over its radio, an AT modem, or (sim board
    without a network simulator) the console stand-in that prints every uplink."""
    from citynode import links

    if board.get("name") == "sim" and not sim.get("network"):
        return links.ConsoleLink(max_payload=sim.get("max_payload", 51), downlinks=sim.get("downlinks", ()))
    return links.lorawan_link(cfg, board, hal, sim, battery)


def _now(hal, clock):
    if getattr(hal, "clock", None) is clock and hasattr(clock, "ticks_ms"):
        base = 1767225600  # 2026-01-01T00:00:00Z: the virtual board's epoch
        return lambda: base + clock.ticks_ms() // 1000
    import time

    return time.time


def main(cycles=None):
    from citynode.app import Node

    try:
        cfg, board, hal, clock, role, link, battery = build()
    except _config.ConfigError as exc:
        print("ConfigError: %s" % exc)
        return 1
    except ValueError as exc:  # driver and board errors name their field too
        print("%s: %s" % (type(exc).__name__, exc))
        return 1
    sim = files.read(SIM_PATH, {}) if board.get("name") == "sim" else {}
    if cycles is None:
        cycles = sim.get("cycles")
    print("citynode %s role=%s board=%s dev_eui=%s" % (
        ".".join(str(p) for p in __import__("citynode").VERSION), cfg["role"], cfg["board"],
        cfg.get("dev_eui", "-")))
    node = Node(cfg, hal, role, link, battery=battery, now=_now(hal, clock), clock=clock, pace=sim.get("pace"))
    node.run(cycles, heap_report=bool(sim.get("heap_report")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
