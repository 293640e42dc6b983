# The sim board with its peripherals on the host: what `citynode device run` and the virtual device
# give the firmware. The simulators (BME680 register map, SDS011/PMS5003/A02YYUW frames, ultrasonic
# echoes, passengers at the doors, GPS, WiFi probes and BLE adverts: citynode_sim.sim*) run in the
# host process (gateway/sim/simhost.py); this module speaks to them over two pipes, as a driver speaks to
# a chip over a bus, so the drivers' own parsing and compensation code still runs here on the bytes
# the simulators produce, and none of the simulators' code takes heap on the unix port.
#
# Time stays here: the virtual clock, pins, ADC and watchdog are local (citynode_sim.simio), and
# every request carries the virtual time in us, to which the host sets its clock before it answers.
#
# Wire format. Request: one line of JSON, [seq, t_us, device, method, [args]] (bytes as hex strings).
# Reply: a 5-byte header, a kind byte ("j" JSON value, "b" raw bytes, "e" errno of an OSError), the
# request's seq and a 24-bit payload length, then the payload. Raw bytes go straight into the
# caller's buffer.
#
# Staying in step: a Ctrl-C or a soft reset can end a call between its request and its reply, and
# the reply then still comes. Replies to other seqs are skipped; and a new Link, or a call after an
# interrupted one, first resynchronises: a newline ends any half-written request line, then
# ["sync", token] asks the host for the bytes "\0sync" + token, and everything before them (a late
# reply, the rest of a half-read one) is dropped.
import json
from binascii import hexlify

from citynode_sim.simio import SimClock, SimPin, SimWDT

ENV = "CITYNODE_SIM_LINK"  # "<request fd>,<reply fd>", set by the host that runs the simulators
_DEEP_SLEEP = "deep_sleep"


class Link:
    """The two pipes to the host's simulators; call() is one request and its reply."""

    def __init__(self, spec, clock):
        w, r = spec.split(",")
        self._w = open("/dev/fd/" + w, "wb")
        self._r = open("/dev/fd/" + r, "rb")
        self._hdr = bytearray(5)
        self.clock = clock
        self._seq = 0
        self._open = True  # a fresh Link (after a soft reset) resynchronises before its first call

    def _resync(self):
        from os import urandom

        token = b"\0sync" + hexlify(urandom(4))
        self._w.write(b'\n["sync", "' + token[5:] + b'"]\n')
        b = bytearray(1)
        i = 0
        while i < len(token):  # token[0] (NUL) occurs once in it: a mismatch restarts the match
            self._fill(b)
            i = i + 1 if b[0] == token[i] else int(b[0] == 0)
        self._open = False

    def _fill(self, buf):
        mv = memoryview(buf)
        got = 0
        while got < len(mv):
            n = self._r.readinto(mv[got:])
            if not n:
                raise OSError(5)  # EIO: the host went away
            got += n

    def call(self, dev, method, args=(), into=None):
        if self._open:  # the last call never saw its reply
            self._resync()
        self._open = True
        seq = self._seq = (self._seq + 1) & 0x7F
        self._w.write(json.dumps([seq, self.clock.now_us, dev, method, args]))
        self._w.write(b"\n")
        h = self._hdr
        while True:
            self._fill(h)
            n = (h[2] << 16) | (h[3] << 8) | h[4]
            if h[1] == seq:
                break
            self._fill(bytearray(n))  # a late reply to an interrupted call
        if h[0] == 0x62 and into is not None:  # "b" into the caller's buffer
            self._fill(memoryview(into)[:n])
            self._open = False
            return n
        data = bytearray(n)
        self._fill(data)
        self._open = False
        if h[0] == 0x62:
            return data
        value = json.loads(data)
        if h[0] == 0x65:  # "e"
            raise OSError(value)
        return value


class Remote:
    """A device on the host: a sensor's machine.UART (read() -> bytes or None), the WiFi sniffer's
    record source (read(buf) -> n) or an ADC input. A device with nothing to read says until which
    virtual ms it will have nothing either (a GPS between bursts, a WiFi population between
    replays), so polls until then cost no round trip; a write ends that quiet."""

    def __init__(self, link, dev):
        self._link = link
        self._dev = dev
        self._quiet_ms = 0

    def _read(self, n, into=None):
        if self._link.clock.now_us // 1000 < self._quiet_ms:
            return None
        got = self._link.call(self._dev, "read", [n], into)
        if type(got) is list:  # [None, quiet until ms]: nothing to read
            self._quiet_ms = got[1]
            return None
        return got

    def any(self):
        return self._link.call(self._dev, "any")

    def read(self, n=-1):
        if type(n) is not int:  # the WiFi source: read(buf) -> bytes in buf, 0 for none
            return self._read(len(n), n) or 0
        return self._read(n)

    def readinto(self, buf, n=-1):
        return self._read(len(buf) if n < 0 else n, buf)

    def write(self, data):
        self._quiet_ms = 0
        return self._link.call(self._dev, "write", [hexlify(data).decode()])

    def read_uv(self):
        return self._link.call(self._dev, "read_uv")


class RemoteI2C:
    """machine.I2C with the host's register-map devices on it (the calls citynode's drivers make)."""

    def __init__(self, link):
        self._link = link

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        self._link.call("i2c", "readfrom_mem", [addr, reg, len(buf)], buf)

    def writeto(self, addr, buf, stop=True):
        return self._link.call("i2c", "writeto", [addr, hexlify(buf).decode()])


class _Doors:
    """SimClock.events for the beams and door contacts of the host's passenger simulator: at each
    due instant the host moves its pin and says which, and the local pin follows (firing its IRQ)."""

    def __init__(self, link, pins):
        self._link = link
        self._pins = pins
        self.due_us = None

    def refresh(self):
        self.due_us = self._link.call("transit", "due")

    def fire(self):
        name, level, self.due_us = self._link.call("transit", "fire")
        if name is not None:
            self._pins[name].edge(level)


class LinkHal:
    """The sim board's HAL (citynode_sim.sim.SimHal's methods) with the peripherals on the host."""

    hard_irq = False

    def __init__(self, board=None, seed=1, values=None, clock=None, link=None):
        self.board = board or {}
        self.seed = seed
        self.values = values or {}
        self.clock = clock or SimClock()
        self.link = Link(link, self.clock)
        self.link.call("hal", "new")  # fresh simulators on the host, as a new SimHal would have
        battery = self.board.get("battery")
        self._divider = battery.get("divider", 2.0) if isinstance(battery, dict) else 2.0
        import os

        self._reset_cause = os.getenv("CITYNODE_RESET_CAUSE") or "power_on"
        self._wdt = None
        self._i2c = None
        self._uarts = {}
        self._pins = {}
        self._doors = None
        self._rtc = None
        self.slept_ms = 0

    def i2c(self, bus=0):
        if self._i2c is None:
            self._i2c = RemoteI2C(self.link)
        return self._i2c

    def uart(self, name):
        if name not in self._uarts:
            self.link.call("uart:" + name, "open")
            self._uarts[name] = Remote(self.link, "uart:" + name)
        return self._uarts[name]

    def pin(self, name, mode=None, pull=None, value=None):
        if name not in self._pins:
            if name.startswith("door") and value is None:
                pin = SimPin(self.link.call("pin", "open", [name]), name=name)
                self._pins[name] = pin
                if self._doors is None:
                    self._doors = self.clock.events = _Doors(self.link, self._pins)
                self._doors.refresh()
                return pin
            level = 1 if (name == "tilt" and self.values.get("tilt")) else 0
            self._pins[name] = SimPin(level if value is None else value, name=name)
        return self._pins[name]

    def adc(self, name):
        return Remote(self.link, "adc:" + name)  # read_uv(): the Battery driver prefers it

    def time_pulse_us(self, pin, level, timeout_us=1000000):
        return self.link.call("pulse", "call", [level, timeout_us])

    def spi(self, bus=0):
        raise ValueError("board spi: the sim board has no SPI devices")

    def wdt(self, timeout_ms=30000):
        self._wdt = SimWDT(timeout_ms, self.clock)
        return self._wdt

    def rtc(self):
        if self._rtc is None:
            from citynode_sim.simrtc import SimRTC

            self._rtc = SimRTC()
        return self._rtc

    def battery_divider(self):
        return self._divider

    def wifi_source(self, channel=1):
        self.link.call("wifi", "open", [channel])
        return Remote(self.link, "wifi")

    def bluetooth(self):
        """The host's advertisers, delivered each scan period over the link (citynode_sim.simble)."""
        from citynode_sim.simble import LinkBluetooth

        return LinkBluetooth(self.link, self.link.call("ble", "open"))

    def reset(self):
        raise SystemExit(64)  # the virtual device turns exit status 64 into a soft reset

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
        self._reset_cause = _DEEP_SLEEP
