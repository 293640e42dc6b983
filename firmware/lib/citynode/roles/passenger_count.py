# passenger_count: two IR break-beams per door (up to 4 doors) counted by interrupts, occupancy,
# and a GPS position from an NMEA receiver. Stays awake (light sleep) so no crossing is missed.
from citynode.drivers.beams import BeamCounter, Door
from citynode.drivers.nmea import GPS
from citynode.roles import Role

_POLL_MS = 50  # process beam edges and GPS lines this often while idle
_FIX_MAX_AGE_MS = 120000  # an older fix is not sent as the vehicle's position


class PassengerCount(Role):
    msg_type = "passenger_count"
    sleep = "light"

    def __init__(self, config, board, hal, clock):
        Role.__init__(self)
        self.clock = clock
        self.hal = hal
        doors = []
        for i, spec in enumerate(config.get("doors") or [{"number": 0}]):
            number = spec.get("number", i)
            doors.append(Door(
                number,
                hal.pin(spec.get("beam_a", "door%d_a" % number), "in"),
                hal.pin(spec.get("beam_b", "door%d_b" % number), "in"),
                hal.pin(spec.get("door_open", "door%d_open" % number), "in") if spec.get("gated", True) else None,
            ))
        ticks_us = getattr(clock, "ticks_us", None)
        # Hard IRQs keep edges exact on a board; the sim pins call handlers directly.
        kwargs = {"hard_irq": getattr(hal, "hard_irq", board.get("name") != "sim")}
        if ticks_us is not None:
            kwargs["ticks_us"] = ticks_us
            kwargs["ticks_diff"] = clock.ticks_diff
        self.beams = BeamCounter(doors, **kwargs)
        self.gps = None
        if config.get("gps", True):
            gkw = {}
            if hasattr(clock, "ticks_ms"):
                gkw = {"ticks_ms": clock.ticks_ms, "ticks_diff": clock.ticks_diff}
            self.gps = GPS(hal.uart("gps"), **gkw)
        self.interval = config["interval"]
        self.window_start = clock.ticks_ms()

    def configure(self, config):
        self.interval = config["interval"]

    def action(self, name):
        if name == "occupancy_reset":
            self.beams.reset_occupancy()

    # Light sleep in short steps: beam edges wait in the IRQ ring, GPS lines in the UART buffer.
    poll_ms = _POLL_MS

    def poll(self):
        self.beams.process()
        if self.gps is not None:
            self.gps.poll()

    def measure(self):
        self.beams.process()
        now = self.clock.ticks_ms()
        interval_s = max(1, min(86400, self.clock.ticks_diff(now, self.window_start) // 1000 or self.interval))
        self.window_start = now
        reading = {
            "interval": interval_s,
            "doors": self.beams.take_counts(),  # [{"door", "boardings", "alightings"}] as the schema has it
            "occupancy": self.beams.occupancy,
        }
        flags = []
        if self.gps is not None:
            self.gps.poll()
            position = self.gps.position(_FIX_MAX_AGE_MS)
            if position is None:
                reading["faults"] = ["latitude", "longitude"]
                flags.append("gps")
            else:
                reading["latitude"] = round(position[0], 5)
                reading["longitude"] = round(position[1], 5)
        if self.beams.overflows:
            flags.append("beam")
        self._faults = flags
        return reading

