# Register-level SX1276 simulator (SX1276/77/78/79 datasheet rev. 7). It keeps the register map and
# FIFO, runs TX/RX in virtual time, and raises SequenceError when the driver breaks a rule the
# datasheet states. Runs on MicroPython and CPython.
from radiosim_hw import FakeClock, SequenceError, SimPin, SimSPI, make_nss

MODE_NAMES = ("SLEEP", "STDBY", "FSTX", "TX", "FSRX", "RXCONTINUOUS", "RXSINGLE", "CAD")
BW_HZ = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)

# Datasheet Table 41 reset values that matter here (LoRa page)
RESET_VALUES = {
    0x01: 0x09,  # FSK standby, LowFrequencyModeOn
    0x06: 0x6C, 0x07: 0x80, 0x08: 0x00,  # 434 MHz
    0x09: 0x4F, 0x0B: 0x2B, 0x0C: 0x20,
    0x0E: 0x80, 0x0F: 0x00, 0x1D: 0x72, 0x1E: 0x70, 0x1F: 0x64,
    0x20: 0x00, 0x21: 0x08, 0x22: 0x01, 0x23: 0xFF, 0x26: 0x00,
    0x31: 0xC3, 0x33: 0x27, 0x37: 0x0A, 0x39: 0x12, 0x3B: 0x1D, 0x42: 0x12, 0x4D: 0x84,
}
# Registers that are configuration: only to be written in Sleep or Standby (4.1.2 / 4.1.3)
CONFIG_REGS = (0x06, 0x07, 0x08, 0x09, 0x0B, 0x1D, 0x1E, 0x1F, 0x20, 0x21, 0x26, 0x39, 0x4D)
LORA_ONLY_FIRST = 0x0D  # 0x0D..0x3F are LoRa registers only while LongRangeMode = 1


def toa_us(sf, bw_hz, cr_denominator, preamble, payload_len, crc, ldro):
    """Time on air, datasheet 4.1.1.7, written independently of the driver (floats)."""
    tsym = (2 ** sf) / bw_hz
    de = 1 if ldro else 0
    num = 8 * payload_len - 4 * sf + 28 + 16 * (1 if crc else 0)
    n = 8 + max(-(-num // (4 * (sf - 2 * de))) * cr_denominator, 0)
    return int(((preamble + 4.25) + n) * tsym * 1e6)


class AirPacket:
    """A packet on the air, arriving ``start_us`` after the receiver opens (RSSI/SNR as register values)."""

    def __init__(self, payload, start_us=0, pkt_rssi=100, pkt_snr=28, crc_ok=True, iq_inverted=False,
                 freq_hz=None, sf=None, bw_hz=None):
        self.payload = bytes(payload)
        self.start_us = start_us
        self.pkt_rssi = pkt_rssi
        self.pkt_snr = pkt_snr & 0xFF
        self.crc_ok = crc_ok
        self.iq_inverted = iq_inverted
        self.freq_hz = freq_hz
        self.sf = sf
        self.bw_hz = bw_hz


class SX1276Sim:
    def __init__(self, clock=None, version=0x12, require_reset=True, log=False):
        self.clock = clock or FakeClock()
        self.clock.devices.append(self)
        self.regs = bytearray(0x80)
        for k in RESET_VALUES:
            self.regs[k] = RESET_VALUES[k]
        self.version = version
        self.regs[0x42] = version
        self.frf_written = False
        self.fifo = bytearray(256)
        self.spi = SimSPI(self)
        self.nss = make_nss(self.spi)
        self.reset_pin = SimPin("nreset", 1, on_change=self._reset_changed)
        self.dio0 = SimPin("dio0", 0)
        self.ready_at_us = None if require_reset else 0
        self._reset_low_at = None
        self._txn = None
        self.sent = []  # one dict per transmitted packet, with the radio settings decoded from registers
        self.air = []  # AirPacket queue for the receiver
        self.events = []  # (time_us, name) of mode changes, for sequence assertions in tests
        self._event = None  # (due_us, kind)
        self._rx_started = 0
        self.spi_accesses = 0
        self.log = log

    # ---- pins ----

    def _reset_changed(self, pin, old, new):
        now = self.clock.us
        if new == 0:
            self._reset_low_at = now
        elif old == 0:
            held = now - (self._reset_low_at or 0)
            if held < 100:
                raise SequenceError("NRESET held low %d us; datasheet 7.2.2 requires > 100 us" % held)
            self._init_regs()
            self.ready_at_us = now + 5000

    def _init_regs(self):
        for i in range(len(self.regs)):
            self.regs[i] = 0
        for k in RESET_VALUES:
            self.regs[k] = RESET_VALUES[k]
        self.regs[0x42] = self.version
        self.frf_written = False
        self._event = None
        self.dio0.drive(0)

    # ---- decoded state ----

    @property
    def mode(self):
        return self.regs[0x01] & 0x07

    @property
    def lora(self):
        return bool(self.regs[0x01] & 0x80)

    def mode_name(self):
        return MODE_NAMES[self.mode]

    def freq_hz(self):
        frf = (self.regs[0x06] << 16) | (self.regs[0x07] << 8) | self.regs[0x08]
        return frf * 32000000 // 524288

    def settings(self):
        r = self.regs
        pa = r[0x09]
        high = r[0x4D] == 0x87
        return {
            "freq_hz": self.freq_hz(),
            "frf": (r[0x06] << 16) | (r[0x07] << 8) | r[0x08],
            "sf": r[0x1E] >> 4,
            "bw_hz": BW_HZ[r[0x1D] >> 4],
            "cr": 4 + ((r[0x1D] >> 1) & 0x07),
            "implicit": bool(r[0x1D] & 1),
            "crc": bool(r[0x1E] & 0x04),
            "ldro": bool(r[0x26] & 0x08),
            "agc_auto": bool(r[0x26] & 0x04),
            "preamble": (r[0x20] << 8) | r[0x21],
            "sync_word": r[0x39],
            "pa_boost": bool(pa & 0x80),
            "power_dbm": (5 if high else 2) + (pa & 0x0F),
            "pa_dac": r[0x4D],
            "ocp": r[0x0B],
            "invert_iq_tx": not (r[0x33] & 0x01),
            "invert_iq_rx": bool(r[0x33] & 0x40),
            "invert_iq2": r[0x3B],
            "lf_mode": bool(r[0x01] & 0x08),
            "detect_optimize": r[0x31],
            "high_bw_opt1": r[0x36],
            "high_bw_opt2": r[0x3A],
        }

    # ---- SPI ----

    def select(self, active):
        if active:
            if self.ready_at_us is None:
                raise SequenceError("SPI access before the chip was reset (datasheet 7.2.2: reset at start-up)")
            if self.clock.us < self.ready_at_us:
                raise SequenceError(
                    "SPI access %d us after reset; datasheet 7.2.2 requires waiting 5 ms"
                    % (self.clock.us - self.ready_at_us + 5000)
                )
            self._txn = [None, False, 0]  # address, write, count
            self.spi_accesses += 1
        else:
            self._txn = None

    def xfer(self, b):
        t = self._txn
        if t[0] is None:
            t[0] = b & 0x7F
            t[1] = bool(b & 0x80)
            return 0
        addr = t[0]
        if addr == 0x00:
            return self._fifo_access(b, t[1])
        if t[1]:
            self._write(addr, b)
        else:
            b = self._read(addr)
        t[0] = (addr + 1) & 0x7F  # burst mode: address auto-increments (4.3)
        return b if not t[1] else 0

    def _fifo_access(self, b, write):
        if self.mode == 0:
            raise SequenceError("FIFO accessed in Sleep mode; datasheet 4.1.2.3: the FIFO is only usable in Standby/TX/RX")
        if not self.lora:
            raise SequenceError("FIFO accessed in FSK mode; the LoRa FIFO needs LongRangeMode = 1")
        ptr = self.regs[0x0D]
        self.regs[0x0D] = (ptr + 1) & 0xFF
        if write:
            self.fifo[ptr] = b
            return 0
        return self.fifo[ptr]

    def _read(self, addr):
        if LORA_ONLY_FIRST <= addr <= 0x3F and not self.lora:
            raise SequenceError("LoRa register 0x%02x read in FSK mode: enter LoRa mode (in Sleep) first" % addr)
        return self.regs[addr]

    def _write(self, addr, v):
        if self.log:
            print("W %02x=%02x %s" % (addr, v, self.mode_name()))
        if addr == 0x01:
            return self._write_opmode(v)
        if addr == 0x42:
            return  # RegVersion is read-only
        if LORA_ONLY_FIRST <= addr <= 0x3F and not self.lora:
            raise SequenceError("LoRa register 0x%02x written in FSK mode: enter LoRa mode (in Sleep) first" % addr)
        if addr in CONFIG_REGS and self.mode not in (0, 1):
            raise SequenceError(
                "register 0x%02x written in %s; datasheet 4.1.2: configure in Sleep or Standby only"
                % (addr, self.mode_name())
            )
        if addr == 0x12:
            self.regs[0x12] &= ~v & 0xFF  # write 1 to clear
            if not self.regs[0x12] & 0x48:
                self.dio0.drive(0)
            return
        if 0x06 <= addr <= 0x08:
            self.frf_written = True
        self.regs[addr] = v

    def _write_opmode(self, v):
        old = self.regs[0x01]
        if (old ^ v) & 0x80 and (old & 0x07) != 0:
            raise SequenceError(
                "RegOpMode.LongRangeMode changed in %s mode; datasheet 6.4: it can only be changed in Sleep mode"
                % MODE_NAMES[old & 7]
            )
        new_mode = v & 0x07
        self.regs[0x01] = v
        if (old & 7) != new_mode:
            self.events.append((self.clock.us, MODE_NAMES[new_mode]))
        if new_mode == 0:
            self._event = None
            for i in range(256):
                self.fifo[i] = 0  # 4.1.2.3: FIFO content is lost in Sleep
        elif new_mode == 1:
            self._event = None
        elif new_mode == 3:
            self._start_tx()
        elif new_mode in (5, 6):
            self._start_rx(new_mode)
        elif new_mode != 0:
            raise SequenceError("unexpected mode %s" % MODE_NAMES[new_mode])

    def _require_clear_irqs(self, what):
        if self.regs[0x12]:
            raise SequenceError(
                "%s started with RegIrqFlags = 0x%02x still set; clear them (write 1s) after reading" % (what, self.regs[0x12])
            )

    def _start_tx(self):
        self._require_clear_irqs("TX")
        n = self.regs[0x22]
        if n == 0:
            raise SequenceError("TX with RegPayloadLength = 0")
        s = self.settings()
        if not self.frf_written:
            raise SequenceError("TX on the reset frequency: RegFrf was never written")
        base = self.regs[0x0E]
        payload = bytes(self.fifo[(base + i) & 0xFF] for i in range(n))
        s["payload"] = payload
        s["time_us"] = self.clock.us
        self.sent.append(s)
        self._event = (self.clock.us + toa_us(s["sf"], s["bw_hz"], s["cr"], s["preamble"], n, s["crc"], s["ldro"]), "txdone")

    def _start_rx(self, mode):
        self._require_clear_irqs("RX")
        self._rx_started = self.clock.us
        s = self.settings()
        pkt = None
        while self.air:
            cand = self.air.pop(0)
            if self._hears(cand, s):
                pkt = cand
                break
        tsym = (2 ** s["sf"]) * 1000000 // s["bw_hz"]
        symb = ((self.regs[0x1E] & 0x03) << 8) | self.regs[0x1F]
        window = symb * tsym if mode == 6 else None
        if pkt is not None and (window is None or pkt.start_us < window):
            n = len(pkt.payload)
            self._pending = pkt
            self._event = (self.clock.us + pkt.start_us + toa_us(s["sf"], s["bw_hz"], s["cr"], s["preamble"], n, True, s["ldro"]), "rxdone")
        elif window is not None:
            self._event = (self.clock.us + window, "rxtimeout")
        else:
            self._event = None

    def _hears(self, pkt, s):
        if pkt.iq_inverted != s["invert_iq_rx"]:
            return False
        if pkt.freq_hz is not None and abs(pkt.freq_hz - s["freq_hz"]) > 1000:
            return False
        if pkt.sf is not None and pkt.sf != s["sf"]:
            return False
        if pkt.bw_hz is not None and pkt.bw_hz != s["bw_hz"]:
            return False
        return True

    def tick(self, now):
        ev = self._event
        if ev is None or now < ev[0]:
            return
        self._event = None
        kind = ev[1]
        if kind == "txdone":
            self.regs[0x12] |= 0x08
            self.regs[0x01] = (self.regs[0x01] & 0xF8) | 1  # back to standby (4.1.6)
            self.events.append((now, "STDBY"))
            if self.regs[0x40] >> 6 == 1:
                self.dio0.drive(1)
        elif kind == "rxtimeout":
            self.regs[0x12] |= 0x80
            self.regs[0x01] = (self.regs[0x01] & 0xF8) | 1
            self.events.append((now, "STDBY"))
        elif kind == "rxdone":
            pkt = self._pending
            base = self.regs[0x0F]
            for i, b in enumerate(pkt.payload):
                self.fifo[(base + i) & 0xFF] = b
            self.regs[0x10] = base
            self.regs[0x13] = len(pkt.payload)
            self.regs[0x19] = pkt.pkt_snr
            self.regs[0x1A] = pkt.pkt_rssi
            self.regs[0x12] |= 0x40 | 0x10 | (0 if pkt.crc_ok else 0x20)
            if self.mode == 6:
                self.regs[0x01] = (self.regs[0x01] & 0xF8) | 1
                self.events.append((now, "STDBY"))
            if self.regs[0x40] >> 6 == 0:
                self.dio0.drive(1)


def make_sx1276(dio0=True, **kwargs):
    """A simulated chip plus an SX1276 driver wired to it: returns (radio, chip)."""
    from citynode.radio.sx127x import SX1276

    chip = SX1276Sim(**kwargs)
    radio = SX1276(chip.spi, chip.nss, chip.reset_pin, dio0=chip.dio0 if dio0 else None, clock=chip.clock)
    return radio, chip
