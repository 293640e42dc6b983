# Semtech SX1262 LoRa driver, command interface. Sources: SX1261/2 datasheet rev. 2.1 (sections
# cited inline), in particular 8.3 (BUSY), 9 (operating modes), 13 (commands) and 15 (known limitations).
# Every SPI transaction is one command; the host waits for BUSY low before each one (8.3.1).
from citynode.compat import const
from citynode.radio.base import (
    IRQ_CRC_ERR,
    IRQ_HEADER_ERR,
    IRQ_HEADER_VALID,
    IRQ_RX_DONE,
    IRQ_TIMEOUT,
    IRQ_TX_DONE,
    STATE_SLEEP,
    STATE_STANDBY,
    Radio,
    RadioConfigError,
    RadioError,
)

# Opcodes (13, Table 11-1 .. 11-5)
_SET_SLEEP = const(0x84)
_SET_STANDBY = const(0x80)
_SET_TX = const(0x83)
_SET_RX = const(0x82)
_SET_REGULATOR_MODE = const(0x96)
_CALIBRATE = const(0x89)
_CALIBRATE_IMAGE = const(0x98)
_SET_PA_CONFIG = const(0x95)
_WRITE_REGISTER = const(0x0D)
_READ_REGISTER = const(0x1D)
_WRITE_BUFFER = const(0x0E)
_READ_BUFFER = const(0x1E)
_SET_DIO_IRQ_PARAMS = const(0x08)
_GET_IRQ_STATUS = const(0x12)
_CLEAR_IRQ_STATUS = const(0x02)
_SET_DIO2_AS_RF_SWITCH = const(0x9D)
_SET_DIO3_AS_TCXO = const(0x97)
_SET_RF_FREQUENCY = const(0x86)
_SET_PACKET_TYPE = const(0x8A)
_SET_TX_PARAMS = const(0x8E)
_SET_MODULATION_PARAMS = const(0x8B)
_SET_PACKET_PARAMS = const(0x8C)
_SET_BUFFER_BASE = const(0x8F)
_GET_STATUS = const(0xC0)
_GET_RX_BUFFER_STATUS = const(0x13)
_GET_PACKET_STATUS = const(0x14)
_GET_DEVICE_ERRORS = const(0x17)
_CLEAR_DEVICE_ERRORS = const(0x07)

# IRQ bits (13.3.1, Table 13-29)
_IRQ_TX_DONE = const(0x0001)
_IRQ_RX_DONE = const(0x0002)
_IRQ_HEADER_VALID = const(0x0010)
_IRQ_HEADER_ERR = const(0x0020)
_IRQ_CRC_ERR = const(0x0040)
_IRQ_TIMEOUT = const(0x0200)
_IRQ_ALL = const(0x03FF)

# Registers (Table 12-1) and the errata registers of section 15
_REG_SYNC_WORD_MSB = const(0x0740)  # LoRa sync word: 0x3444 public, 0x1424 private
_REG_IQ_POLARITY = const(0x0736)  # 15.4: bit 2 = 0 with inverted IQ, 1 with standard IQ
_REG_TX_MODULATION = const(0x0889)  # 15.1: bit 2 = 0 at BW 500 kHz, 1 otherwise
_REG_TX_CLAMP_CONFIG = const(0x08D8)  # 15.2: bits 4:1 = 1111 for antenna mismatch resistance

_STDBY_RC = const(0x00)
_PACKET_TYPE_LORA = const(0x01)
_SLEEP_WARM_START = const(0x04)  # 13.1.1: keep the configuration through sleep
_CALIBRATE_ALL = const(0x7F)
_RAMP_200US = const(0x04)  # SetTxParams RampTime (Table 13-41)
_BUSY_TIMEOUT_US = const(50000)  # calibration takes ~3.5 ms (13.1.12); 50 ms means the chip is gone
_XOSC_START_ERR = const(0x0020)

# SetModulationParams bandwidth codes (13.4.5.2, Table 13-47)
_BW_CODES = {7800: 0x00, 10400: 0x08, 15600: 0x01, 20800: 0x09, 31250: 0x02, 41700: 0x0A, 62500: 0x03,
             125000: 0x04, 250000: 0x05, 500000: 0x06}

# SetDIO3AsTCXOCtrl voltage codes (13.3.6, Table 13-35)
_TCXO_VOLTAGES_MV = (1600, 1700, 1800, 2200, 2400, 2700, 3000, 3300)

# CalibrateImage bands (9.2.1, Table 9-2): (from Hz, to Hz, freq1, freq2)
_IMAGE_BANDS = (
    (430000000, 440000000, 0x6B, 0x6F),
    (470000000, 510000000, 0x75, 0x81),
    (779000000, 787000000, 0xC1, 0xC5),
    (863000000, 870000000, 0xD7, 0xDB),
    (902000000, 928000000, 0xE1, 0xE9),
)

# SetPaConfig optimal settings for the SX1262 (13.1.14, Table 13-21): (max dBm, paDutyCycle, hpMax)
# The table's figures hold with SetTxParams power = +22 dBm; lower powers are reached by reducing
# that power by the same number of dB from the nearest table row above.
_PA_TABLE = ((14, 0x02, 0x02), (17, 0x02, 0x03), (20, 0x03, 0x05), (22, 0x04, 0x07))


def image_calibration(freq_hz):
    """(freq1, freq2) arguments of CalibrateImage for a carrier (9.2.1)."""
    for lo, hi, f1, f2 in _IMAGE_BANDS:
        if lo <= freq_hz <= hi:
            return f1, f2
    # Outside the table: a 4 MHz-step band around the carrier (the units of freq1/freq2).
    step = freq_hz // 4000000
    return (step - 1) & 0xFF, (step + 2) & 0xFF


def rf_frequency_word(freq_hz):
    """SetRfFrequency argument: f * 2^25 / 32 MHz = f * 16384 / 15625 (13.4.1), nearest step.

    Split so that every intermediate fits a 31-bit small int on the ESP32.
    """
    q, r = divmod(freq_hz, 15625)
    return q * 16384 + (r * 16384 + 7812) // 15625


def pa_settings(dbm):
    """(paDutyCycle, hpMax, SetTxParams power) for a target output power on the SX1262."""
    for top, duty, hp in _PA_TABLE:
        if dbm <= top:
            return duty, hp, 22 - (top - dbm)
    raise RadioConfigError("tx_power_dbm", "SX1262 maximum is +22 dBm (got %d)" % dbm)


class SX1262(Radio):
    """SX1262 on SPI with NRESET, BUSY and (optional) DIO1.

    tcxo_mv: supply of a TCXO powered from DIO3 (e.g. 1800 on the Heltec V3), None for a crystal.
    dio2_rf_switch: DIO2 drives the antenna switch (most modules); dcdc: use the DC-DC regulator.
    """

    CHIP = "SX1262"
    FREQ_MIN_HZ = 150000000  # 150..960 MHz (datasheet 3.4)
    FREQ_MAX_HZ = 960000000
    POWER_MIN_DBM = -9  # SX1262 high-power PA: -9..+22 dBm (13.4.4)
    POWER_MAX_DBM = 22

    def __init__(self, spi, cs, reset, busy, dio1=None, clock=None, public_network=True,
                 tcxo_mv=None, tcxo_delay_us=5000, dio2_rf_switch=True, dcdc=True):
        if tcxo_mv is not None and tcxo_mv not in _TCXO_VOLTAGES_MV:
            raise RadioConfigError("tcxo_mv", "must be one of %s mV (got %r)" % (_TCXO_VOLTAGES_MV, tcxo_mv))
        if busy is None:
            raise RadioConfigError("busy", "the SX1262 needs its BUSY pin (datasheet 8.3.1)")
        self._tcxo_mv = tcxo_mv
        self._tcxo_delay_us = tcxo_delay_us
        self._dio2_rf_switch = dio2_rf_switch
        self._dcdc = dcdc
        self._image_band = None
        self._buf = bytearray(8)
        self._status = 0
        super().__init__(spi, cs, reset=reset, irq=dio1, busy=busy, clock=clock, public_network=public_network)

    # ---- command transport (8.3, 13) ----

    def _wait_busy(self, opcode):
        clock = self._clock
        start = clock.ticks_us()
        while self._busy.value():
            if clock.ticks_diff(clock.ticks_us(), start) > _BUSY_TIMEOUT_US:
                raise RadioError("SX1262 BUSY stuck high for 50 ms before command 0x%02x (chip reset or unpowered?)" % opcode)
            clock.sleep_us(10)

    def _cmd(self, opcode, params=b""):
        """Send one command with its parameters (a write-only transaction)."""
        self._wait_busy(opcode)
        b = self._buf
        b[0] = opcode
        self._cs.value(0)
        self._spi.write(memoryview(b)[:1])
        if params:
            self._spi.write(params)
        self._cs.value(1)

    def _cmd_read(self, opcode, params, n):
        """Send a Get*/Read* command and return its ``n`` data bytes (the status byte is kept in _status)."""
        self._wait_busy(opcode)
        tx = bytearray(1 + len(params) + 1 + n)
        tx[0] = opcode
        for i in range(len(params)):
            tx[1 + i] = params[i]
        self._cs.value(0)
        self._spi.write_readinto(tx, tx)
        self._cs.value(1)
        self._status = tx[1 + len(params)]
        return tx[2 + len(params):]

    def _write_register(self, addr, data):
        self._cmd(_WRITE_REGISTER, bytes((addr >> 8, addr & 0xFF)) + bytes(data))

    def _read_register(self, addr, n=1):
        return self._cmd_read(_READ_REGISTER, bytes((addr >> 8, addr & 0xFF)), n)

    def _update_register_bit(self, addr, mask, on):
        v = self._read_register(addr)[0]
        self._write_register(addr, (((v | mask) if on else (v & ~mask)) & 0xFF,))

    def get_status(self):
        """Status byte (13.5.1): chip mode in bits 6:4, command status in bits 3:1."""
        self._cmd_read(_GET_STATUS, b"", 0)
        return self._status

    def device_errors(self):
        d = self._cmd_read(_GET_DEVICE_ERRORS, b"", 2)
        return (d[0] << 8) | d[1]

    # ---- chip hooks ----

    def _init_chip(self):
        # 8.1: NRESET low for > 100 µs; the chip then boots with BUSY high and ends in STDBY_RC.
        if self._reset_pin is not None:
            self._reset_pin.value(0)
            self._clock.sleep_us(200)
            self._reset_pin.value(1)
        mode = (self.get_status() >> 4) & 0x07
        if mode not in (2, 3):  # STDBY_RC / STDBY_XOSC
            raise RadioError(
                "SX1262 not found: status byte 0x%02x has no standby chip mode (check NSS/SCK/MISO/MOSI/BUSY pins)"
                % self._status
            )
        self._cmd(_SET_STANDBY, b"\x00")
        if self._tcxo_mv is not None:
            # 13.3.6: with a TCXO the calibration at power-up failed (no clock yet): enable the TCXO on
            # DIO3 first, clear XOSC_START_ERR, then calibrate everything again (9.2.1).
            delay = self._tcxo_delay_us * 64 // 1000  # units of 15.625 µs
            code = _TCXO_VOLTAGES_MV.index(self._tcxo_mv)
            self._cmd(_SET_DIO3_AS_TCXO, bytes((code, (delay >> 16) & 0xFF, (delay >> 8) & 0xFF, delay & 0xFF)))
        self._cmd(_CLEAR_DEVICE_ERRORS, b"\x00\x00")
        self._cmd(_SET_REGULATOR_MODE, b"\x01" if self._dcdc else b"\x00")
        self._cmd(_CALIBRATE, bytes((_CALIBRATE_ALL,)))
        errors = self.device_errors()
        if errors & 0x7F:
            raise RadioError(
                "SX1262 calibration failed: device errors 0x%04x%s"
                % (errors, " (XOSC did not start: board needs tcxo_mv?)" if errors & _XOSC_START_ERR else "")
            )
        if self._dio2_rf_switch:
            self._cmd(_SET_DIO2_AS_RF_SWITCH, b"\x01")
        # 13.4.2: SetPacketType is the first command of the radio configuration.
        self._cmd(_SET_PACKET_TYPE, bytes((_PACKET_TYPE_LORA,)))
        self._write_register(_REG_SYNC_WORD_MSB, b"\x34\x44" if self.public_network else b"\x14\x24")
        # 15.2: better resistance of the TX to antenna mismatch (TxClampConfig bits 4:1 = 1111)
        self._update_register_bit(_REG_TX_CLAMP_CONFIG, 0x1E, True)
        self._cmd(_SET_BUFFER_BASE, b"\x00\x00")
        self._cmd(_CLEAR_IRQ_STATUS, b"\x03\xff")
        self.state = STATE_STANDBY

    def _apply_config(self):
        # 14.2 / 14.3: configure in STDBY (Radio.configure has woken the chip).
        self._cmd(_SET_STANDBY, b"\x00")
        band = image_calibration(self.freq_hz)
        if band != self._image_band:
            # 9.2.1: calibrate the image rejection for the band in use (POR default is 902-928 MHz).
            self._cmd(_CALIBRATE_IMAGE, bytes(band))
            self._image_band = band
        rf = rf_frequency_word(self.freq_hz)
        self._cmd(_SET_RF_FREQUENCY, bytes(((rf >> 24) & 0xFF, (rf >> 16) & 0xFF, (rf >> 8) & 0xFF, rf & 0xFF)))
        duty, hp, power = pa_settings(self.tx_power_dbm)
        self._cmd(_SET_PA_CONFIG, bytes((duty, hp, 0x00, 0x01)))  # deviceSel 0 = SX1262, paLut 1
        self._cmd(_SET_TX_PARAMS, bytes((power & 0xFF, _RAMP_200US)))
        self._cmd(
            _SET_MODULATION_PARAMS,
            bytes((self.sf, _BW_CODES[self.bw_hz], self.cr - 4, 1 if self.low_data_rate_optimize() else 0)),
        )
        self._set_packet_params(0xFF)

    def _set_packet_params(self, length):
        # 13.4.6.2: preamble (2 bytes), header type (0 = explicit), payload length, CRC, invert IQ
        p = self.preamble
        self._cmd(
            _SET_PACKET_PARAMS,
            bytes((p >> 8, p & 0xFF, 0x00, length, 1 if self.crc else 0, 1 if self.invert_iq else 0)),
        )
        # 15.4: optimise the inverted-IQ operation (bit 2 of 0x0736 cleared with inverted IQ)
        self._update_register_bit(_REG_IQ_POLARITY, 0x04, not self.invert_iq)

    def _check_power(self, dbm):
        pass  # -9..+22 dBm all reachable

    def _standby(self):
        if self.state == STATE_SLEEP:
            # 13.1.1: a falling edge on NSS wakes the chip; it raises BUSY until it is ready.
            self._cs.value(0)
            self._clock.sleep_us(20)
            self._cs.value(1)
        self._cmd(_SET_STANDBY, b"\x00")

    def _sleep(self):
        if self.state == STATE_SLEEP:
            return
        self._cmd(_SET_SLEEP, bytes((_SLEEP_WARM_START,)))
        self._clock.sleep_us(500)  # 13.1.1: no command within 500 µs of SetSleep

    def _timeout_word(self, timeout_ms):
        t = timeout_ms * 64  # 15.625 µs units
        if t > 0xFFFFFE:
            t = 0xFFFFFE  # 0xFFFFFF would mean continuous RX
        return bytes(((t >> 16) & 0xFF, (t >> 8) & 0xFF, t & 0xFF))

    def _set_irq_mask(self, mask):
        m = bytes((mask >> 8, mask & 0xFF))
        self._cmd(_SET_DIO_IRQ_PARAMS, m + m + b"\x00\x00\x00\x00")  # IRQ mask, DIO1 mask, DIO2, DIO3

    def _start_tx(self, data, timeout_ms):
        self._cmd(_SET_STANDBY, b"\x00")
        self._cmd(_CLEAR_IRQ_STATUS, b"\x03\xff")
        self._set_irq_mask(_IRQ_TX_DONE | _IRQ_TIMEOUT)
        self._cmd(_SET_BUFFER_BASE, b"\x00\x00")
        self._wait_busy(_WRITE_BUFFER)
        b = self._buf
        b[0] = _WRITE_BUFFER
        b[1] = 0  # offset
        self._cs.value(0)
        self._spi.write(memoryview(b)[:2])
        self._spi.write(data)
        self._cs.value(1)
        self._set_packet_params(len(data))
        # 15.1: modulation quality at BW 500 kHz: bit 2 of 0x0889 cleared at 500 kHz, set otherwise
        self._update_register_bit(_REG_TX_MODULATION, 0x04, self.bw_hz != 500000)
        self._cmd(_SET_TX, self._timeout_word(timeout_ms))

    def _start_rx(self, timeout_ms, continuous=False):
        self._cmd(_SET_STANDBY, b"\x00")
        self._cmd(_CLEAR_IRQ_STATUS, b"\x03\xff")
        self._set_irq_mask(_IRQ_RX_DONE | _IRQ_TIMEOUT | _IRQ_CRC_ERR | _IRQ_HEADER_ERR | _IRQ_HEADER_VALID)
        self._cmd(_SET_BUFFER_BASE, b"\x00\x00")
        self._set_packet_params(0xFF)
        # 13.1.4: single RX with timeout; the timer stops on header detection, so a packet that
        # starts inside the window is received to its end. (15.3, the implicit-header timeout
        # workaround, does not apply: LoRaWAN uses explicit headers.)
        if continuous:
            # 13.1.4: timeout 0xFFFFFF is Rx Continuous (the chip stays in RX after each packet); the
            # window is timed in software.
            self._cmd(_SET_RX, b"\xff\xff\xff")
            return False
        self._cmd(_SET_RX, self._timeout_word(timeout_ms))
        return True

    def max_rx_timeout_ms(self):
        return 262143  # 24-bit timer of 15.625 µs steps

    def _irq_status(self):
        d = self._cmd_read(_GET_IRQ_STATUS, b"", 2)
        raw = (d[0] << 8) | d[1]
        flags = 0
        if raw & _IRQ_TX_DONE:
            flags |= IRQ_TX_DONE
        if raw & _IRQ_RX_DONE:
            flags |= IRQ_RX_DONE
        if raw & _IRQ_TIMEOUT:
            flags |= IRQ_TIMEOUT
        if raw & _IRQ_CRC_ERR:
            flags |= IRQ_CRC_ERR
        if raw & _IRQ_HEADER_ERR:
            flags |= IRQ_HEADER_ERR
        if raw & _IRQ_HEADER_VALID:
            flags |= IRQ_HEADER_VALID
        return flags

    def _irq_clear(self):
        self._cmd(_CLEAR_IRQ_STATUS, b"\x03\xff")

    def _read_packet(self):
        d = self._cmd_read(_GET_RX_BUFFER_STATUS, b"", 2)
        n, start = d[0], d[1]
        data = self._cmd_read(_READ_BUFFER, bytes((start,)), n)
        p = self._cmd_read(_GET_PACKET_STATUS, b"", 3)
        # 13.5.3: RssiPkt = -value/2 dBm (rounded down to whole dBm), SnrPkt = signed value/4 dB
        rssi = -((p[0] + 1) // 2)
        snr = (p[1] - 256 if p[1] > 127 else p[1]) / 4
        return bytes(data), rssi, snr
