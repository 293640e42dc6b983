# The four node roles. A role owns its sensors (built from the HAL it is given) and offers:
#   msg_type        the uplink message it produces
#   sleep           "deep" (wake per cycle) or "light" (stays awake: beams, sniffing)
#   configure(cfg)  take thresholds from the config (also after a config downlink)
#   measure()       one reading dict (fields it measured, "faults" for the rest); never raises
#   urgent(r)       True when a reading must go out now, confirmed (fire alarm)
#   faults()        device fault flags for device_status (e.g. "bme680")
#   action(name)    one-shot downlink actions (occupancy_reset)
#   idle(ms)        light sleepers: keep counting while waiting for the next slot
#   selftest()      [{"name", "ok", "value" | "error"}] for `citynode check`
# Each role is its own module, imported only when configured, so a node carries in RAM only the
# drivers its role needs.


def build(config, board, hal, clock):
    role = config["role"]
    if role == "air_quality":
        from citynode.roles.air_quality import AirQuality as cls
    elif role == "bin_fill":
        from citynode.roles.bin_fill import BinFill as cls
    elif role == "passenger_count":
        from citynode.roles.passenger_count import PassengerCount as cls
    else:
        from citynode.roles.crowd_count import CrowdCount as cls
    return cls(config, board, hal, clock)


class Role:
    msg_type = ""
    sleep = "deep"

    def __init__(self):
        self._faults = []

    def configure(self, config):
        pass

    def urgent(self, reading):
        return False

    def faults(self):
        return self._faults

    def action(self, name):
        pass

    poll_ms = 0  # light sleepers: how often idle() hands over to poll() (0: sleep in one go)

    def idle(self, ms):
        """Wait ``ms``; a light sleeper polls its drivers every ``poll_ms`` meanwhile."""
        step_ms = self.poll_ms
        if not step_ms:
            self.clock.sleep_ms(ms)
            return
        while ms > 0:
            step = step_ms if ms > step_ms else ms
            self.clock.sleep_ms(step)
            ms -= step
            self.poll()

    def poll(self):
        pass

    def selftest(self):
        from citynode.selftest import role_checks  # only `citynode check` needs it: not in RAM

        return role_checks(self)


def error_text(exc):
    return "%s: %s" % (type(exc).__name__, exc)
