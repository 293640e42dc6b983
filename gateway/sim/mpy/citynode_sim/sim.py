# Simulated peripherals for the MicroPython unix port and tests. Same method names as machine.*:
# I2C.readfrom_mem/writeto_mem, UART.read/write/any, Pin.value/irq, ADC.read_uv, time_pulse_us.
# Everything is deterministic: randomness comes from SimRandom (xorshift32), which yields the same
# sequence on MicroPython and CPython for the same seed; time is virtual (SimClock).
#
# RAM: on the unix port every imported module's bytecode sits in the 96 KB heap, and none of this
# is loaded on a real node. So the peripherals live in small modules imported when a role first
# asks for them: simio (clock, pins, ADC, watchdog: every role), simuart (UART), simbus (I2C),
# simextra (time_pulse_us replay), simrtc (RTC), simdev (particulate/distance sensors), sim_bme680,
# simcrowd (WiFi/BLE; simble: BLE from the host), simtransit (passengers at the doors, GPS). The names tests import from here
# (SimI2C, SimPulse, ...) are resolved on access by __getattr__.
from citynode.hal import RESET_DEEP_SLEEP, RESET_POWER_ON
from citynode_sim.simio import SimClock, SimPin, SimWDT
from citynode_sim.simrandom import SimADC, SimRandom

_LAZY = {"SimUART": "simuart", "RegisterDevice": "simbus", "SimI2C": "simbus", "SimPulse": "simextra", "SimRTC": "simrtc",
         "echo_us": "simextra"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(__import__("citynode_sim." + module, None, None, (name,)), name)


class SimHal:
    """The simulated board: builds sim peripherals by the same names the real HALs use.

    Sensors are created on first use (so a role only loads the simulators it needs) and scripted by
    `values` (see citynode_sim.simdev); `seed` makes randomised values repeatable, each device
    drawing from its own stream so the order of creation does not matter. deep_sleep() advances
    virtual time and marks the next reset as a wake-up from deep sleep.
    """

    def __init__(self, board=None, seed=1, values=None, clock=None):
        self.board = board or {}
        self.seed = seed
        self.rng = SimRandom(seed)
        self.clock = clock or SimClock()
        self.values = values or {}
        self.devices = {}
        # The virtual device restarts the interpreter on a reset and says why (gateway/sim/virtual_device.py).
        self._reset_cause = _env("CITYNODE_RESET_CAUSE") or RESET_POWER_ON
        self._wdt = None
        self._i2c = None
        self._uarts = {}
        self._pins = {}
        self._adcs = {}
        self._rtc = None
        self._pulse = None
        self._transit = None
        self.slept_ms = 0

    def device_seed(self, k):
        return (self.seed * 7919 + k * 104729) & 0x3FFFFFFF

    def i2c(self, bus=0):
        if self._i2c is None:
            import gc

            gc.collect()  # the simulators are imported late; give their compilation a clean heap
            from citynode_sim import simdev
            from citynode_sim.simbus import SimI2C

            self._i2c = SimI2C()
            simdev.attach_i2c_devices(self, self._i2c)
        return self._i2c

    def uart(self, name):
        if name not in self._uarts:
            import gc

            gc.collect()
            if name == "gps":
                self._uarts[name] = self.devices[name] = self.transit().gps()
            else:
                from citynode_sim import simdev

                self._uarts[name] = simdev.make_uart_device(self, name)
        return self._uarts[name]

    def transit(self):
        """The bus or tram around a passenger counter: people at the doors and the GPS route
        (citynode_sim.simtransit, scripted by values["passengers"] and values["gps"])."""
        if self._transit is None:
            from citynode_sim.simtransit import Transit

            self._transit = self.devices["transit"] = Transit(self)
        return self._transit

    def pin(self, name, mode=None, pull=None, value=None):
        if name not in self._pins:
            level = 1 if (name == "tilt" and self.values.get("tilt")) else 0
            if name.startswith("door") and value is None:
                pin = self.transit().door_pin(name)  # beams and door contact driven by passengers
            else:
                pin = SimPin(level if value is None else value, name=name)
            self._pins[name] = pin
        return self._pins[name]

    def adc(self, name):
        if name not in self._adcs:
            uv = 0
            if name == "battery":
                uv = int(self.values.get("battery_v", 3.9) / self.battery_divider() * 1000000)
            self._adcs[name] = SimADC(uv, noise_uv=2000, seed=self.device_seed(4))
        return self._adcs[name]

    @property
    def pulse(self):
        if self._pulse is None:
            from citynode_sim import simdev

            self._pulse = self.devices["pulse"] = simdev.make_pulse(self)
        return self._pulse

    def spi(self, bus=0):
        from citynode.hal import BoardError

        raise BoardError("spi", "the sim board has no SPI devices")

    def wdt(self, timeout_ms=30000):
        self._wdt = SimWDT(timeout_ms, self.clock)
        return self._wdt

    def rtc(self):
        if self._rtc is None:
            from citynode_sim.simrtc import SimRTC

            self._rtc = SimRTC()
        return self._rtc

    def time_pulse_us(self, pin, level, timeout_us=1000000):
        return self.pulse(pin, level, timeout_us)

    def battery_divider(self):
        from citynode.hal import board_get

        return board_get(self.board, "battery.divider", (int, float), 2.0)

    def peripheral_power(self, on):
        return False

    hard_irq = False  # the unix port has no hard interrupts

    def wifi_source(self, channel=1):
        """802.11 frame source for crowd_count: values["wifi_replay"] names a CNWIFI1 capture to
        replay (looping); otherwise synthetic probe requests from a stable population of devices
        (values["wifi"]: SyntheticWifi arguments), repeated every values["wifi_period_s"] (60 s)."""
        if "wifi" in self.values.get("fault", ()):
            raise OSError(19)
        path = self.values.get("wifi_replay")
        if path:
            from citynode_sim.replay import ReplaySource

            return ReplaySource(path, loop=True)
        from citynode_sim import simcrowd

        return simcrowd.PacedWifi(self, self.values.get("wifi", {}), self.values.get("wifi_period_s", 60))

    def bluetooth(self):
        """A stand-in for the `bluetooth` module (values["ble"]: SyntheticBluetooth arguments)."""
        if "ble" in self.values.get("fault", ()):
            raise OSError(19)
        from citynode_sim import simcrowd

        return simcrowd.PacedBluetooth(self, self.values.get("ble", {}), self.values.get("ble_period_s", 60))

    def reset(self):
        """machine.reset(): on the virtual board the run ends with exit status 64, which the virtual
        device turns into a soft reset."""
        raise SystemExit(64)

    def reset_cause(self):
        return self._reset_cause

    def deep_sleep(self, ms):
        wdt = self._wdt
        if wdt is not None:
            wdt.paused = True  # the chip is off in deep sleep, and so is its watchdog
        self.clock.advance(ms)
        if wdt is not None:
            wdt.paused = False
            wdt._fed = self.clock.ticks_ms()
        self.slept_ms += ms
        self._reset_cause = RESET_DEEP_SLEEP


def _env(name):
    try:
        import os

        return os.getenv(name)
    except (ImportError, AttributeError):
        return None
