# Boot wiring: config.json + board.json -> HAL -> role, link, battery -> Node (citynode.run.main).
#
# Boot-only code: citynode.run drops this module (with config and the HAL's board helpers) from
# RAM once the node is built, so it must not be referenced by anything the node keeps. The order
# keeps the boot's heap peak low: config and board files are read and checked first and the
# validator dropped, then the HAL, the role's drivers and the link are loaded, with a collection
# between the stages (the unix port holds every module's bytecode in the heap).
import gc

from citynode import files

BOARD_PATH = "board.json"
SIM_PATH = "sim.json"  # the virtual board's scenario (scripted sensors, seed, downlinks, cycles)


def load_board(cfg):
    from citynode import config as _config

    board = files.read(BOARD_PATH)
    if not isinstance(board, dict):
        raise _config.ConfigError("board.json", "missing or unreadable")
    name = board.get("name")
    if name != cfg["board"]:
        raise _config.ConfigError("board", "config names %r but board.json is %r" % (cfg["board"], name))
    roles = board.get("roles")
    if roles and cfg["role"] not in roles:  # boards/<board>.json lists the roles its pins can carry
        raise _config.ConfigError("role", "%s is not a role board %s carries (%s)" % (
            cfg["role"], name, ", ".join(roles)))
    return board


def build(cfg=None, board=None, sim=None):
    """Everything a node needs, built from its files: (config, board, hal, clock, role, link, battery)."""
    if cfg is None:
        from citynode import config as _config

        cfg = _config.load()
        _config = None
    board = board or load_board(cfg)
    from citynode.run import forget

    forget(("citynode.config",))  # a config downlink imports it again
    gc.collect()
    from citynode import hal as _hal

    if sim is None:
        sim = files.read(SIM_PATH, {}) if _hal.backend_name(board) == "sim" else {}
    kwargs = {}
    if _hal.backend_name(board) == "sim":
        kwargs = {"seed": sim.get("seed", 1), "values": sim.get("values", {})}
    hal = _hal.load(board, **kwargs)
    clock = getattr(hal, "clock", None) or _hal.clock()
    _hal = None
    gc.collect()
    from citynode import roles

    role = roles.build(cfg, board, hal, clock)
    gc.collect()
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


def _simulated(board):
    """The sim board and its variants (boards/sim_*.json: "sim": true, e.g. with an AT modem)."""
    return board.get("name") == "sim" or bool(board.get("sim"))


def build_link(cfg, board, hal, sim, battery=None):
    """The LoRaWAN link for this board: the software MAC over its radio, an AT modem (RAK3172, Wio-E5:
    citynode.lorawan_at), or (a simulated board without a network simulator) the console stand-in
    that prints every uplink."""
    from citynode import links

    if _simulated(board) and not sim.get("network"):
        return links.ConsoleLink(max_payload=sim.get("max_payload", 51), downlinks=sim.get("downlinks", ()))
    return links.lorawan_link(cfg, board, hal, sim, battery)


def start(cycles=None):
    """Build the node's parts from its files: (cfg, hal, clock, role, link, battery, cycles,
    heap_report, pace), or an exit code after printing one line naming the bad field. citynode.run makes
    the Node once this module and the other boot-only ones are out of RAM."""
    try:
        cfg, board, hal, clock, role, link, battery = build()
    except ValueError as exc:  # config, driver and board errors name their field: "ConfigError: ..."
        print("%s: %s" % (type(exc).__name__, exc))
        return 1
    sim = files.read(SIM_PATH, {}) if _simulated(board) else {}
    if cycles is None:
        cycles = sim.get("cycles")
    print("citynode %s role=%s board=%s dev_eui=%s" % (
        ".".join(str(p) for p in __import__("citynode").VERSION), cfg["role"], cfg["board"],
        cfg.get("dev_eui", "-")))
    return cfg, hal, clock, role, link, battery, cycles, bool(sim.get("heap_report")), sim.get("pace")
