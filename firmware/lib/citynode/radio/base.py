# Chip-agnostic half of the LoRa radio drivers: state, configuration checks, time on air, IRQ/DIO
# handling and the blocking send/recv loops the LoRaWAN MAC uses. A chip driver (sx127x, sx126x)
# subclasses Radio and implements the underscore hooks at the bottom of this file.
#
# Hardware comes in through the constructor as objects with the MicroPython `machine` API
# (spi.write/readinto/write_readinto, pin.value(), pin.irq()); this module never imports `machine`,
# so the same driver runs against a simulated bus on the unix port and under CPython.
import time

from citynode.compat import const

# Normalised interrupt flags; each chip maps its own IRQ register onto these.
IRQ_TX_DONE = const(0x01)
IRQ_RX_DONE = const(0x02)
IRQ_TIMEOUT = const(0x04)
IRQ_CRC_ERR = const(0x08)
IRQ_HEADER_ERR = const(0x10)
IRQ_HEADER_VALID = const(0x20)  # a packet is being received: keep the window open until RxDone

# Driver states (plain strings: interned, cheap, readable in logs).
STATE_RESET = "reset"
STATE_SLEEP = "sleep"
STATE_STANDBY = "standby"
STATE_TX = "tx"
STATE_RX = "rx"

# LoRa bandwidths both chip families support, in Hz (SX1276 datasheet Table 13 / SX1261/2 13.4.5.2).
BANDWIDTHS_HZ = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)

_POLL_MS = const(10)  # with a DIO line: safety-net poll of the IRQ register every 10 ms
_TX_MARGIN_MS = const(100)  # TX timeout = time on air * 5/4 + this
_MAX_PAYLOAD = const(255)


class RadioError(Exception):
    """The radio did not do what it was told (no chip, timeout, BUSY stuck, wrong state)."""


class RadioConfigError(RadioError):
    """A configuration value is out of range. ``field`` names the offending argument."""

    def __init__(self, field, reason):
        super().__init__("%s: %s" % (field, reason))
        self.field = field


class _CPythonClock:
    # CPython's `time` lacks the ticks_* functions; this gives Radio the same API.
    def ticks_ms(self):
        return time.monotonic_ns() // 1000000

    def ticks_us(self):
        return time.monotonic_ns() // 1000

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        time.sleep(ms / 1000)

    def sleep_us(self, us):
        time.sleep(us / 1000000)


def default_clock():
    """The `time` module on MicroPython/CircuitPython-with-ticks, a shim on CPython."""
    if hasattr(time, "ticks_ms") and hasattr(time, "sleep_us"):
        return time
    return _CPythonClock()


def _check_int(field, value, lo, hi, hint=""):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or value > hi:
        raise RadioConfigError(field, "must be an integer %d..%d%s (got %r)" % (lo, hi, hint, value))
    return value


class Radio:
    """A half-duplex LoRa transceiver as the LoRaWAN MAC sees it.

    Lifecycle: construct (resets and probes the chip, leaves it in standby) -> ``configure()`` ->
    ``send()`` / ``recv()`` any number of times -> ``sleep()`` between cycles. ``send``/``recv``
    wake the chip from sleep themselves. Errors: ``RadioConfigError`` (names the field) for bad
    arguments, ``RadioError`` for hardware that does not answer as the datasheet says.
    """

    CHIP = "?"
    FREQ_MIN_HZ = 0
    FREQ_MAX_HZ = 0
    POWER_MIN_DBM = 0
    POWER_MAX_DBM = 0
    SF_MIN = 7  # LoRaWAN uses SF7..SF12; SF5/SF6 need implicit header mode
    SF_MAX = 12

    def __init__(self, spi, cs, reset=None, irq=None, busy=None, clock=None, public_network=True):
        self._spi = spi
        self._cs = cs
        self._reset_pin = reset
        self._irq_pin = irq
        self._busy = busy
        self._clock = clock if clock is not None else default_clock()
        self.public_network = public_network
        self.state = STATE_RESET
        self.configured = False
        self.freq_hz = 0
        self.sf = 0
        self.bw_hz = 0
        self.cr = 5
        self.tx_power_dbm = 0
        self.preamble = 8
        self.invert_iq = False
        self.crc = True
        # Reception statistics, for device_status uplinks and field diagnostics.
        self.rx_ok = 0
        self.rx_crc_errors = 0
        self.rx_timeouts = 0
        self._irq_pending = False
        if cs is not None:  # None only for a radio without SPI
            cs.value(1)
        if irq is not None:
            self._isr = self._on_irq  # bind once: allocating in an ISR is not allowed
            irq.irq(handler=self._isr, trigger=getattr(irq, "IRQ_RISING", 1))
        self._init_chip()

    # ---- public interface used by the LoRaWAN MAC ----

    def configure(self, freq_hz, sf, bw_hz, cr=5, tx_power_dbm=14, preamble=8, invert_iq=False, crc=True):
        """Set the LoRa channel and modem parameters. Everything is checked before the chip is touched.

        freq_hz: carrier in Hz; sf: spreading factor 7..12; bw_hz: one of BANDWIDTHS_HZ;
        cr: coding rate denominator 5..8 (4/5..4/8); tx_power_dbm: chip-dependent range;
        preamble: symbols (LoRaWAN: 8); invert_iq: True for receiving LoRaWAN downlinks;
        crc: payload CRC on transmit (LoRaWAN uplinks: on, downlinks: off).
        """
        _check_int("freq_hz", freq_hz, self.FREQ_MIN_HZ, self.FREQ_MAX_HZ, " Hz for the " + self.CHIP)
        _check_int("sf", sf, self.SF_MIN, self.SF_MAX)
        if bw_hz not in BANDWIDTHS_HZ:
            raise RadioConfigError("bw_hz", "must be one of %s (got %r)" % (BANDWIDTHS_HZ, bw_hz))
        _check_int("cr", cr, 5, 8, " (coding rate 4/5..4/8)")
        _check_int("tx_power_dbm", tx_power_dbm, self.POWER_MIN_DBM, self.POWER_MAX_DBM, " dBm for the " + self.CHIP)
        self._check_power(tx_power_dbm)
        _check_int("preamble", preamble, 6, 65535, " symbols")
        if self.state == STATE_SLEEP or self.state == STATE_RESET:
            self.standby()
        self.freq_hz = freq_hz
        self.sf = sf
        self.bw_hz = bw_hz
        self.cr = cr
        self.tx_power_dbm = tx_power_dbm
        self.preamble = preamble
        self.invert_iq = bool(invert_iq)
        self.crc = bool(crc)
        self._apply_config()
        self.configured = True

    def send(self, data):
        """Transmit one packet and block until TxDone. Raises RadioError if TxDone does not come."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise RadioConfigError("data", "must be bytes (got %s)" % type(data).__name__)
        n = len(data)
        if n < 1 or n > _MAX_PAYLOAD:
            raise RadioConfigError("data", "length must be 1..255 bytes (got %d)" % n)
        self._check_configured()
        self._wake()
        toa_ms = self.time_on_air_us(n) // 1000
        self._irq_pending = False
        self._start_tx(data, toa_ms * 2 + _TX_MARGIN_MS)
        self.state = STATE_TX
        flags = self._wait_irq(IRQ_TX_DONE | IRQ_TIMEOUT, toa_ms + toa_ms // 4 + _TX_MARGIN_MS)
        self._irq_clear()
        self.state = STATE_STANDBY  # both chip families fall back to standby after TX
        if not flags & IRQ_TX_DONE:
            self._standby()
            raise RadioError(
                "%s TX timeout: no TxDone within %d ms (time on air %d ms, irq 0x%02x)"
                % (self.CHIP, toa_ms + toa_ms // 4 + _TX_MARGIN_MS, toa_ms, flags)
            )

    def recv(self, timeout_ms, continuous=False):
        """Open one receive window of ``timeout_ms`` ms.

        Returns (payload bytes, rssi_dbm int, snr_db float) or None when nothing arrived in the
        window or the packet failed its CRC/header check. A packet whose preamble starts inside the
        window is received to its end. Raises RadioError if the chip never signals the end of the window.
        ``continuous``: the chip's continuous receive mode (a Class C window, SX1276 RXCONTINUOUS,
        SX126x SetRx(0xFFFFFF)): no symbol timeout, the window is timed in software and the first
        packet received ends it.
        """
        _check_int("timeout_ms", timeout_ms, 1, 86400000 if continuous else self.max_rx_timeout_ms(), " ms")
        self._check_configured()
        self._wake()
        self._irq_pending = False
        hw_timeout = self._start_rx(timeout_ms, continuous)
        self.state = STATE_RX
        done = IRQ_RX_DONE | IRQ_TIMEOUT | IRQ_CRC_ERR | IRQ_HEADER_ERR
        max_packet_ms = self.time_on_air_us(_MAX_PAYLOAD) // 1000 + _TX_MARGIN_MS
        if hw_timeout:
            # The chip ends the window itself (timeout, or RxDone after a late preamble).
            flags = self._wait_irq(done, timeout_ms + max_packet_ms)
            if not flags:
                self._standby()
                raise RadioError(
                    "%s RX: neither RxDone nor RxTimeout within %d ms" % (self.CHIP, timeout_ms + max_packet_ms)
                )
        else:
            flags = self._wait_irq(done, timeout_ms)
            if not flags and self._irq_status() & IRQ_HEADER_VALID:
                flags = self._wait_irq(done, max_packet_ms)  # a packet is arriving: let it finish
        self._irq_clear()
        if not flags & IRQ_RX_DONE or flags & (IRQ_CRC_ERR | IRQ_HEADER_ERR):
            self._standby()
            if flags & (IRQ_CRC_ERR | IRQ_HEADER_ERR):
                self.rx_crc_errors += 1
            else:
                self.rx_timeouts += 1
            return None
        packet = self._read_packet()
        self._standby()
        self.rx_ok += 1
        return packet

    def sleep(self):
        """Lowest-power mode that keeps the configuration (the chips' warm sleep)."""
        self._sleep()
        self.state = STATE_SLEEP

    def standby(self):
        """Oscillator running, ready to be configured or to TX/RX."""
        self._standby()
        self.state = STATE_STANDBY

    # ---- helpers the MAC may use ----

    def symbol_time_us(self):
        self._check_configured()
        return (1 << self.sf) * 1000000 // self.bw_hz

    def low_data_rate_optimize(self):
        # SX1276 4.1.1.6 / SX1261/2 6.1.1.4: mandated when the symbol time exceeds 16 ms
        # (SF11 and SF12 at 125 kHz, SF12 at 250 kHz).
        return (1 << self.sf) * 1000 > 16 * self.bw_hz

    def time_on_air_us(self, payload_len, implicit_header=False):
        """Packet time on air in µs (SX1276 datasheet 4.1.1.7, Semtech AN1200.13)."""
        self._check_configured()
        sf = self.sf
        de = 1 if self.low_data_rate_optimize() else 0
        num = 8 * payload_len - 4 * sf + 28 + (16 if self.crc else 0) - (20 if implicit_header else 0)
        den = 4 * (sf - 2 * de)
        n_payload = 8
        if num > 0:
            n_payload += ((num + den - 1) // den) * self.cr
        # preamble + 4.25 symbols (sync word, SFD) + payload symbols; quarter symbols in integers
        quarter_symbols = (self.preamble * 4 + 17) + n_payload * 4
        return quarter_symbols * (1 << sf) * 1000000 // (4 * self.bw_hz)

    def max_rx_timeout_ms(self):
        return 262000  # SX126x RX timer: 24 bits of 15.625 µs; SX127x uses a software window instead

    # ---- internals shared by the chips ----

    def _on_irq(self, pin):
        # ISR: set a flag only; the wait loop reads the chip's IRQ register over SPI.
        self._irq_pending = True

    def _check_configured(self):
        if not self.configured:
            raise RadioError("%s: call configure() before send()/recv()" % self.CHIP)

    def _check_power(self, dbm):
        pass  # chip drivers reject values inside the range the PA cannot produce

    def _wake(self):
        if self.state == STATE_SLEEP or self.state == STATE_RESET:
            self.standby()

    def _wait_irq(self, mask, timeout_ms):
        """Wait for any of ``mask``; return the normalised flags seen (0 on timeout).

        With a DIO line the chip is read when the line rises, plus a safety-net poll every
        _POLL_MS; without one the IRQ register is polled every millisecond.
        """
        clock = self._clock
        start = clock.ticks_ms()
        last_poll = start
        poll_ms = _POLL_MS if self._irq_pin is not None else 1
        first = True
        while True:
            now = clock.ticks_ms()
            if first or self._irq_pending or clock.ticks_diff(now, last_poll) >= poll_ms:
                first = False
                self._irq_pending = False
                last_poll = now
                flags = self._irq_status()
                if flags & mask:
                    return flags
            if clock.ticks_diff(now, start) >= timeout_ms:
                return 0
            clock.sleep_ms(1)

    # ---- chip hooks ----

    def _init_chip(self):
        raise NotImplementedError

    def _apply_config(self):
        raise NotImplementedError

    def _standby(self):
        raise NotImplementedError

    def _sleep(self):
        raise NotImplementedError

    def _start_tx(self, data, timeout_ms):
        raise NotImplementedError

    def _start_rx(self, timeout_ms, continuous=False):
        """Start one RX window; return True if the chip itself ends the window on timeout."""
        raise NotImplementedError

    def _irq_status(self):
        raise NotImplementedError

    def _irq_clear(self):
        raise NotImplementedError

    def _read_packet(self):
        raise NotImplementedError
