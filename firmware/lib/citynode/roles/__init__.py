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

    def idle(self, ms):
        self.clock.sleep_ms(ms)

    def selftest(self):
        checks = []
        try:
            reading = self.measure()
        except Exception as exc:  # selftest reports, never raises
            return [{"name": self.msg_type, "ok": False, "error": str(exc)}]
        missing = reading.get("faults", [])
        values = {k: v for k, v in reading.items() if k != "faults"}
        checks.append({"name": self.msg_type, "ok": not missing, "value": values})
        for name in missing:
            checks.append({"name": name, "ok": False, "error": "could not be measured"})
        return checks


def error_text(exc):
    return "%s: %s" % (type(exc).__name__, exc)
