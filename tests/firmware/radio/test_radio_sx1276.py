"""SX1276 driver against the register-level simulator (SX1276/77/78/79 datasheet rev. 7).

Every snippet runs on the real MicroPython unix port; the ``both`` fixture also runs it on CPython.
The simulator (radiosim_sx1276.py) raises SequenceError when the driver breaks a datasheet rule.
"""

from __future__ import annotations

import pytest

SETUP = "import json\nfrom radiosim_sx1276 import make_sx1276, AirPacket, SX1276Sim\nfrom radiosim_hw import SequenceError\n"


def test_init_enters_lora_mode_through_sleep_and_sets_public_sync_word(both):
    got = both.json(
        SETUP
        + "r, chip = make_sx1276()\n"
        + "print(json.dumps({'events': [e[1] for e in chip.events], 'opmode': chip.regs[1], 'sync': chip.regs[0x39],"
        + " 'state': r.state}))"
    )
    # 4.1.2 / 6.4: LongRangeMode may only change in Sleep: FSK standby -> sleep -> LoRa sleep -> standby
    assert got["events"] == ["SLEEP", "STDBY"]
    assert got["opmode"] == 0x81
    assert got["sync"] == 0x34  # LoRaWAN public network
    assert got["state"] == "standby"


def test_private_network_sync_word(mpy):
    got = mpy.json(
        "from radiosim_sx1276 import SX1276Sim\nfrom citynode.radio.sx127x import SX1276\n"
        "c = SX1276Sim()\nSX1276(c.spi, c.nss, c.reset_pin, clock=c.clock, public_network=False)\nprint(c.regs[0x39])"
    )
    assert got == 0x12


def test_missing_chip_is_reported_with_the_register_value(mpy):
    out = mpy.run(
        SETUP + "from citynode.radio.base import RadioError\n"
        "try:\n    make_sx1276(version=0x00)\nexcept RadioError as e:\n    print(e)\n"
    )
    assert "SX1276 not found: RegVersion reads 0x00, expected 0x12" in out


# RegFrf = f * 2^19 / 32 MHz (datasheet 4.1.4): known register values
@pytest.mark.parametrize(
    ("freq_hz", "frf", "lf_mode"),
    [
        (434_000_000, 0x6C8000, True),  # the chip's reset default
        (433_000_000, 0x6C4000, True),
        (868_000_000, 0xD90000, False),
        (868_100_000, 0xD90666, False),  # EU868 join channels
        (868_300_000, 0xD91333, False),
        (868_500_000, 0xD92000, False),
        (869_525_000, 0xD9619A, False),  # EU868 RX2
        (915_000_000, 0xE4C000, False),
    ],
)
def test_frequency_register_encoding(mpy, freq_hz, frf, lf_mode):
    got = mpy.json(
        SETUP + f"r, c = make_sx1276()\nr.configure({freq_hz}, 7, 125000)\nr.send(b'x')\n"
        "s = c.sent[0]\nprint(json.dumps([s['frf'], s['lf_mode']]))"
    )
    assert got == [frf, lf_mode]


# RegModemConfig1/2/3 (6.4): BW code, CR, SF, CRC, LowDataRateOptimize when Tsym > 16 ms (4.1.1.6)
@pytest.mark.parametrize(
    ("sf", "bw_hz", "cr", "crc", "mc1", "mc2", "ldro"),
    [
        (7, 125_000, 5, True, 0x72, 0x74, False),
        (8, 125_000, 5, True, 0x72, 0x84, False),
        (9, 125_000, 5, True, 0x72, 0x94, False),
        (10, 125_000, 5, True, 0x72, 0xA4, False),
        (11, 125_000, 5, True, 0x72, 0xB4, True),
        (12, 125_000, 5, True, 0x72, 0xC4, True),
        (7, 250_000, 5, True, 0x82, 0x74, False),
        (12, 250_000, 5, True, 0x82, 0xC4, True),
        (8, 500_000, 5, True, 0x92, 0x84, False),
        (7, 62_500, 8, False, 0x68, 0x70, False),
        (7, 7_800, 6, True, 0x04, 0x74, True),  # 128 / 7.8 kHz = 16.4 ms symbols
    ],
)
def test_modem_config_encoding(mpy, sf, bw_hz, cr, crc, mc1, mc2, ldro):
    got = mpy.json(
        SETUP + f"r, c = make_sx1276()\nr.configure(868100000, {sf}, {bw_hz}, cr={cr}, crc={crc})\nr.send(b'x')\n"
        "print(json.dumps([c.regs[0x1D], c.regs[0x1E], c.sent[0]['ldro'], c.sent[0]['agc_auto']]))"
    )
    assert got == [mc1, mc2, ldro, True]


# RegPaConfig / RegPaDac / RegOcp (5.4.3, 5.4.4): PA_BOOST, +20 dBm needs PaDac 0x87 and more OCP current
@pytest.mark.parametrize(
    ("dbm", "pa_config", "pa_dac", "ocp"),
    [
        (2, 0xF0, 0x84, 0x2B),
        (10, 0xF8, 0x84, 0x2B),
        (14, 0xFC, 0x84, 0x2B),
        (17, 0xFF, 0x84, 0x2B),
        (18, 0xFD, 0x87, 0x31),
        (20, 0xFF, 0x87, 0x31),
    ],
)
def test_power_encoding(mpy, dbm, pa_config, pa_dac, ocp):
    got = mpy.json(
        SETUP + f"r, c = make_sx1276()\nr.configure(868100000, 7, 125000, tx_power_dbm={dbm})\nr.send(b'x')\n"
        "s = c.sent[0]\nprint(json.dumps([c.regs[0x09], s['pa_dac'], s['ocp'], s['power_dbm'], s['pa_boost']]))"
    )
    assert got == [pa_config, pa_dac, ocp, dbm, True]


def test_transmit_puts_payload_at_fifo_tx_base_and_waits_for_txdone(both):
    got = both.json(
        SETUP
        + "r, c = make_sx1276()\nr.configure(868100000, 9, 125000, preamble=8)\n"
        + "t0 = c.clock.us\nr.send(bytes(range(13)))\n"
        + "s = c.sent[0]\n"
        + "print(json.dumps({'payload': list(s['payload']), 'elapsed_us': c.clock.us - t0, 'toa': r.time_on_air_us(13),"
        + " 'mode': c.mode_name(), 'irq': c.regs[0x12], 'dio0': c.regs[0x40] >> 6, 'state': r.state,"
        + " 'iq_tx': s['invert_iq_tx'], 'iq2': s['invert_iq2'], 'preamble': s['preamble']}))"
    )
    assert got["payload"] == list(range(13))
    assert got["toa"] == 164_864  # SF9/125 kHz, 13 bytes: 164.9 ms (4.1.1.7)
    assert got["toa"] <= got["elapsed_us"] < got["toa"] + 20_000  # returned once TxDone rose on DIO0
    assert got["mode"] == "STDBY" and got["state"] == "standby"
    assert got["irq"] == 0, "TxDone must be cleared after it was read"
    assert got["dio0"] == 1  # RegDioMapping1 DIO0 = 01: TxDone
    assert (got["iq_tx"], got["iq2"], got["preamble"]) == (False, 0x1D, 8)


def test_transmit_without_dio0_polls_the_irq_register(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1276(dio0=False)\nr.configure(868100000, 7, 125000)\nr.send(b'abc')\n"
        "print(json.dumps([len(c.sent), c.regs[0x12], r.state]))"
    )
    assert got == [1, 0, "standby"]


def test_transmit_timeout_raises_radio_error(mpy):
    out = mpy.run(
        SETUP + "from citynode.radio.base import RadioError\n"
        "r, c = make_sx1276()\nr.configure(868100000, 7, 125000)\n"
        "c._start_tx_orig = c._start_tx\n"
        "def dead():\n    c._start_tx_orig()\n    c._event = None\n"
        "c._start_tx = dead\n"
        "try:\n    r.send(b'abc')\nexcept RadioError as e:\n    print('ERR', e, c.mode_name())\n"
    )
    assert "ERR SX1276 TX timeout: no TxDone within" in out
    assert out.strip().endswith("STDBY"), "after a TX timeout the driver must put the chip back in standby"


# RSSI/SNR (datasheet 5.5.5, HF port): SNR = PktSnr/4; RSSI = -157 + PktRssi*16/15 if SNR >= 0,
# else -157 + PktRssi + SNR.
@pytest.mark.parametrize(
    ("freq_hz", "pkt_rssi", "pkt_snr", "rssi", "snr"),
    [
        (868_100_000, 100, 28, -50, 7.0),  # -157 + 106.67
        (868_100_000, 60, 0, -93, 0.0),  # -157 + 64
        (868_100_000, 80, -20, -82, -5.0),  # -157 + 80 - 5
        (868_100_000, 50, -40, -117, -10.0),
        (868_100_000, 30, -77, -146, -19.25),  # below the noise floor
        (433_175_000, 100, 28, -57, 7.0),  # LF port: -164 + 106.67
        (433_175_000, 80, -20, -89, -5.0),
    ],
)
def test_receive_rssi_snr_conversion(both, freq_hz, pkt_rssi, pkt_snr, rssi, snr):
    got = both.json(
        SETUP + f"r, c = make_sx1276()\nr.configure({freq_hz}, 7, 125000, invert_iq=True, crc=False)\n"
        f"c.air.append(AirPacket(b'\\x60down', start_us=3000, pkt_rssi={pkt_rssi}, pkt_snr={pkt_snr}, iq_inverted=True))\n"
        "p = r.recv(200)\nprint(json.dumps([list(p[0]), p[1], p[2], c.regs[0x12], c.mode_name(), r.rx_ok]))"
    )
    assert got == [list(b"\x60down"), rssi, snr, 0, "STDBY", 1]


def test_receive_window_timeout_returns_none_after_symb_timeout(both):
    got = both.json(
        SETUP + "r, c = make_sx1276()\nr.configure(869525000, 12, 125000, invert_iq=True, crc=False)\n"
        "t0 = c.clock.us\np = r.recv(1000)\n"
        "print(json.dumps([p, c.regs[0x1F] | ((c.regs[0x1E] & 3) << 8), c.clock.us - t0, c.mode_name(), c.regs[0x12], r.rx_timeouts,"
        " [e[1] for e in c.events[-2:]]]))"
    )
    p, symb, elapsed, mode, irq, timeouts, events = got
    assert p is None
    assert symb == 31  # ceil(1000 ms / 32.768 ms) symbols in RegSymbTimeout (4.1.6)
    assert 31 * 32_768 <= elapsed < 31 * 32_768 + 20_000
    assert (mode, irq, timeouts) == ("STDBY", 0, 1)
    assert events == ["RXSINGLE", "STDBY"]


def test_crc_error_returns_none_and_is_counted(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1276()\nr.configure(868100000, 7, 125000, invert_iq=True)\n"
        "c.air.append(AirPacket(b'broken', crc_ok=False, iq_inverted=True))\n"
        "print(json.dumps([r.recv(100), r.rx_crc_errors, c.regs[0x12]]))"
    )
    assert got == [None, 1, 0]


def test_downlink_with_inverted_iq_is_not_heard_with_normal_iq(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1276()\nr.configure(868100000, 7, 125000, invert_iq=False)\n"
        "c.air.append(AirPacket(b'down', iq_inverted=True))\n"
        "a = r.recv(100)\nprint(json.dumps([a, c.regs[0x33] & 0x41, c.regs[0x3B]]))"
    )
    assert got == [None, 0x01, 0x1D]


def test_inverted_iq_registers_for_rx(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1276()\nr.configure(868100000, 7, 125000, invert_iq=True)\n"
        "r.recv(50)\nprint(json.dumps([c.regs[0x33] & 0x41, c.regs[0x3B]]))"
    )
    assert got == [0x41, 0x19]  # RegInvertIQ bit 6 set (RX inverted), RegInvertIQ2 = 0x19


def test_packet_starting_after_the_window_is_missed(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1276()\nr.configure(868100000, 7, 125000)\n"
        "c.air.append(AirPacket(b'late', start_us=400000))\nprint(json.dumps(r.recv(100)))"
    )
    assert got is None


def test_window_longer_than_1023_symbols_uses_continuous_rx(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1276()\nr.configure(868100000, 7, 125000)\n"
        "c.air.append(AirPacket(b'late', start_us=1500000))\np = r.recv(2000)\n"
        "q = r.recv(1500)\n"
        "print(json.dumps([p[0].decode(), q, [e[1] for e in c.events[-4:]]]))"
    )
    assert got[0] == "late"
    assert got[1] is None  # the software-timed window ended it
    assert got[2] == ["RXCONTINUOUS", "STDBY", "RXCONTINUOUS", "STDBY"]


def test_sleep_then_send_wakes_the_chip_first(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1276()\nr.configure(868100000, 7, 125000)\nr.sleep()\nm = c.mode_name()\n"
        "r.send(b'after sleep')\nprint(json.dumps([m, c.sent[0]['payload'].decode(), c.regs[1]]))"
    )
    assert got == ["SLEEP", "after sleep", 0x81]


def test_bw500_errata_registers(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1276()\nr.configure(868100000, 8, 500000)\na = [c.regs[0x36], c.regs[0x3A], c.regs[0x31] & 0x80]\n"
        "r.configure(868100000, 8, 125000)\nb = [c.regs[0x36], c.regs[0x31] & 0x80, c.regs[0x2F], c.regs[0x30]]\n"
        "print(json.dumps([a, b]))"
    )
    # Errata note 2.1 (sensitivity at 500 kHz, 862-1020 MHz) and 2.3 (spurious reception)
    assert got == [[0x02, 0x64, 0x80], [0x03, 0x00, 0x40, 0x00]]


# Time on air, datasheet 4.1.1.7 (13-byte frame, CR 4/5, 8-symbol preamble, CRC on): the figures
# LoRaWAN airtime tables list for EU868 DR5..DR0 and DR6 (SF7/250 kHz).
@pytest.mark.parametrize(
    ("sf", "bw_hz", "length", "toa_us"),
    [
        (7, 125_000, 13, 46_336),
        (8, 125_000, 13, 82_432),
        (9, 125_000, 13, 164_864),
        (10, 125_000, 13, 288_768),
        (11, 125_000, 13, 577_536),
        (12, 125_000, 13, 1_155_072),
        (7, 250_000, 13, 23_168),
        (12, 125_000, 51, 2_465_792),
    ],
)
def test_time_on_air(mpy, sf, bw_hz, length, toa_us):
    got = mpy.json(SETUP + f"r, c = make_sx1276()\nr.configure(868100000, {sf}, {bw_hz})\nprint(r.time_on_air_us({length}))")
    assert got == toa_us


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ("r.configure(100000000, 7, 125000)", "freq_hz"),
        ("r.configure(1100000000, 7, 125000)", "freq_hz"),
        ("r.configure(868100000, 6, 125000)", "sf"),
        ("r.configure(868100000, 13, 125000)", "sf"),
        ("r.configure(868100000, 7, 100000)", "bw_hz"),
        ("r.configure(868100000, 7, 125000, cr=4)", "cr"),
        ("r.configure(868100000, 7, 125000, tx_power_dbm=21)", "tx_power_dbm"),
        ("r.configure(868100000, 7, 125000, tx_power_dbm=1)", "tx_power_dbm"),
        ("r.configure(868100000, 7, 125000, preamble=2)", "preamble"),
        ("r.configure(868100000.0, 7, 125000)", "freq_hz"),
        ("r.configure(868100000, 7, 125000); r.send(b'')", "data"),
        ("r.configure(868100000, 7, 125000); r.send(bytes(256))", "data"),
        ("r.configure(868100000, 7, 125000); r.send('text')", "data"),
        ("r.configure(868100000, 7, 125000); r.recv(0)", "timeout_ms"),
    ],
)
def test_bad_configuration_names_the_field(mpy, call, field):
    out = mpy.run(
        SETUP + "from citynode.radio.base import RadioConfigError\nr, c = make_sx1276()\n"
        f"try:\n    {call}\nexcept RadioConfigError as e:\n    print(e.field + '|' + str(e))\n"
    )
    got_field, message = out.strip().split("|", 1)
    assert got_field == field
    assert message.startswith(field + ": ")


def test_send_before_configure_is_refused(mpy):
    out = mpy.run(
        SETUP + "from citynode.radio.base import RadioError\nr, c = make_sx1276()\n"
        "try:\n    r.send(b'x')\nexcept RadioError as e:\n    print(e)\n"
    )
    assert "call configure() before send()/recv()" in out


# The simulator itself: each rule it enforces, broken on purpose with raw register access.
@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("c.spi.select(True)", "before the chip was reset"),
        ("reset(50)", "requires > 100 us"),
        ("reset(200, wait_us=1000); w(0x42, 0)", "requires waiting 5 ms"),
        ("reset(); w(0x01, 0x81)", "LongRangeMode changed in STDBY"),
        ("reset(); w(0x1D, 0x72)", "written in FSK mode"),
        ("reset(); w(0x01, 0x00); w(0x01, 0x80); w(0x00, 1)", "FIFO accessed in Sleep mode"),
        ("reset(); lora(); w(0x22, 1); w(0x06, 0xD9); w(0x01, 0x83); w(0x06, 0xD9)", "written in TX"),
        ("reset(); lora(); w(0x22, 1); w(0x06, 0xD9); c.regs[0x12] = 0x08; w(0x01, 0x83)", "RegIrqFlags = 0x08 still set"),
        ("reset(); lora(); w(0x22, 1); w(0x01, 0x83)", "RegFrf was never written"),
    ],
)
def test_simulator_rejects_wrong_sequences(mpy, steps, message):
    out = mpy.run(
        SETUP
        + "c = SX1276Sim()\n"
        + "def reset(low_us=200, wait_us=5000):\n    c.reset_pin.value(0); c.clock.sleep_us(low_us); c.reset_pin.value(1); c.clock.sleep_us(wait_us)\n"
        + "def w(reg, v):\n    c.nss.value(0); c.spi.write(bytes([reg | 0x80, v])); c.nss.value(1)\n"
        + "def lora():\n    w(0x01, 0x00); w(0x01, 0x80); w(0x01, 0x81)\n"
        + f"try:\n    {steps}\n    print('NO ERROR')\nexcept SequenceError as e:\n    print('SequenceError:', e)\n"
    )
    assert "SequenceError:" in out and message in out, out


def test_a_driver_that_skips_sleep_before_lora_mode_fails_loudly(mpy):
    out = mpy.run(
        SETUP
        + "from citynode.radio.sx127x import SX1276\n"
        + "class Sloppy(SX1276):\n"
        + "    def _init_chip(self):\n"
        + "        self._reset_pin.value(0); self._clock.sleep_us(200); self._reset_pin.value(1); self._clock.sleep_ms(6)\n"
        + "        self._write(0x01, 0x81)\n"
        + "c = SX1276Sim()\n"
        + "try:\n    Sloppy(c.spi, c.nss, c.reset_pin, clock=c.clock)\nexcept SequenceError as e:\n    print('SequenceError:', e)\n"
    )
    assert "SequenceError: RegOpMode.LongRangeMode changed in STDBY mode" in out
