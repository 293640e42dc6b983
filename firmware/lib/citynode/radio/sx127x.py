# Semtech SX1276 (SX1276/77/78/79 family) LoRa driver, register level.
# Sources: SX1276/77/78/79 datasheet rev. 7 (sections cited inline) and the SX1276/77/78/79 errata note.
# Only the LoRa modem is used. Output goes through PA_BOOST, as on every SX1276 board citynode supports
# (TTGO LoRa32, LILYGO T-Beam, RFM95W modules); the RFO pin is not wired on those boards.
from citynode.compat import const
from citynode.radio.base import (
    IRQ_CRC_ERR,
    IRQ_HEADER_VALID,
    IRQ_RX_DONE,
    IRQ_TIMEOUT,
    IRQ_TX_DONE,
    STATE_STANDBY,
    Radio,
    RadioError,
)

# Register map, LoRa mode (datasheet 6.4, Table 41)
_REG_FIFO = const(0x00)
_REG_OP_MODE = const(0x01)
_REG_FRF_MSB = const(0x06)
_REG_PA_CONFIG = const(0x09)
_REG_OCP = const(0x0B)
_REG_LNA = const(0x0C)
_REG_FIFO_ADDR_PTR = const(0x0D)
_REG_FIFO_TX_BASE = const(0x0E)
_REG_FIFO_RX_BASE = const(0x0F)
_REG_FIFO_RX_CURRENT = const(0x10)
_REG_IRQ_FLAGS_MASK = const(0x11)
_REG_IRQ_FLAGS = const(0x12)
_REG_RX_NB_BYTES = const(0x13)
_REG_PKT_SNR = const(0x19)
_REG_PKT_RSSI = const(0x1A)
_REG_MODEM_CONFIG1 = const(0x1D)
_REG_MODEM_CONFIG2 = const(0x1E)
_REG_SYMB_TIMEOUT_LSB = const(0x1F)
_REG_PREAMBLE_MSB = const(0x20)
_REG_PREAMBLE_LSB = const(0x21)
_REG_PAYLOAD_LENGTH = const(0x22)
_REG_MAX_PAYLOAD_LENGTH = const(0x23)
_REG_MODEM_CONFIG3 = const(0x26)
_REG_IF_FREQ1 = const(0x2F)  # errata 2.3
_REG_IF_FREQ2 = const(0x30)  # errata 2.3
_REG_DETECT_OPTIMIZE = const(0x31)
_REG_INVERT_IQ = const(0x33)
_REG_HIGH_BW_OPTIMIZE1 = const(0x36)  # errata 2.1
_REG_DETECTION_THRESHOLD = const(0x37)
_REG_SYNC_WORD = const(0x39)
_REG_HIGH_BW_OPTIMIZE2 = const(0x3A)  # errata 2.1
_REG_INVERT_IQ2 = const(0x3B)
_REG_DIO_MAPPING1 = const(0x40)
_REG_VERSION = const(0x42)
_REG_PA_DAC = const(0x4D)

# RegOpMode (6.4): bit 7 LongRangeMode, bit 3 LowFrequencyModeOn, bits 2:0 mode
_LONG_RANGE_MODE = const(0x80)
_LOW_FREQ_MODE = const(0x08)
_MODE_SLEEP = const(0x00)
_MODE_STDBY = const(0x01)
_MODE_TX = const(0x03)
_MODE_RX_CONTINUOUS = const(0x05)
_MODE_RX_SINGLE = const(0x06)

# RegIrqFlags (6.4): write 1 to clear
_IRQ_RX_TIMEOUT = const(0x80)
_IRQ_RX_DONE = const(0x40)
_IRQ_PAYLOAD_CRC_ERROR = const(0x20)
_IRQ_VALID_HEADER = const(0x10)
_IRQ_TX_DONE = const(0x08)

# RegDioMapping1 bits 7:6 (Table 18): DIO0 = 00 RxDone, 01 TxDone
_DIO0_RX_DONE = const(0x00)
_DIO0_TX_DONE = const(0x40)

_VERSION_SX1276 = const(0x12)
_SYNC_PUBLIC = const(0x34)  # LoRaWAN public network
_SYNC_PRIVATE = const(0x12)
_LF_MAX_HZ = const(525000000)  # bands 2/3 (LF port) end at 525 MHz (datasheet 2.5.1)
_MAX_SYMB_TIMEOUT = const(1023)  # RegSymbTimeout is 10 bits

# RegModemConfig1 bits 7:4 (6.4): bandwidth code by Hz
_BW_CODES = {7800: 0, 10400: 1, 15600: 2, 20800: 3, 31250: 4, 41700: 5, 62500: 6, 125000: 7, 250000: 8, 500000: 9}


class SX1276(Radio):
    """SX1276 on SPI. ``reset`` drives NRESET, ``dio0`` (optional) signals TxDone/RxDone.

    Without ``dio0`` the driver polls RegIrqFlags every millisecond. ``clock`` defaults to `time`.
    """

    CHIP = "SX1276"
    FREQ_MIN_HZ = 137000000  # datasheet 2.5.1: 137..1020 MHz
    FREQ_MAX_HZ = 1020000000
    POWER_MIN_DBM = 2  # PA_BOOST: +2..+17 dBm, +20 dBm with the high-power PA DAC (5.4.3)
    POWER_MAX_DBM = 20

    def __init__(self, spi, cs, reset=None, dio0=None, clock=None, public_network=True):
        self._buf1 = bytearray(1)
        self._buf2 = bytearray(2)
        self._opmode_base = _LONG_RANGE_MODE
        super().__init__(spi, cs, reset=reset, irq=dio0, clock=clock, public_network=public_network)

    # ---- register access (datasheet 4.3: SPI, MSB of the address byte = wnr) ----

    def _write(self, reg, value):
        b = self._buf2
        b[0] = reg | 0x80
        b[1] = value
        self._cs.value(0)
        self._spi.write(b)
        self._cs.value(1)

    def _read(self, reg):
        b = self._buf2
        b[0] = reg & 0x7F
        b[1] = 0
        self._cs.value(0)
        self._spi.write_readinto(b, b)
        self._cs.value(1)
        return b[1]

    def _set_mode(self, mode):
        self._write(_REG_OP_MODE, self._opmode_base | mode)

    # ---- chip hooks ----

    def _init_chip(self):
        if self._reset_pin is not None:
            # 7.2.2 manual reset: NRESET low for > 100 µs, then wait 5 ms before using the chip.
            self._reset_pin.value(0)
            self._clock.sleep_us(200)
            self._reset_pin.value(1)
            self._clock.sleep_ms(6)
        version = self._read(_REG_VERSION)
        if version != _VERSION_SX1276:
            raise RadioError(
                "SX1276 not found: RegVersion reads 0x%02x, expected 0x12 (check NSS/SCK/MISO/MOSI pins and power)"
                % version
            )
        # 4.1.2: LongRangeMode can only be changed in Sleep mode, so go to FSK sleep first.
        self._write(_REG_OP_MODE, _MODE_SLEEP)
        self._write(_REG_OP_MODE, _LONG_RANGE_MODE | _MODE_SLEEP)
        if not self._read(_REG_OP_MODE) & _LONG_RANGE_MODE:
            raise RadioError("SX1276 did not enter LoRa mode (RegOpMode.LongRangeMode stayed 0)")
        self._write(_REG_SYNC_WORD, _SYNC_PUBLIC if self.public_network else _SYNC_PRIVATE)
        # Whole FIFO for each direction: TX and RX never overlap in half duplex (4.1.2.3).
        self._write(_REG_FIFO_TX_BASE, 0x00)
        self._write(_REG_FIFO_RX_BASE, 0x00)
        self._write(_REG_MAX_PAYLOAD_LENGTH, 0xFF)
        self._write(_REG_IRQ_FLAGS_MASK, 0x00)
        self._write(_REG_IRQ_FLAGS, 0xFF)
        self._standby()
        self.state = STATE_STANDBY

    def _check_power(self, dbm):
        pass  # 2..20 dBm are all reachable: 2..17 with the normal DAC, 18..20 with the high-power DAC

    def _apply_config(self):
        # Chip is in standby here (Radio.configure wakes it): 4.1.2 config belongs to Sleep/Standby.
        freq = self.freq_hz
        lf = freq < _LF_MAX_HZ
        self._opmode_base = _LONG_RANGE_MODE | (_LOW_FREQ_MODE if lf else 0)
        self._set_mode(_MODE_STDBY)
        # 4.1.4: Frf = f_RF * 2^19 / 32 MHz = f_RF * 256 / 15625, rounded to the nearest 61.035 Hz step.
        # Split so every intermediate fits a 31-bit small int (no bignum allocation on the ESP32).
        q, r = divmod(freq, 15625)
        frf = q * 256 + (r * 256 + 7812) // 15625
        self._write(_REG_FRF_MSB, (frf >> 16) & 0xFF)
        self._write(_REG_FRF_MSB + 1, (frf >> 8) & 0xFF)
        self._write(_REG_FRF_MSB + 2, frf & 0xFF)
        # 5.4.3: PA_BOOST Pout = 2 + OutputPower (normal), 5 + OutputPower with RegPaDac = 0x87 (+20 dBm)
        p = self.tx_power_dbm
        if p > 17:
            self._write(_REG_PA_DAC, 0x87)
            self._write(_REG_PA_CONFIG, 0x80 | 0x70 | (p - 5))
            self._write(_REG_OCP, 0x20 | 17)  # 5.4.4: OcpOn, Imax = -30 + 10 * 17 = 140 mA
        else:
            self._write(_REG_PA_DAC, 0x84)
            self._write(_REG_PA_CONFIG, 0x80 | 0x70 | (p - 2))
            self._write(_REG_OCP, 0x20 | 11)  # OcpOn, Imax = 45 + 5 * 11 = 100 mA (reset default)
        # RegLna: max gain G1; LNA boost only on the HF port (LnaBoostHf = 11)
        self._write(_REG_LNA, 0x23 if not lf else 0x20)
        bw_code = _BW_CODES[self.bw_hz]
        self._write(_REG_MODEM_CONFIG1, (bw_code << 4) | ((self.cr - 4) << 1))  # explicit header
        self._write(_REG_MODEM_CONFIG2, self._modem_config2(0))
        # RegModemConfig3: LowDataRateOptimize (4.1.1.6) + AgcAutoOn
        self._write(_REG_MODEM_CONFIG3, (0x08 if self.low_data_rate_optimize() else 0) | 0x04)
        self._write(_REG_PREAMBLE_MSB, self.preamble >> 8)
        self._write(_REG_PREAMBLE_LSB, self.preamble & 0xFF)
        # RegDetectOptimize / RegDetectionThreshold: 0x03 / 0x0A for SF7..SF12 (6.4)
        opt = self._read(_REG_DETECT_OPTIMIZE) & 0xF8
        if self.bw_hz == 500000:
            # Errata 2.1: sensitivity with 500 kHz BW; errata 2.3: bit 7 of RegDetectOptimize set at 500 kHz.
            self._write(_REG_DETECT_OPTIMIZE, opt | 0x80 | 0x03)
            self._write(_REG_HIGH_BW_OPTIMIZE1, 0x02)
            self._write(_REG_HIGH_BW_OPTIMIZE2, 0x7F if lf else 0x64)
        else:
            self._write(_REG_DETECT_OPTIMIZE, (opt & 0x7F) | 0x03)
            self._write(_REG_HIGH_BW_OPTIMIZE1, 0x03)
            if self.bw_hz >= 62500:
                # Errata 2.3 (spurious reception of a LoRa signal), BW 62.5..250 kHz. The narrower
                # bandwidths also need a channel offset; LoRaWAN never uses them, so they are left alone.
                self._write(_REG_IF_FREQ2, 0x00)
                self._write(_REG_IF_FREQ1, 0x40)
        self._write(_REG_DETECTION_THRESHOLD, 0x0A)

    def _modem_config2(self, symb_timeout):
        # RegModemConfig2: SF 7:4, RxPayloadCrcOn bit 2, SymbTimeout(9:8) bits 1:0
        return (self.sf << 4) | (0x04 if self.crc else 0) | ((symb_timeout >> 8) & 0x03)

    def _set_iq(self, tx):
        # RegInvertIQ (0x33): bit 6 inverts the RX path, bit 0 (active low) the TX path; RegInvertIQ2
        # (0x3B) must follow: 0x19 while inverted, 0x1D otherwise (Semtech reference values).
        reg = self._read(_REG_INVERT_IQ) & 0xBE
        if not self.invert_iq:
            self._write(_REG_INVERT_IQ, reg | 0x01)
            self._write(_REG_INVERT_IQ2, 0x1D)
        else:
            self._write(_REG_INVERT_IQ, reg | (0x00 if tx else 0x41))
            self._write(_REG_INVERT_IQ2, 0x19)

    def _standby(self):
        self._set_mode(_MODE_STDBY)

    def _sleep(self):
        self._set_mode(_MODE_SLEEP)  # LoRa sleep keeps every register; the FIFO is lost (4.1.2.3)

    def _start_tx(self, data, timeout_ms):
        self._set_mode(_MODE_STDBY)
        self._write(_REG_IRQ_FLAGS, 0xFF)
        self._set_iq(True)
        self._write(_REG_MODEM_CONFIG2, self._modem_config2(0))
        self._write(_REG_DIO_MAPPING1, _DIO0_TX_DONE)
        # 4.1.2.3: point FifoAddrPtr at FifoTxBaseAddr, fill the FIFO, set RegPayloadLength, then TX.
        self._write(_REG_FIFO_ADDR_PTR, 0x00)
        self._buf1[0] = _REG_FIFO | 0x80
        self._cs.value(0)
        self._spi.write(self._buf1)
        self._spi.write(data)
        self._cs.value(1)
        self._write(_REG_PAYLOAD_LENGTH, len(data))
        self._set_mode(_MODE_TX)

    def _start_rx(self, timeout_ms, continuous=False):
        self._set_mode(_MODE_STDBY)
        self._write(_REG_IRQ_FLAGS, 0xFF)
        self._set_iq(False)
        self._write(_REG_DIO_MAPPING1, _DIO0_RX_DONE)
        self._write(_REG_FIFO_ADDR_PTR, 0x00)
        tsym_us = self.symbol_time_us()
        symbols = (timeout_ms * 1000 + tsym_us - 1) // tsym_us
        if symbols < 4:
            symbols = 4  # the detector needs a few symbols of preamble to lock
        if symbols <= _MAX_SYMB_TIMEOUT and not continuous:
            # 4.1.6: RXSINGLE ends by itself with RxTimeout after RegSymbTimeout symbols without preamble.
            self._write(_REG_MODEM_CONFIG2, self._modem_config2(symbols))
            self._write(_REG_SYMB_TIMEOUT_LSB, symbols & 0xFF)
            self._set_mode(_MODE_RX_SINGLE)
            return True
        # Longer than 1023 symbols, or a Class C window: continuous RX, the window is timed in software.
        self._write(_REG_MODEM_CONFIG2, self._modem_config2(0))
        self._set_mode(_MODE_RX_CONTINUOUS)
        return False

    def _irq_status(self):
        raw = self._read(_REG_IRQ_FLAGS)
        flags = 0
        if raw & _IRQ_TX_DONE:
            flags |= IRQ_TX_DONE
        if raw & _IRQ_RX_DONE:
            flags |= IRQ_RX_DONE
        if raw & _IRQ_RX_TIMEOUT:
            flags |= IRQ_TIMEOUT
        if raw & _IRQ_PAYLOAD_CRC_ERROR:
            flags |= IRQ_CRC_ERR
        if raw & _IRQ_VALID_HEADER:
            flags |= IRQ_HEADER_VALID
        return flags

    def _irq_clear(self):
        self._write(_REG_IRQ_FLAGS, 0xFF)

    def _read_packet(self):
        n = self._read(_REG_RX_NB_BYTES)
        self._write(_REG_FIFO_ADDR_PTR, self._read(_REG_FIFO_RX_CURRENT))
        data = bytearray(n)
        self._buf1[0] = _REG_FIFO
        self._cs.value(0)
        self._spi.write(self._buf1)
        self._spi.readinto(data)
        self._cs.value(1)
        # 5.5.5: SNR = RegPktSnrValue (two's complement) / 4 dB
        raw = self._read(_REG_PKT_SNR)
        snr = (raw - 256 if raw > 127 else raw) / 4
        rssi = rssi_dbm(self._read(_REG_PKT_RSSI), snr, self.freq_hz >= _LF_MAX_HZ)
        return bytes(data), rssi, snr

    def read_register(self, reg):
        """Raw register read, for diagnostics (`citynode` field tools)."""
        return self._read(reg)


def rssi_dbm(pkt_rssi, snr_db, hf_port=True):
    """Packet RSSI in dBm from RegPktRssiValue (datasheet 5.5.5).

    HF port (>= 525 MHz): -157 + PktRssi; LF port: -164 + PktRssi. When SNR >= 0 the datasheet
    corrects the linearity: -157 + 16/15 * PktRssi; when SNR < 0 the SNR is added: + PktSnr * 0.25.
    """
    offset = -157 if hf_port else -164
    if snr_db < 0:
        value = offset + pkt_rssi + snr_db
    else:
        value = offset + pkt_rssi * 16 / 15
    return int(round(value))
