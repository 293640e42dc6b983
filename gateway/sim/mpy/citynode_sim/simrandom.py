# Seeded randomness and the ADC of the sim board: identical sequences on MicroPython and CPython for
# the same seed. Split from citynode_sim.simio, which the firmware process always loads on the sim
# board, so that only the simulators (and a sim board without the host link) carry it.


class SimRandom:
    """xorshift32 (Marsaglia 2003): tiny, seedable and identical on every runtime."""

    def __init__(self, seed=1):
        self.seed(seed)

    def seed(self, seed):
        self._s = (seed * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF or 1

    def next32(self):
        x = self._s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._s = x
        return x

    def random(self):
        """Float in [0, 1)."""
        return (self.next32() >> 8) / 16777216

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.random()

    def randint(self, lo, hi):
        return lo + self.next32() % (hi - lo + 1)

    def noise(self, sigma):
        """Approximately normal noise (Irwin-Hall sum of 4 uniforms, variance matched)."""
        s = self.random() + self.random() + self.random() + self.random() - 2.0
        return s * sigma * 1.7320508  # var(sum of 4 U(0,1)) = 1/3


class SimADC:
    """ADC returning a scripted voltage in microvolts (a number, or a list consumed per read, the last
    value repeating), with optional seeded noise. read_u16 assumes `full_scale_uv`."""

    def __init__(self, uv=0, noise_uv=0, seed=1, full_scale_uv=3300000):
        self.script = list(uv) if isinstance(uv, (list, tuple)) else [uv]
        self.noise_uv = noise_uv
        self.rng = SimRandom(seed)
        self.full_scale_uv = full_scale_uv
        self.reads = 0

    def set_uv(self, uv):
        self.script = [uv]

    def read_uv(self):
        self.reads += 1
        uv = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if self.noise_uv:
            uv += int(self.rng.noise(self.noise_uv))
        return max(0, min(self.full_scale_uv, int(uv)))

    def read_u16(self):
        return self.read_uv() * 65535 // self.full_scale_uv
