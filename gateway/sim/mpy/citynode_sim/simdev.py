# Simulated UART sensors (SDS011, PMS5003, A02YYUW) and the sim board's device set-up.
#
# Each sensor is a SimUART that answers the real command frames of its protocol (see the drivers for
# the formats) with frames built by the drivers' own frame builders, so a protocol mistake shows up
# as a failing test rather than as two matching mistakes. Values are scripted (a list, consumed one
# per frame, the last repeating) or drawn from a seeded SimRandom. Faults can be injected: garbage
# before frames, frames with a broken checksum, a sensor that ignores its first wake command, a dead
# sensor, and chunked delivery (partial frames per read).
#
# RAM: the simulators live in simpm (SDS011, PMS5003) and simdistance (A02YYUW), imported by the
# functions below for the sensor a role asks for; their class names are re-exported on access.


def __getattr__(name):
    if name in ("SimSDS011", "SimPMS5003"):
        from citynode_sim import simpm as module
    elif name == "SimA02YYUW":
        from citynode_sim import simdistance as module
    elif name == "_ScriptedUART":
        from citynode_sim.simuart import ScriptedUART

        return ScriptedUART
    else:
        raise AttributeError(name)
    return getattr(module, name)




# --- the sim board's devices, created on first use by SimHal -------------------------------------------
# `values` (SimHal(values=...)) scripts them:
#   air: list of BME680 climates (dicts)   pm_sensor: "sds011" | "pms5003"   pm: list of PM tuples
#   distance_mm: list of ultrasonic targets (None = no echo), for trigger/echo and the A02YYUW UART
#   air_temperature_c: air temperature the echoes travel through   battery_v: volts at the cell
#   tilt: 0/1   fault: names of sensors to make absent or dead ("bme680", "pm", "distance")


def attach_i2c_devices(hal, bus):
    if "bme680" in hal.values.get("fault", ()):
        return
    from citynode_sim.sim_bme680 import SimBME680

    addr = hal.board.get("bme680_address", 0x77)
    hal.devices["bme680"] = bus.attach(addr, SimBME680(values=hal.values.get("air"), seed=hal.device_seed(0)))


def make_uart_device(hal, name):
    v = hal.values
    dead = name in v.get("fault", ())
    if name == "pm":
        from citynode_sim import simpm

        cls = simpm.SimPMS5003 if v.get("pm_sensor") == "pms5003" else simpm.SimSDS011
        dev = cls(v.get("pm"), seed=hal.device_seed(1), clock=hal.clock, dead=dead)
    elif name == "distance":
        from citynode_sim.simdistance import SimA02YYUW

        dev = SimA02YYUW(v.get("distance_mm"), seed=hal.device_seed(2), clock=hal.clock, dead=dead)
    else:
        from citynode_sim.simuart import SimUART

        dev = SimUART()
    hal.devices[name] = dev
    return dev


def make_pulse(hal):
    from citynode_sim.simextra import SimPulse, echo_us
    from citynode_sim.simrandom import SimRandom

    v = hal.values
    if "distance" in v.get("fault", ()):
        return SimPulse([-2])
    temp_c = v.get("air_temperature_c", 20.0)
    script = v.get("distance_mm") or [SimRandom(hal.device_seed(3)).randint(300, 1200)]
    return SimPulse([-1 if d is None else echo_us(d, temp_c) for d in script])
