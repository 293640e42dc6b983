# crowd_count: distinct WiFi devices (probe requests) and BLE devices per window, counted through
# the anonymiser: only the two counts ever leave RAM. Stays awake (light sleep) to listen.
from citynode.crowd.anonymiser import Anonymiser
from citynode.crowd.counter import CrowdCounter
from citynode.crowd.probe import ProbeCounter
from citynode.roles import Role

_POLL_MS = 100


class CrowdCount(Role):
    msg_type = "crowd_count"
    sleep = "light"

    def __init__(self, config, board, hal, clock):
        Role.__init__(self)
        self.clock = clock
        self.anonymiser = Anonymiser(rssi_floor_dbm=config["rssi_floor"])
        wifi = None
        flags = []
        try:
            wifi = ProbeCounter(hal.wifi_source(config.get("wifi_channel", 1)), self.anonymiser)
        except Exception:
            flags.append("wifi_sniffer")
        ble = None
        try:
            from citynode.crowd.ble import BLECounter

            ble = BLECounter(hal.bluetooth(), self.anonymiser)
        except Exception:
            flags.append("ble_scanner")
        self.counter = CrowdCounter(self.anonymiser, wifi=wifi, ble=ble)
        self._missing = flags
        self._faults = list(flags)
        self.counter.start()
        self.window_start = clock.ticks_ms()

    def configure(self, config):
        self.anonymiser.rssi_floor_dbm = config["rssi_floor"]

    poll_ms = _POLL_MS

    def poll(self):
        self.counter.poll()

    def measure(self):
        now = self.clock.ticks_ms()
        interval_s = max(1, min(86400, self.clock.ticks_diff(now, self.window_start) // 1000))
        self.window_start = now
        reading = self.counter.end_window(interval_s)
        faults = []
        if "wifi_sniffer" in self._missing:
            reading.pop("wifi_devices", None)
            faults.append("wifi_devices")
        if "ble_scanner" in self._missing:
            reading.pop("ble_devices", None)
            faults.append("ble_devices")
        reading["faults"] = faults
        self._faults = list(self._missing)
        return reading
