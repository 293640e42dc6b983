# Command-level SX1262 simulator (SX1261/2 datasheet rev. 2.1). It decodes each NSS transaction as
# one command, models BUSY, the chip modes, the data buffer, IRQs and TX/RX in virtual time, and
# raises SequenceError when the driver breaks a rule the datasheet states. Runs on MicroPython and CPython.
from radiosim_hw import FakeClock, SequenceError, SimPin, SimSPI, make_nss
from radiosim_sx1276 import AirPacket, toa_us  # noqa: F401  (AirPacket: re-exported for the tests)

NAMES = {
    0x84: "SetSleep", 0x80: "SetStandby", 0xC1: "SetFs", 0x83: "SetTx", 0x82: "SetRx", 0x96: "SetRegulatorMode",
    0x89: "Calibrate", 0x98: "CalibrateImage", 0x95: "SetPaConfig", 0x0D: "WriteRegister", 0x1D: "ReadRegister",
    0x0E: "WriteBuffer", 0x1E: "ReadBuffer", 0x08: "SetDioIrqParams", 0x12: "GetIrqStatus", 0x02: "ClearIrqStatus",
    0x9D: "SetDIO2AsRfSwitchCtrl", 0x97: "SetDIO3AsTCXOCtrl", 0x86: "SetRfFrequency", 0x8A: "SetPacketType",
    0x11: "GetPacketType", 0x8E: "SetTxParams", 0x8B: "SetModulationParams", 0x8C: "SetPacketParams",
    0x8F: "SetBufferBaseAddress", 0xC0: "GetStatus", 0x13: "GetRxBufferStatus", 0x14: "GetPacketStatus",
    0x17: "GetDeviceErrors", 0x07: "ClearDeviceErrors", 0x9F: "StopTimerOnPreamble", 0xA0: "SetLoRaSymbNumTimeout",
}
# Read commands: number of parameter bytes before the status byte
READS = {0x12: 0, 0x13: 0, 0x14: 0, 0x17: 0, 0xC0: 0, 0x11: 0, 0x1D: 2, 0x1E: 1}
# Commands that configure the radio: STDBY only (9.4, 13.4: "must be sent in STDBY_RC or STDBY_XOSC")
STANDBY_ONLY = (0x8A, 0x86, 0x95, 0x8E, 0x8B, 0x8C, 0x89, 0x98, 0x97, 0x96, 0x9D)
BW_BY_CODE = {0x00: 7800, 0x08: 10400, 0x01: 15600, 0x09: 20800, 0x02: 31250, 0x0A: 41700, 0x03: 62500,
              0x04: 125000, 0x05: 250000, 0x06: 500000}
MODE_CODE = {"STDBY_RC": 2, "STDBY_XOSC": 3, "FS": 4, "RX": 5, "TX": 6}
REG_DEFAULTS = {0x0740: 0x14, 0x0741: 0x24, 0x0736: 0x0D, 0x08D8: 0xC8, 0x0889: 0x00}


class SX1262Sim:
    def __init__(self, clock=None, tcxo=False, busy_polls=2, log=False, present=True, busy_stuck=False):
        self.clock = clock or FakeClock()
        self.clock.devices.append(self)
        self.tcxo = tcxo  # the board's reference is a TCXO powered from DIO3
        self.busy_polls = busy_polls
        self.present = present
        self.busy_stuck = busy_stuck
        self.spi = SimSPI(self)
        self.nss = make_nss(self.spi)
        self.reset_pin = SimPin("nreset", 1, on_change=self._reset_changed)
        self.busy = SimPin("busy", 1, on_read=self._busy_read)
        self.dio1 = SimPin("dio1", 0)
        self.log = log
        self.commands = []  # names of executed commands, in order
        self.sent = []
        self.air = []
        self._busy_left = 10 ** 9  # held in reset until NRESET pulses
        self._reset_low_at = None
        self.was_reset = False
        self._power_on()

    def _power_on(self):
        self.mode = "STDBY_RC"
        self.asleep = False
        self.regs = dict(REG_DEFAULTS)
        self.buffer = bytearray(256)
        self.irq = 0
        self.irq_mask = 0
        self.dio1_mask = 0
        self.packet_type = None
        self.rf = None
        self.pa = None
        self.tx_params = None
        self.mod = None
        self.pkt = None
        self.tx_base = 0
        self.rx_base = 0
        self.tcxo_cfg = None
        self.regulator = 0
        self.dio2_switch = False
        self.calibrated = False
        self.image = (0xE1, 0xE9)  # 9.2.1: POR image calibration is for 902-928 MHz
        # POR with a TCXO: the crystal oscillator cannot start, so XOSC_START_ERR is set (13.3.6)
        self.errors = 0x0020 if self.tcxo else 0
        self._event = None
        self._rx = None

    # ---- pins ----

    def _reset_changed(self, pin, old, new):
        now = self.clock.us
        if new == 0:
            self._reset_low_at = now
        elif old == 0:
            held = now - (self._reset_low_at or 0)
            if held < 100:
                raise SequenceError("NRESET held low %d us; datasheet 8.1 requires > 100 us" % held)
            self._power_on()
            self.was_reset = True
            self._busy_left = 5  # boot: BUSY high for a while

    def _busy_read(self, pin):
        if self.asleep or self.busy_stuck:
            return 1
        if self._busy_left > 0:
            self._busy_left -= 1
            return 1
        return 0

    def busy_high(self):
        return self.asleep or self._busy_left > 0

    # ---- SPI ----

    def select(self, active):
        if active:
            self._wake_edge = self.asleep
            if self.asleep:
                # 13.1.1: the NSS falling edge wakes the chip; it comes up in STDBY_RC with BUSY high.
                self.asleep = False
                self.mode = "STDBY_RC"
                self._busy_left = 3
            elif not self.was_reset:
                raise SequenceError("SPI access before the chip was reset (datasheet 8.1)")
            elif self._busy_left > 0:
                raise SequenceError(
                    "NSS asserted while BUSY is high; datasheet 8.3.1: wait for BUSY low before every command"
                )
            self._tx = bytearray()
        else:
            data = bytes(self._tx)
            self._tx = None
            if not data:
                return
            if self._wake_edge:
                raise SequenceError(
                    "command %s sent on the wake-up edge; datasheet 13.1.1: wake with NSS, wait for BUSY low, then send"
                    % NAMES.get(data[0], hex(data[0]))
                )
            self._execute(data)

    def xfer(self, b):
        t = self._tx
        t.append(b)
        if not self.present:
            return 0
        i = len(t) - 1
        if i == 0:
            return 0
        op = t[0]
        if op not in READS:
            return self.status()
        nparams = READS[op]
        if i <= nparams:
            return self.status()
        if i == nparams + 1:
            return self.status()
        k = i - nparams - 2
        return self._read_data(op, t, k)

    def status(self):
        return (MODE_CODE.get(self.mode, 2) << 4) | (1 << 1)

    def _read_data(self, op, t, k):
        if op == 0x12:
            return (self.irq >> 8) & 0xFF if k == 0 else self.irq & 0xFF
        if op == 0x13:
            return (self.rx_len, self.rx_base)[k] if k < 2 else 0
        if op == 0x14:
            return (self.pkt_rssi, self.pkt_snr & 0xFF, self.pkt_rssi)[k] if k < 3 else 0
        if op == 0x17:
            return (self.errors >> 8) & 0xFF if k == 0 else self.errors & 0xFF
        if op == 0x11:
            return self.packet_type or 0
        if op == 0x1D:
            return self.regs.get(((t[1] << 8) | t[2]) + k, 0)
        if op == 0x1E:
            return self.buffer[(t[1] + k) & 0xFF]
        return 0

    def _require(self, cond, msg):
        if not cond:
            raise SequenceError(msg)

    def _execute(self, data):
        op = data[0]
        p = data[1:]
        name = NAMES.get(op, "0x%02x" % op)
        self.commands.append(name)
        if self.log:
            print(name, bytes(p).hex())
        if op in STANDBY_ONLY:
            self._require(
                self.mode in ("STDBY_RC", "STDBY_XOSC"),
                "%s sent in %s; datasheet 13.4: radio configuration only in STDBY" % (name, self.mode),
            )
        self._busy_left = self.busy_polls
        if op == 0x80:
            self.mode = "STDBY_XOSC" if p[0] == 1 else "STDBY_RC"
            self._event = None
        elif op == 0x84:
            self._require(self.mode in ("STDBY_RC", "STDBY_XOSC"), "SetSleep from %s" % self.mode)
            self.asleep = True
            self.warm = bool(p[0] & 0x04)
            self.mode = "SLEEP"
            if not self.warm:
                self._cold_sleep()
        elif op == 0x97:
            self._require(self.tcxo, "SetDIO3AsTCXOCtrl on a board without a TCXO would drive DIO3 needlessly")
            self.tcxo_cfg = (p[0], (p[1] << 16) | (p[2] << 8) | p[3])
        elif op == 0x07:
            self.errors = 0
        elif op == 0x96:
            self.regulator = p[0]
        elif op == 0x89:
            self._require(self.mode == "STDBY_RC", "Calibrate outside STDBY_RC (datasheet 13.1.12)")
            if self.tcxo and self.tcxo_cfg is None:
                raise SequenceError(
                    "Calibrate before SetDIO3AsTCXOCtrl on a TCXO board; datasheet 13.3.6: enable the TCXO first, "
                    "or the calibration fails with XOSC_START_ERR"
                )
            self.calibrated = True
            self._busy_left = 10  # calibration keeps BUSY high longer (~3.5 ms)
        elif op == 0x98:
            self.image = (p[0], p[1])
        elif op == 0x9D:
            self.dio2_switch = bool(p[0])
        elif op == 0x8A:
            self.packet_type = p[0]
        elif op == 0x86:
            self._require(self.packet_type == 1, "SetRfFrequency before SetPacketType(LoRa); datasheet 13.4.2: packet type first")
            self.rf = (p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]
        elif op == 0x95:
            self.pa = tuple(p[:4])
        elif op == 0x8E:
            pw = p[0] - 256 if p[0] > 127 else p[0]
            self._require(-9 <= pw <= 22, "SetTxParams power %d outside -9..22 dBm (13.4.4)" % pw)
            self.tx_params = (pw, p[1])
        elif op == 0x8B:
            self._require(self.packet_type == 1, "SetModulationParams before SetPacketType(LoRa); datasheet 13.4.2")
            self._require(p[1] in BW_BY_CODE, "SetModulationParams: bad BW code 0x%02x" % p[1])
            self.mod = {"sf": p[0], "bw_hz": BW_BY_CODE[p[1]], "cr": 4 + p[2], "ldro": bool(p[3])}
        elif op == 0x8C:
            self._require(self.packet_type == 1, "SetPacketParams before SetPacketType(LoRa); datasheet 13.4.2")
            self.pkt = {"preamble": (p[0] << 8) | p[1], "implicit": bool(p[2]), "length": p[3], "crc": bool(p[4]),
                        "invert_iq": bool(p[5])}
        elif op == 0x8F:
            self.tx_base, self.rx_base = p[0], p[1]
        elif op == 0x0E:
            for i in range(1, len(p)):
                self.buffer[(p[0] + i - 1) & 0xFF] = p[i]
        elif op == 0x0D:
            addr = (p[0] << 8) | p[1]
            for i in range(2, len(p)):
                self.regs[addr + i - 2] = p[i]
        elif op == 0x08:
            self.irq_mask = (p[0] << 8) | p[1]
            self.dio1_mask = (p[2] << 8) | p[3]
        elif op == 0x02:
            self.irq &= ~((p[0] << 8) | p[1])
            if not self.irq & self.dio1_mask:
                self.dio1.drive(0)
        elif op == 0x83:
            self._start("TX", p)
        elif op == 0x82:
            self._start("RX", p)

    def _cold_sleep(self):
        tcxo = self.tcxo
        was = self.was_reset
        self._power_on()
        self.was_reset = was
        self.asleep = True
        self.mode = "SLEEP"
        self.tcxo = tcxo

    def freq_hz(self):
        return self.rf * 15625 // 16384 if self.rf is not None else None

    def _check_radio_ready(self, what):
        self._require(self.packet_type == 1, "%s without SetPacketType(LoRa)" % what)
        self._require(self.rf is not None, "%s without SetRfFrequency" % what)
        self._require(self.mod is not None, "%s without SetModulationParams" % what)
        self._require(self.pkt is not None, "%s without SetPacketParams" % what)
        if self.tcxo:
            self._require(self.tcxo_cfg is not None, "%s on a TCXO board without SetDIO3AsTCXOCtrl: XOSC cannot start" % what)
        self._require(
            self.irq == 0,
            "%s with IRQ status 0x%04x not cleared; clear IRQs (ClearIrqStatus) after reading them" % (what, self.irq),
        )
        f = self.freq_hz() // 1000000
        lo, hi = self.image[0] * 4, self.image[1] * 4
        self._require(
            lo <= f <= hi,
            "%s at %d MHz with the image calibrated for %d-%d MHz; datasheet 9.2.1: CalibrateImage for the band"
            % (what, f, lo, hi),
        )
        inv = self.pkt["invert_iq"]
        bit = bool(self.regs.get(0x0736, 0) & 0x04)
        self._require(bit != inv, "errata 15.4: register 0x0736 bit 2 must be %d with invert_iq=%s" % (0 if inv else 1, inv))

    def settings(self):
        s = dict(self.mod)
        s.update(self.pkt)
        s["freq_hz"] = self.freq_hz()
        s["rf"] = self.rf
        s["sync_word"] = (self.regs[0x0740] << 8) | self.regs[0x0741]
        s["pa_config"] = list(self.pa) if self.pa else None
        s["tx_power"] = self.tx_params[0] if self.tx_params else None
        s["ramp"] = self.tx_params[1] if self.tx_params else None
        s["image"] = list(self.image)
        s["dio2_switch"] = self.dio2_switch
        s["regulator"] = self.regulator
        return s

    def _start(self, what, p):
        self._check_radio_ready("SetTx" if what == "TX" else "SetRx")
        timeout = (p[0] << 16) | (p[1] << 8) | p[2]
        s = self.settings()
        if what == "TX":
            self._require(self.pa is not None and self.tx_params is not None, "SetTx without SetPaConfig/SetTxParams")
            bw500 = s["bw_hz"] == 500000
            self._require(
                bool(self.regs.get(0x0889, 0) & 0x04) != bw500,
                "errata 15.1: register 0x0889 bit 2 must be %d for BW %d Hz" % (0 if bw500 else 1, s["bw_hz"]),
            )
            self._require(self.regs.get(0x08D8, 0) & 0x1E == 0x1E, "errata 15.2: TxClampConfig (0x08D8) bits 4:1 must be 1111")
            self._require(s["length"] > 0, "SetTx with payload length 0")
            s["payload"] = bytes(self.buffer[(self.tx_base + i) & 0xFF] for i in range(s["length"]))
            s["time_us"] = self.clock.us
            self.sent.append(s)
            self.mode = "TX"
            t = toa_us(s["sf"], s["bw_hz"], s["cr"], s["preamble"], s["length"], s["crc"], s["ldro"])
            if timeout and timeout * 15.625 < t:
                self._event = (self.clock.us + int(timeout * 15.625), "timeout")
            else:
                self._event = (self.clock.us + t, "txdone")
            return
        self.mode = "RX"
        pkt = None
        while self.air:
            cand = self.air.pop(0)
            if cand.iq_inverted == s["invert_iq"] and (cand.sf is None or cand.sf == s["sf"]) and (
                cand.freq_hz is None or abs(cand.freq_hz - s["freq_hz"]) < 1000
            ):
                pkt = cand
                break
        window = None if timeout in (0, 0xFFFFFF) else int(timeout * 15.625)
        if pkt is not None and (window is None or pkt.start_us < window):
            self._rx = pkt
            self._event = (self.clock.us + pkt.start_us + toa_us(s["sf"], s["bw_hz"], s["cr"], s["preamble"],
                                                                  len(pkt.payload), True, s["ldro"]), "rxdone")
        elif window is not None:
            self._event = (self.clock.us + window, "timeout")
        else:
            self._event = None

    def _raise_irq(self, bits):
        self.irq |= bits & self.irq_mask
        if self.irq & self.dio1_mask:
            self.dio1.drive(1)

    def tick(self, now):
        ev = self._event
        if ev is None or now < ev[0]:
            return
        self._event = None
        kind = ev[1]
        self.mode = "STDBY_RC"  # 13.1.4/13.1.5: fall back to STDBY_RC after TX, single RX or timeout
        if kind == "txdone":
            self._raise_irq(0x0001)
        elif kind == "timeout":
            self._raise_irq(0x0200)
        elif kind == "rxdone":
            pkt = self._rx
            for i, b in enumerate(pkt.payload):
                self.buffer[(self.rx_base + i) & 0xFF] = b
            self.rx_len = len(pkt.payload)
            self.pkt_rssi = pkt.pkt_rssi
            self.pkt_snr = pkt.pkt_snr
            self._raise_irq(0x0002 | 0x0004 | 0x0008 | 0x0010 | (0 if pkt.crc_ok else 0x0040))


def make_sx1262(dio1=True, tcxo_mv=None, **kwargs):
    """A simulated chip plus an SX1262 driver wired to it: returns (radio, chip)."""
    from citynode.radio.sx126x import SX1262

    chip = SX1262Sim(**kwargs)
    radio = SX1262(chip.spi, chip.nss, chip.reset_pin, chip.busy, dio1=chip.dio1 if dio1 else None,
                   clock=chip.clock, tcxo_mv=tcxo_mv)
    return radio, chip
