# EU863-870 regional parameters for a LoRaWAN 1.0.4 Class A end device.
# Source: LoRa Alliance RP002-1.0.3 "LoRaWAN Regional Parameters" §2.4 (EU863-870MHz ISM Band) and the
# common defaults of the same document; sub-band duty cycles from ETSI EN 300 220-2 V3.2.1 §4.3.3 with
# CEPT ERC Recommendation 70-03 Annex 1 (bands h1.3..h1.7), as RP002 §2.4.2 refers to them.
# Frequencies are in Hz, times in ms, powers in dBm throughout.
from citynode.compat import const

NAME = "EU868"

# RP002 §2.4.2: the three default channels every EU868 device and network must support; they carry the
# join request and stay enabled unless a LinkADRReq masks them. Data rates DR0..DR5.
DEFAULT_CHANNELS = (868100000, 868300000, 868500000)
DEFAULT_CHANNEL_DR = (0, 5)
MAX_CHANNELS = const(16)  # RP002 §2.4.2: EU868 devices support 16 channels
FREQ_MIN_HZ = const(863000000)
FREQ_MAX_HZ = const(870000000)

# RP002 §2.4.3 Table "EU863-870 Data Rate and end-device output power encoding":
# DR -> (spreading factor, bandwidth Hz); DR7 is FSK 50 kbps, which the LoRa-only radios here do not do,
# and DR8..DR11 (LR-FHSS) are not supported: None marks an unsupported data rate.
DATA_RATES = (
    (12, 125000),  # DR0  SF12/125 kHz  250 bit/s
    (11, 125000),  # DR1  SF11/125 kHz  440 bit/s
    (10, 125000),  # DR2  SF10/125 kHz  980 bit/s
    (9, 125000),   # DR3  SF9/125 kHz  1760 bit/s
    (8, 125000),   # DR4  SF8/125 kHz  3125 bit/s
    (7, 125000),   # DR5  SF7/125 kHz  5470 bit/s
    (7, 250000),   # DR6  SF7/250 kHz 11000 bit/s
    None,          # DR7  FSK 50 kbps: not supported by this stack
)
MIN_DR = const(0)
MAX_DR = const(6)  # highest data rate this device can use (LoRa only)
JOIN_DR_RANGE = (0, 5)  # RP002 §2.4.2: join requests on the default channels at DR0..DR5

# RP002 §2.4.6 Table "EU863-870 maximum payload size": M = max MACPayload, N = max FRMPayload (FOpts empty).
# The "not repeater compatible" table is what ChirpStack v4 uses by default for EU868.
MAX_MAC_PAYLOAD = (59, 59, 59, 123, 250, 250, 250, 250)
MAX_APP_PAYLOAD = (51, 51, 51, 115, 242, 242, 242, 242)
# Same table, "repeater compatible" variant (for networks that run LoRaWAN repeaters).
MAX_MAC_PAYLOAD_REPEATER = (59, 59, 59, 123, 230, 230, 230, 230)
MAX_APP_PAYLOAD_REPEATER = (51, 51, 51, 115, 222, 222, 222, 222)

# RP002 §2.4.7 Table "EU863-870 RX1 data rate mapping": RX1 DR = max(upstream DR - RX1DROffset, DR0) for
# offsets 0..5; offsets 6 and 7 are RFU.
MAX_RX1_DR_OFFSET = const(5)

# RP002 §2.4.7: RX2 defaults to 869.525 MHz at DR0 (SF12/125 kHz).
RX2_FREQ_HZ = const(869525000)
RX2_DR = const(0)

# RP002 common default settings ("Default settings" table, §2.4.8 refers to them):
RECEIVE_DELAY1_MS = const(1000)
RECEIVE_DELAY2_MS = const(2000)  # always RECEIVE_DELAY1 + 1 s
JOIN_ACCEPT_DELAY1_MS = const(5000)
JOIN_ACCEPT_DELAY2_MS = const(6000)
MAX_FCNT_GAP = const(16384)  # removed in LoRaWAN 1.0.4 (the device keeps it as a sanity bound only)
ADR_ACK_LIMIT = const(64)
ADR_ACK_DELAY = const(32)
RETRANSMIT_TIMEOUT_MIN_MS = const(1000)  # RP002: RETRANSMIT_TIMEOUT 2 s +/- 1 s (random)
RETRANSMIT_TIMEOUT_MAX_MS = const(3000)

# RP002 §2.4.3 Table "EU863-870 TX power table": TXPower n = MaxEIRP - 2n dB, n = 0..7; MaxEIRP defaults to
# +16 dBm. 8..14 are RFU; 15 in a LinkADRReq means "keep the current power" (LoRaWAN 1.0.4 §5.3).
MAX_EIRP_DBM = const(16)
MAX_TX_POWER_INDEX = const(7)
TX_POWER_KEEP = const(15)
DR_KEEP = const(15)

# RP002 §2.4.4: CFList type 0 carries five extra channel frequencies (3 bytes LE each, in 100 Hz units)
# for channel indexes 3..7, then one CFListType byte.
CFLIST_TYPE_FREQUENCIES = const(0)

# ETSI EN 300 220-2 V3.2.1 Table B.1 / ERC Rec 70-03 Annex 1: sub-bands of 863-870 MHz and the duty cycle
# each allows a device (RP002 §2.4.2 requires the device to respect them). (low Hz, high Hz, 1/duty, name).
# The duty cycle is stored as its inverse so that time-off = airtime * (inverse - 1) stays integral.
SUB_BANDS = (
    (863000000, 865000000, 1000, "h1.3 (0.1 %)"),
    (865000000, 868000000, 100, "h1.4 / g (1 %)"),
    (868000000, 868600000, 100, "h1.5 / g1 (1 %)"),
    (868700000, 869200000, 1000, "h1.6 / g2 (0.1 %)"),
    (869400000, 869650000, 10, "h1.7 / g3 (10 %)"),
    (869700000, 870000000, 100, "h1.9 / g4 (1 %)"),
)


def dr_params(dr):
    """(spreading factor, bandwidth Hz) of data rate ``dr``; ValueError("dr") when unsupported."""
    if not 0 <= dr < len(DATA_RATES) or DATA_RATES[dr] is None:
        raise ValueError("dr")
    return DATA_RATES[dr]


def dr_supported(dr):
    return 0 <= dr < len(DATA_RATES) and DATA_RATES[dr] is not None


def max_app_payload(dr, repeater=False):
    """Largest FRMPayload (bytes, FOpts empty) at ``dr`` (RP002 §2.4.6)."""
    table = MAX_APP_PAYLOAD_REPEATER if repeater else MAX_APP_PAYLOAD
    if not 0 <= dr < len(table):
        raise ValueError("dr")
    return table[dr]


def max_mac_payload(dr, repeater=False):
    """Largest MACPayload (FHDR + FPort + FRMPayload, bytes) at ``dr`` (RP002 §2.4.6)."""
    table = MAX_MAC_PAYLOAD_REPEATER if repeater else MAX_MAC_PAYLOAD
    if not 0 <= dr < len(table):
        raise ValueError("dr")
    return table[dr]


def rx1_dr(uplink_dr, offset):
    """RX1 data rate for an uplink at ``uplink_dr`` with RX1DROffset ``offset`` (RP002 §2.4.7)."""
    if not 0 <= offset <= MAX_RX1_DR_OFFSET:
        raise ValueError("rx1_dr_offset")
    dr = uplink_dr - offset
    return max(MIN_DR, dr)


def tx_power_dbm(index, max_eirp_dbm=MAX_EIRP_DBM):
    """EIRP in dBm of TXPower ``index`` 0..7 (RP002 §2.4.3: MaxEIRP - 2 dB per step)."""
    if not 0 <= index <= MAX_TX_POWER_INDEX:
        raise ValueError("tx_power")
    return max_eirp_dbm - 2 * index


def valid_freq(freq_hz):
    """True when ``freq_hz`` lies in 863-870 MHz and in a sub-band the device may transmit in."""
    return FREQ_MIN_HZ <= freq_hz <= FREQ_MAX_HZ and sub_band(freq_hz) is not None


def sub_band(freq_hz):
    """Index into SUB_BANDS of the band containing ``freq_hz``, or None (e.g. the 868.6-868.7 gap)."""
    for i in range(len(SUB_BANDS)):
        lo, hi, _, _ = SUB_BANDS[i]
        if lo <= freq_hz < hi or (freq_hz == hi and i == len(SUB_BANDS) - 1):
            return i
    return None


def default_channels():
    """A fresh channel plan: list of MAX_CHANNELS entries, [freq_hz, min_dr, max_dr] or None.

    The downlink (RX1) frequency of a channel equals its uplink frequency unless a DlChannelReq
    changes it; that override lives in the session, not here.
    """
    chans = [None] * MAX_CHANNELS
    for i in range(len(DEFAULT_CHANNELS)):
        chans[i] = [DEFAULT_CHANNELS[i], DEFAULT_CHANNEL_DR[0], DEFAULT_CHANNEL_DR[1]]
    return chans


def parse_cflist(cflist):
    """Frequencies (Hz) for channels 3..7 from a 16-byte join-accept CFList (RP002 §2.4.4).

    A frequency of 0 means "channel disabled". Returns [] for a CFList of another type, which an EU868
    device ignores. ValueError("cflist") when the length is wrong or a frequency is outside the band.
    """
    if cflist is None or len(cflist) == 0:
        return []
    if len(cflist) != 16:
        raise ValueError("cflist")
    if cflist[15] != CFLIST_TYPE_FREQUENCIES:
        return []
    freqs = []
    for i in range(5):
        f = (cflist[3 * i] | (cflist[3 * i + 1] << 8) | (cflist[3 * i + 2] << 16)) * 100
        if f and not valid_freq(f):
            raise ValueError("cflist")
        freqs.append(f)
    return freqs


def apply_cflist(channels, cflist):
    """Add the CFList channels (3..7, DR0..DR5) to ``channels`` in place; returns ``channels``."""
    freqs = parse_cflist(cflist)
    for i in range(len(freqs)):
        f = freqs[i]
        channels[3 + i] = [f, DEFAULT_CHANNEL_DR[0], DEFAULT_CHANNEL_DR[1]] if f else None
    return channels


def channel_mask_apply(channels, mask, ch_mask_cntl):
    """New enabled-channel bitmask for a LinkADRReq ChMask/ChMaskCntl (RP002 §2.4.5).

    ChMaskCntl 0: ``mask`` applies to channels 0..15; 6: every defined channel on, ``mask`` ignored; 1..5 and 7 are RFU.
    Returns the new mask, or None when the request must be NACKed (RFU control, a masked-on channel
    that is not defined, or no channel left enabled).
    """
    if ch_mask_cntl == 0:
        new = mask
    elif ch_mask_cntl == 6:
        new = 0
        for i in range(MAX_CHANNELS):
            if channels[i] is not None:
                new |= 1 << i
    else:
        return None
    for i in range(MAX_CHANNELS):
        if new & (1 << i) and channels[i] is None:
            return None
    if new == 0:
        return None
    return new
