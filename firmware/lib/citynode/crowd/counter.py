# The crowd_count role's counting loop: WiFi probe requests and BLE adverts -> anonymous counts.
#
#   counter = CrowdCounter(Anonymiser(), wifi=ProbeCounter(source, anon), ble=BLECounter(bluetooth, anon))
#   counter.start(); ... counter.poll() often ...; reading = counter.end_window(interval_s)
# end_window() returns a crowd_count reading (schema crowd_count v1 minus battery, which the role adds).


class CrowdCounter:
    def __init__(self, anonymiser, wifi=None, ble=None):
        self.anonymiser = anonymiser
        self.wifi = wifi
        self.ble = ble

    def start(self, ble_duration_ms=0):
        if self.ble is not None:
            self.ble.start(ble_duration_ms)

    def poll(self):
        """Drain the WiFi frame source (BLE results arrive by IRQ). Returns probe requests handled."""
        return self.wifi.poll() if self.wifi is not None else 0

    def end_window(self, interval_s):
        """Close the window: {"interval", "wifi_devices", "ble_devices"}; hashes forgotten, key replaced."""
        self.poll()
        reading = self.anonymiser.end_window()
        reading["interval"] = interval_s
        return reading

    def stop(self):
        if self.ble is not None:
            self.ble.stop()
