# Simulated peripherals only some roles use: machine.time_pulse_us replay (HC-SR04 echo timing on
# bin_fill). Split from citynode_sim.simio so the other roles' sim boards do not carry them in RAM;
# the RTC (the LoRaWAN session store's memory) is citynode_sim.simrtc.


class SimPulse:
    """Replay of machine.time_pulse_us(pin, level, timeout_us): returns scripted durations in us.

    A scripted value < 0 is returned as is (-2: no pulse started, -1: pulse longer than timeout);
    a duration above the caller's timeout becomes -1, as on the real port.
    """

    def __init__(self, durations=(), repeat_last=True):
        self.durations = list(durations)
        self.repeat_last = repeat_last
        self.calls = 0

    def push(self, *durations):
        self.durations.extend(durations)

    def __call__(self, pin, level, timeout_us=1000000):
        self.calls += 1
        if not self.durations:
            return -2
        d = self.durations[0] if (self.repeat_last and len(self.durations) == 1) else self.durations.pop(0)
        if d >= 0 and d > timeout_us:
            return -1
        return d


def echo_us(distance_mm, temperature_c=20.0):
    """Round-trip echo time for a target at distance_mm: t = 2 d / c, c = 331.3 + 0.606 T m/s."""
    c = 331.3 + 0.606 * temperature_c  # m/s == mm/ms
    return int(2 * distance_mm * 1000 / c + 0.5)
