"""SX1262 driver against the command-level simulator (SX1261/2 datasheet rev. 2.1).

Snippets run on the real MicroPython unix port (``mpy``), some also on CPython (``both``). The simulator
(radiosim_sx1262.py) raises SequenceError when a command breaks a datasheet rule.
"""

from __future__ import annotations

import pytest

SETUP = "import json\nfrom radiosim_sx1262 import make_sx1262, SX1262Sim, AirPacket\nfrom radiosim_hw import SequenceError\n"


def test_init_with_tcxo_enables_it_before_calibration(both):
    got = both.json(
        SETUP
        + "r, c = make_sx1262(tcxo=True, tcxo_mv=1800)\n"
        + "print(json.dumps({'cmds': c.commands, 'tcxo': c.tcxo_cfg, 'sync': (c.regs[0x0740] << 8) | c.regs[0x0741],"
        + " 'dcdc': c.regulator, 'dio2': c.dio2_switch, 'clamp': c.regs[0x08D8], 'errors': c.errors, 'state': r.state}))"
    )
    cmds = got["cmds"]
    # 13.3.6 / 9.2.1: TCXO on DIO3 (1.8 V = code 0x02, 5 ms = 320 x 15.625 us), then calibrate everything
    assert cmds[:7] == [
        "GetStatus", "SetStandby", "SetDIO3AsTCXOCtrl", "ClearDeviceErrors", "SetRegulatorMode", "Calibrate",
        "GetDeviceErrors",
    ]
    assert got["tcxo"] == [2, 320]
    assert cmds.index("SetPacketType") < cmds.index("WriteRegister")
    assert got["sync"] == 0x3444  # LoRaWAN public network (registers 0x0740/0x0741)
    assert (got["dcdc"], got["dio2"], got["errors"], got["state"]) == (1, True, 0, "standby")
    assert got["clamp"] & 0x1E == 0x1E  # errata 15.2


def test_init_without_tcxo_does_not_touch_dio3(mpy):
    got = mpy.json(SETUP + "r, c = make_sx1262()\nprint(json.dumps(c.commands))")
    assert "SetDIO3AsTCXOCtrl" not in got and "Calibrate" in got


def test_board_with_tcxo_but_driver_without_it_fails_clearly(mpy):
    out = mpy.run(
        SETUP + "try:\n    make_sx1262(tcxo=True)\nexcept SequenceError as e:\n    print('SequenceError:', e)\n"
    )
    assert "Calibrate before SetDIO3AsTCXOCtrl on a TCXO board" in out


def test_private_network_sync_word(mpy):
    got = mpy.json(
        SETUP + "from citynode.radio.sx126x import SX1262\nc = SX1262Sim()\n"
        "SX1262(c.spi, c.nss, c.reset_pin, c.busy, clock=c.clock, public_network=False)\n"
        "print((c.regs[0x0740] << 8) | c.regs[0x0741])"
    )
    assert got == 0x1424


def test_missing_chip_is_reported(mpy):
    out = mpy.run(
        SETUP + "from citynode.radio.base import RadioError\n"
        "try:\n    make_sx1262(present=False)\nexcept RadioError as e:\n    print(e)\n"
    )
    assert "SX1262 not found: status byte 0x00" in out


def test_busy_stuck_high_raises_radio_error(mpy):
    out = mpy.run(
        SETUP + "from citynode.radio.base import RadioError\n"
        "try:\n    make_sx1262(busy_stuck=True)\nexcept RadioError as e:\n    print(e)\n"
    )
    assert "SX1262 BUSY stuck high for 50 ms before command 0xc0" in out


def test_a_driver_that_ignores_busy_fails_loudly(mpy):
    out = mpy.run(
        SETUP
        + "from citynode.radio.sx126x import SX1262\n"
        + "class Hasty(SX1262):\n    def _wait_busy(self, opcode):\n        pass\n"
        + "c = SX1262Sim()\n"
        + "try:\n    Hasty(c.spi, c.nss, c.reset_pin, c.busy, clock=c.clock)\nexcept SequenceError as e:\n    print('SequenceError:', e)\n"
    )
    assert "NSS asserted while BUSY is high; datasheet 8.3.1" in out


# SetRfFrequency (13.4.1): RfFreq = f * 2^25 / 32 MHz
@pytest.mark.parametrize(
    ("freq_hz", "word", "image"),
    [
        (868_000_000, 0x36400000, [0xD7, 0xDB]),
        (868_100_000, 0x3641999A, [0xD7, 0xDB]),
        (869_525_000, 0x36586666, [0xD7, 0xDB]),
        (915_000_000, 0x39300000, [0xE1, 0xE9]),
        (433_175_000, 0x1B12CCCD, [0x6B, 0x6F]),
        (470_300_000, 0x1D64CCCD, [0x75, 0x81]),
    ],
)
def test_frequency_word_and_image_calibration_band(mpy, freq_hz, word, image):
    # CalibrateImage arguments from datasheet 9.2.1 Table 9-2
    got = mpy.json(
        SETUP + f"r, c = make_sx1262()\nr.configure({freq_hz}, 7, 125000)\nr.send(b'x')\n"
        "print(json.dumps([c.sent[0]['rf'], c.sent[0]['image']]))"
    )
    assert got == [word, image]


def test_image_is_calibrated_once_per_band(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1262()\n"
        "for f in (868100000, 868300000, 868500000, 869525000, 915000000):\n    r.configure(f, 7, 125000)\n"
        "print(c.commands.count('CalibrateImage'))"
    )
    assert got == 2


# SetModulationParams (13.4.5): SF, BW code (Table 13-47), CR 1..4 = 4/5..4/8, LowDataRateOptimize
@pytest.mark.parametrize(
    ("sf", "bw_hz", "cr", "expected"),
    [
        (7, 125_000, 5, {"sf": 7, "bw_hz": 125_000, "cr": 5, "ldro": False}),
        (10, 125_000, 5, {"sf": 10, "bw_hz": 125_000, "cr": 5, "ldro": False}),
        (11, 125_000, 5, {"sf": 11, "bw_hz": 125_000, "cr": 5, "ldro": True}),
        (12, 125_000, 8, {"sf": 12, "bw_hz": 125_000, "cr": 8, "ldro": True}),
        (7, 250_000, 5, {"sf": 7, "bw_hz": 250_000, "cr": 5, "ldro": False}),
        (8, 500_000, 5, {"sf": 8, "bw_hz": 500_000, "cr": 5, "ldro": False}),
        (9, 62_500, 6, {"sf": 9, "bw_hz": 62_500, "cr": 6, "ldro": False}),
        (7, 10_400, 7, {"sf": 7, "bw_hz": 10_400, "cr": 7, "ldro": False}),  # 12.3 ms symbols
        (8, 10_400, 7, {"sf": 8, "bw_hz": 10_400, "cr": 7, "ldro": True}),  # 24.6 ms symbols
    ],
)
def test_modulation_params_encoding(mpy, sf, bw_hz, cr, expected):
    got = mpy.json(
        SETUP + f"r, c = make_sx1262()\nr.configure(868100000, {sf}, {bw_hz}, cr={cr})\nprint(json.dumps(c.mod))"
    )
    assert got == expected


# SetPaConfig optimal settings (13.1.14, Table 13-21) + SetTxParams power
@pytest.mark.parametrize(
    ("dbm", "pa_config", "power"),
    [
        (22, [0x04, 0x07, 0x00, 0x01], 22),
        (21, [0x04, 0x07, 0x00, 0x01], 21),
        (20, [0x03, 0x05, 0x00, 0x01], 22),
        (17, [0x02, 0x03, 0x00, 0x01], 22),
        (15, [0x02, 0x03, 0x00, 0x01], 20),
        (14, [0x02, 0x02, 0x00, 0x01], 22),
        (10, [0x02, 0x02, 0x00, 0x01], 18),
        (-9, [0x02, 0x02, 0x00, 0x01], -1),
    ],
)
def test_power_encoding(mpy, dbm, pa_config, power):
    got = mpy.json(
        SETUP + f"r, c = make_sx1262()\nr.configure(868100000, 7, 125000, tx_power_dbm={dbm})\nr.send(b'x')\n"
        "s = c.sent[0]\nprint(json.dumps([s['pa_config'], s['tx_power'], s['ramp']]))"
    )
    assert got == [pa_config, power, 0x04]


def test_transmit_follows_the_datasheet_tx_sequence(both):
    got = both.json(
        SETUP
        + "r, c = make_sx1262(tcxo=True, tcxo_mv=1800)\nr.configure(868100000, 9, 125000)\nn = len(c.commands)\n"
        + "t0 = c.clock.us\nr.send(bytes(range(13)))\n"
        + "s = c.sent[0]\nprint(json.dumps({'payload': list(s['payload']), 'length': s['length'], 'crc': s['crc'],"
        + " 'iq': s['invert_iq'], 'elapsed': c.clock.us - t0, 'toa': r.time_on_air_us(13), 'irq': c.irq,"
        + " 'dio1_mask': c.dio1_mask, 'mode': c.mode, 'cmds': c.commands[n:], 'reg889': c.regs[0x0889] & 4}))"
    )
    assert got["payload"] == list(range(13)) and got["length"] == 13
    assert (got["crc"], got["iq"]) == (True, False)
    assert got["toa"] <= got["elapsed"] < got["toa"] + 20_000
    assert got["irq"] == 0, "IRQ must be cleared after it was read"
    assert got["dio1_mask"] & 0x0001  # TxDone routed to DIO1
    assert got["mode"] == "STDBY_RC"
    cmds = got["cmds"]
    # 14.2: standby, clear IRQs, IRQ routing, buffer, payload, packet params, SetTx, read IRQ, clear IRQ
    order = ["SetStandby", "ClearIrqStatus", "SetDioIrqParams", "SetBufferBaseAddress", "WriteBuffer", "SetPacketParams", "SetTx"]
    assert [c for c in cmds if c in order][: len(order)] == order
    assert cmds[-2:] == ["GetIrqStatus", "ClearIrqStatus"]
    assert got["reg889"] == 4  # errata 15.1: bit 2 set below 500 kHz


def test_bw500_errata_clears_tx_modulation_bit(mpy):
    got = mpy.json(SETUP + "r, c = make_sx1262()\nr.configure(868100000, 8, 500000)\nr.send(b'x')\nprint(c.regs[0x0889] & 4)")
    assert got == 0


def test_transmit_without_dio1_polls_irq_status(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1262(dio1=False)\nr.configure(868100000, 7, 125000)\nr.send(b'abc')\n"
        "print(json.dumps([len(c.sent), c.irq, r.state]))"
    )
    assert got == [1, 0, "standby"]


def test_transmit_timeout_raises(mpy):
    out = mpy.run(
        SETUP + "from citynode.radio.base import RadioError\nr, c = make_sx1262()\nr.configure(868100000, 7, 125000)\n"
        "orig = c._start\n"
        "def stuck(what, p):\n    orig(what, p)\n    c._event = None\n"
        "c._start = stuck\n"
        "try:\n    r.send(b'abc')\nexcept RadioError as e:\n    print('ERR', e)\n"
    )
    assert "ERR SX1262 TX timeout: no TxDone within" in out


# GetPacketStatus (13.5.3): RssiPkt = -raw/2 dBm (whole dBm, rounded down), SnrPkt = signed raw / 4 dB
@pytest.mark.parametrize(
    ("raw_rssi", "raw_snr", "rssi", "snr"),
    [
        (120, 40, -60, 10.0),
        (121, -20, -61, -5.0),
        (200, -60, -100, -15.0),
        (60, 0, -30, 0.0),
        (255, -128, -128, -32.0),
    ],
)
def test_receive_rssi_snr_conversion(both, raw_rssi, raw_snr, rssi, snr):
    got = both.json(
        SETUP + "r, c = make_sx1262(tcxo=True, tcxo_mv=1800)\nr.configure(869525000, 9, 125000, invert_iq=True, crc=False)\n"
        f"c.air.append(AirPacket(b'\\x60down', start_us=5000, pkt_rssi={raw_rssi}, pkt_snr={raw_snr}, iq_inverted=True))\n"
        "p = r.recv(300)\nprint(json.dumps([list(p[0]), p[1], p[2], c.irq, c.mode, c.regs[0x0736] & 4]))"
    )
    # errata 15.4: 0x0736 bit 2 cleared while receiving with inverted IQ
    assert got == [list(b"\x60down"), rssi, snr, 0, "STDBY_RC", 0]


def test_receive_timeout_uses_the_chip_timer(both):
    got = both.json(
        SETUP + "r, c = make_sx1262()\nr.configure(869525000, 12, 125000, invert_iq=True, crc=False)\n"
        "orig = c._execute\nargs = []\n"
        "def spy(data):\n    if data[0] == 0x82: args.append(list(data[1:]))\n    orig(data)\n"
        "c._execute = spy\nt0 = c.clock.us\np = r.recv(1000)\n"
        "print(json.dumps([p, args, c.clock.us - t0, c.irq, r.rx_timeouts]))"
    )
    p, args, elapsed, irq, timeouts = got
    assert p is None
    assert args == [[0x00, 0xFA, 0x00]]  # 1000 ms = 64000 x 15.625 us (13.1.5)
    assert 1_000_000 <= elapsed < 1_020_000
    assert (irq, timeouts) == (0, 1)


def test_crc_error_returns_none(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1262()\nr.configure(868100000, 7, 125000, invert_iq=True)\n"
        "c.air.append(AirPacket(b'broken', crc_ok=False, iq_inverted=True))\n"
        "print(json.dumps([r.recv(100), r.rx_crc_errors, c.irq]))"
    )
    assert got == [None, 1, 0]


def test_packet_with_other_iq_is_not_received(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1262()\nr.configure(868100000, 7, 125000)\n"
        "c.air.append(AirPacket(b'down', iq_inverted=True))\nprint(json.dumps([r.recv(100), c.regs[0x0736] & 4]))"
    )
    assert got == [None, 4]


def test_warm_sleep_and_wake_by_nss(mpy):
    got = mpy.json(
        SETUP + "r, c = make_sx1262(tcxo=True, tcxo_mv=1800)\nr.configure(868100000, 7, 125000)\n"
        "orig = c._execute\nargs = []\n"
        "def spy(data):\n    if data[0] == 0x84: args.append(data[1])\n    orig(data)\n"
        "c._execute = spy\n"
        "r.sleep()\nm = c.mode\nr.send(b'after sleep')\n"
        "print(json.dumps([m, args, r.state, c.sent[-1]['payload'].decode(), c.sent[-1]['sf']]))"
    )
    # 13.1.1: warm start (bit 2) keeps the configuration, so no reconfiguration is needed after waking
    assert got == ["SLEEP", [0x04], "standby", "after sleep", 7]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ("r.configure(100000000, 7, 125000)", "freq_hz"),
        ("r.configure(1000000000, 7, 125000)", "freq_hz"),
        ("r.configure(868100000, 7, 125000, tx_power_dbm=23)", "tx_power_dbm"),
        ("r.configure(868100000, 7, 125000, tx_power_dbm=-10)", "tx_power_dbm"),
        ("r.configure(868100000, 5, 125000)", "sf"),
        ("r.configure(868100000, 7, 125000); r.recv(300000)", "timeout_ms"),
    ],
)
def test_bad_configuration_names_the_field(mpy, call, field):
    out = mpy.run(
        SETUP + "from citynode.radio.base import RadioConfigError\nr, c = make_sx1262()\n"
        f"try:\n    {call}\nexcept RadioConfigError as e:\n    print(e.field + '|' + str(e))\n"
    )
    assert out.strip().split("|", 1)[0] == field


def test_bad_tcxo_voltage_is_rejected(mpy):
    out = mpy.run(
        SETUP + "from citynode.radio.base import RadioConfigError\n"
        "try:\n    make_sx1262(tcxo=True, tcxo_mv=1900)\nexcept RadioConfigError as e:\n    print(e)\n"
    )
    assert out.startswith("tcxo_mv: must be one of (1600, 1700, 1800, 2200, 2400, 2700, 3000, 3300) mV")


# The simulator itself: each rule it enforces, broken on purpose with raw commands.
@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("c.nss.value(0)", "before the chip was reset"),
        ("reset(); cmd(0x8B, 7, 4, 1, 0)", "SetModulationParams before SetPacketType"),
        ("reset(); cmd(0x86, 0x36, 0x41, 0x99, 0x9A)", "SetRfFrequency before SetPacketType"),
        ("reset(); c.nss.value(0); c.spi.write(bytes([0xC0, 0])); c.nss.value(1); c.nss.value(0)", "BUSY is high"),
        ("reset(); lora_868(); cmd(0x82, 0, 0xFA, 0)", "image calibrated for 900-932 MHz"),
        ("reset(); lora_868(); cmd(0x98, 0xD7, 0xDB); c.irq = 2; cmd(0x82, 0, 0xFA, 0)", "not cleared"),
        ("reset(); lora_868(); cmd(0x98, 0xD7, 0xDB); cmd(0x82, 0, 0xFA, 0); cmd(0x8B, 7, 4, 1, 0)", "sent in RX"),
        ("reset(); lora_868(); cmd(0x98, 0xD7, 0xDB); cmd(0x95, 4, 7, 0, 1); cmd(0x8E, 22, 4); cmd(0x0E, 0, 1); cmd(0x83, 0, 0, 0)", "errata 15.1"),
        ("reset(); cmd(0x84, 4); c.nss.value(0); c.spi.write(bytes([0x80, 0])); c.nss.value(1)", "sent on the wake-up edge"),
        ("reset(); cmd(0x89, 0x7F)", "NO ERROR"),
    ],
)
def test_simulator_rejects_wrong_sequences(mpy, steps, message):
    out = mpy.run(
        SETUP
        + "c = SX1262Sim()\n"
        + "def reset():\n    c.reset_pin.value(0); c.clock.sleep_us(200); c.reset_pin.value(1)\n"
        + "def cmd(*b):\n    while c.busy.value(): pass\n    c.nss.value(0); c.spi.write(bytes(b)); c.nss.value(1)\n"
        + "def lora_868():\n    cmd(0x8A, 1); cmd(0x86, 0x36, 0x41, 0x99, 0x9A); cmd(0x8B, 7, 4, 1, 0); cmd(0x8C, 0, 8, 0, 1, 1, 0)\n"
        + f"try:\n    {steps}\n    print('NO ERROR')\nexcept SequenceError as e:\n    print('SequenceError:', e)\n"
    )
    assert message in out, out
