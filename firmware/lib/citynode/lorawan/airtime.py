# LoRa time on air, Semtech's formula: SX1276/77/78/79 datasheet rev. 7 §4.1.1.7 "Time on air",
# also Semtech AN1200.13 "LoRa Modem Designer's Guide" §4. Integer arithmetic only, so the result is the
# same on MicroPython (ESP32 has no double-precision FPU) and CPython.
from citynode.compat import const

# SX1276 §4.1.1.6: low data rate optimisation is mandated when the symbol time exceeds 16 ms.
_LDRO_SYMBOL_US = const(16000)


def symbol_time_us(sf, bw_hz):
    """Duration of one LoRa symbol, Ts = 2^SF / BW, in microseconds (rounded down)."""
    return (1 << sf) * 1000000 // bw_hz


def ldro_required(sf, bw_hz):
    """True when the symbol time is 16 ms or more (SX1276 §4.1.1.6): SF11/SF12 at 125 kHz."""
    return (1 << sf) * 1000000 >= _LDRO_SYMBOL_US * bw_hz


def payload_symbols(payload_len, sf, cr=1, explicit_header=True, crc=True, low_dr_optimize=None):
    """Number of payload symbols (SX1276 §4.1.1.7):

    8 + max(ceil((8*PL - 4*SF + 28 + 16*CRC - 20*IH) / (4*(SF - 2*DE))) * (CR + 4), 0)

    ``cr`` is the coding-rate index 1..4 (4/5..4/8); ``IH`` is 1 for implicit header; ``DE`` is the low
    data rate optimisation bit, chosen automatically when ``low_dr_optimize`` is None.
    """
    if not 6 <= sf <= 12:
        raise ValueError("sf")
    if not 1 <= cr <= 4:
        raise ValueError("cr")
    if payload_len < 0 or payload_len > 255:
        raise ValueError("payload_len")
    de = 1 if low_dr_optimize else 0
    ih = 0 if explicit_header else 1
    num = 8 * payload_len - 4 * sf + 28 + (16 if crc else 0) - 20 * ih
    den = 4 * (sf - 2 * de)
    blocks = -((-num) // den)  # ceil for integers, also right for negative numerators
    blocks = max(blocks, 0)
    return 8 + blocks * (cr + 4)


def time_on_air_us(payload_len, sf, bw_hz, cr=1, preamble=8, explicit_header=True, crc=True,
                   low_dr_optimize=None):
    """Time on air of one LoRa packet in microseconds (rounded to nearest).

    T = (n_preamble + 4.25 + payload_symbols) * 2^SF / BW   (SX1276 §4.1.1.7)

    ``payload_len`` is the PHY payload length in bytes; ``cr`` 1..4 means 4/5..4/8 (LoRaWAN uses 1);
    ``preamble`` is the programmed preamble length (LoRaWAN: 8 symbols, RP002 §2.4.1).
    ``low_dr_optimize=None`` turns LDRO on exactly when the symbol time is at least 16 ms.
    """
    if bw_hz <= 0:
        raise ValueError("bw_hz")
    if low_dr_optimize is None:
        low_dr_optimize = ldro_required(sf, bw_hz)
    n = payload_symbols(payload_len, sf, cr, explicit_header, crc, low_dr_optimize)
    # Quarter symbols keep the 4.25-symbol preamble tail exact in integers.
    quarter_symbols = 4 * (preamble + n) + 17
    den = 4 * bw_hz
    return (quarter_symbols * (1 << sf) * 1000000 + den // 2) // den


def time_on_air_ms(payload_len, sf, bw_hz, cr=1, preamble=8, explicit_header=True, crc=True,
                   low_dr_optimize=None):
    """Like ``time_on_air_us`` but in whole milliseconds, rounded up (for duty-cycle accounting)."""
    us = time_on_air_us(payload_len, sf, bw_hz, cr, preamble, explicit_header, crc, low_dr_optimize)
    return (us + 999) // 1000
