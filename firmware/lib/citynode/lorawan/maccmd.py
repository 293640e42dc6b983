# LoRaWAN 1.0.4 MAC commands (§5 and its CID table): encode and decode, both directions, from two tables.
#
# A command is (name, fields) where fields is a dict of ints/bools named after the spec's fields.
# Direction: `uplink=True` means commands as a device sends them (LinkCheckReq, LinkADRAns, ...),
# `uplink=False` as the network sends them (LinkCheckAns, LinkADRReq, ...). The CID alone does not say
# which: the same CID is the Req one way and the Ans the other.
#
# §5: the length of a MAC command is implied by its CID, so "the first unknown MAC command terminates
# the processing of the MAC command sequence": decode() returns the commands parsed before an unknown
# (or truncated) one together with the reason, so the MAC still applies and answers those.
from citynode.lorawan import MACCommandError

# CID, name sent by the device (uplink), its payload length, name sent by the network, its length.
# §5 CID table (0x0B-0x0C, 0x0E-0x0F RFU in 1.0.4; 0x80-0xFF proprietary) plus the Class B commands,
# decoded so that a frame is not cut short by them.
TABLE = (
    (0x02, "LinkCheckReq", 0, "LinkCheckAns", 2),  # §5.1
    (0x03, "LinkADRAns", 1, "LinkADRReq", 4),  # §5.2
    (0x04, "DutyCycleAns", 0, "DutyCycleReq", 1),  # §5.3
    (0x05, "RXParamSetupAns", 1, "RXParamSetupReq", 4),  # §5.4
    (0x06, "DevStatusAns", 2, "DevStatusReq", 0),  # §5.5
    (0x07, "NewChannelAns", 1, "NewChannelReq", 5),  # §5.6
    (0x08, "RXTimingSetupAns", 0, "RXTimingSetupReq", 1),  # §5.7
    (0x09, "TxParamSetupAns", 0, "TxParamSetupReq", 1),  # §5.8 (EU868 devices do not implement it, RP002)
    (0x0A, "DlChannelAns", 1, "DlChannelReq", 4),  # §5.6
    (0x0D, "DeviceTimeReq", 0, "DeviceTimeAns", 5),  # §5.9
    (0x10, "PingSlotInfoReq", 1, "PingSlotInfoAns", 0),  # Class B
    (0x11, "PingSlotChannelAns", 1, "PingSlotChannelReq", 4),  # Class B
    (0x12, "BeaconTimingReq", 0, "BeaconTimingAns", 3),  # Class B, deprecated
    (0x13, "BeaconFreqAns", 1, "BeaconFreqReq", 3),  # Class B
)

# name -> payload layout, as in the spec's payload tables: (field, byte offset, byte count, bit shift,
# mask, kind); kind: "uint", "bool" (a flag bit), "signed" (two's complement in its width), "hz"
# (frequency: 100 Hz units on air, Hz in the dict), "s" (RX delay in seconds: 0 on air means 1 s, §5.7).
FIELDS = {
    # §5.1: Margin in dB above the demodulation floor (255 reserved), GwCnt gateways that heard it
    "LinkCheckAns": (("margin_db", 0, 1, 0, 0xFF, "uint"), ("gw_cnt", 1, 1, 0, 0xFF, "uint")),
    # §5.2: DataRate_TXPower | ChMask | Redundancy (RFU | ChMaskCntl | NbTrans)
    "LinkADRReq": (
        ("data_rate", 0, 1, 4, 0x0F, "uint"),
        ("tx_power", 0, 1, 0, 0x0F, "uint"),
        ("ch_mask", 1, 2, 0, 0xFFFF, "uint"),
        ("ch_mask_cntl", 3, 1, 4, 0x07, "uint"),
        ("nb_trans", 3, 1, 0, 0x0F, "uint"),
    ),
    "LinkADRAns": (
        ("power_ack", 0, 1, 2, 1, "bool"),
        ("data_rate_ack", 0, 1, 1, 1, "bool"),
        ("channel_mask_ack", 0, 1, 0, 1, "bool"),
    ),
    # §5.3: aggregated duty cycle = 1 / 2**max_duty_cycle
    "DutyCycleReq": (("max_duty_cycle", 0, 1, 0, 0x0F, "uint"),),
    # §5.4: DLSettings (RFU | RX1DRoffset | RX2DataRate) | Frequency
    "RXParamSetupReq": (
        ("rx1_dr_offset", 0, 1, 4, 0x07, "uint"),
        ("rx2_data_rate", 0, 1, 0, 0x0F, "uint"),
        ("frequency_hz", 1, 3, 0, 0xFFFFFF, "hz"),
    ),
    "RXParamSetupAns": (
        ("rx1_dr_offset_ack", 0, 1, 2, 1, "bool"),
        ("rx2_data_rate_ack", 0, 1, 1, 1, "bool"),
        ("channel_ack", 0, 1, 0, 1, "bool"),
    ),
    # §5.5: Battery 0 = external power, 1..254 = level, 255 = cannot measure; RadioStatus = SNR in dB
    "DevStatusAns": (("battery", 0, 1, 0, 0xFF, "uint"), ("snr_db", 1, 1, 0, 0x3F, "signed")),
    # §5.6: ChIndex | Freq (0 disables the channel) | DrRange (MaxDR | MinDR)
    "NewChannelReq": (
        ("ch_index", 0, 1, 0, 0xFF, "uint"),
        ("frequency_hz", 1, 3, 0, 0xFFFFFF, "hz"),
        ("max_dr", 4, 1, 4, 0x0F, "uint"),
        ("min_dr", 4, 1, 0, 0x0F, "uint"),
    ),
    "NewChannelAns": (
        ("data_rate_range_ok", 0, 1, 1, 1, "bool"),
        ("channel_frequency_ok", 0, 1, 0, 1, "bool"),
    ),
    # §5.7: RX1 delay in seconds
    "RXTimingSetupReq": (("delay_s", 0, 1, 0, 0x0F, "s"),),
    # §5.8: EIRP_DwellTime (RFU | DownlinkDwellTime | UplinkDwellTime | MaxEIRP index)
    "TxParamSetupReq": (
        ("downlink_dwell_time", 0, 1, 5, 1, "bool"),
        ("uplink_dwell_time", 0, 1, 4, 1, "bool"),
        ("max_eirp", 0, 1, 0, 0x0F, "uint"),
    ),
    # §5.6 (DlChannelReq)
    "DlChannelReq": (("ch_index", 0, 1, 0, 0xFF, "uint"), ("frequency_hz", 1, 3, 0, 0xFFFFFF, "hz")),
    "DlChannelAns": (
        ("uplink_frequency_exists", 0, 1, 1, 1, "bool"),
        ("channel_frequency_ok", 0, 1, 0, 1, "bool"),
    ),
    # §5.9: seconds since the GPS epoch (uint32) and fractional second in 1/256 s
    "DeviceTimeAns": (("gps_seconds", 0, 4, 0, 0xFFFFFFFF, "uint"), ("fraction_256", 4, 1, 0, 0xFF, "uint")),
    # Class B
    "PingSlotInfoReq": (("periodicity", 0, 1, 0, 0x07, "uint"),),
    "PingSlotChannelReq": (("frequency_hz", 0, 3, 0, 0xFFFFFF, "hz"), ("data_rate", 3, 1, 0, 0x0F, "uint")),
    "PingSlotChannelAns": (
        ("data_rate_ok", 0, 1, 1, 1, "bool"),
        ("channel_frequency_ok", 0, 1, 0, 1, "bool"),
    ),
    "BeaconTimingAns": (("delay", 0, 2, 0, 0xFFFF, "uint"), ("channel", 2, 1, 0, 0xFF, "uint")),
    "BeaconFreqReq": (("frequency_hz", 0, 3, 0, 0xFFFFFF, "hz"),),
    "BeaconFreqAns": (("beacon_frequency_ok", 0, 1, 0, 1, "bool"),),
}

# §5.8: MaxEIRP index -> dBm
MAX_EIRP_DBM = (8, 10, 12, 13, 14, 16, 18, 20, 21, 24, 26, 27, 29, 30, 33, 36)


def _entry(name):
    for row in TABLE:
        if row[1] == name:
            return row[0], True, row[2]
        if row[3] == name:
            return row[0], False, row[4]
    raise MACCommandError("MAC command %r is not a LoRaWAN 1.0.4 command" % (name,))


def info(name):
    """(CID, sent_by_device, payload length in bytes) of a command name; MACCommandError if unknown."""
    return _entry(name)


def size(name):
    """Bytes a command takes in FOpts or on FPort 0: CID + payload."""
    return 1 + _entry(name)[2]


def layout(name):
    """The payload layout of a command: a tuple of (field, byte offset, byte count, bit shift, mask, kind)."""
    return FIELDS.get(name, ())


def _get(data, pos, n):
    v = 0
    for i in range(n - 1, -1, -1):
        v = (v << 8) | data[pos + i]
    return v


def _decode_fields(name, data, pos):
    out = {}
    for field, off, n, shift, mask, kind in layout(name):
        v = (_get(data, pos + off, n) >> shift) & mask
        if kind == "bool":
            v = bool(v)
        elif kind == "signed":
            top = (mask + 1) >> 1
            if v >= top:
                v -= mask + 1
        elif kind == "hz":
            v *= 100
        elif kind == "s" and v == 0:
            v = 1
        out[field] = v
    return out


def decode(data, uplink=False):
    """§5: parse a sequence of MAC commands (FOpts, or a decrypted FPort 0 payload).

    Returns (commands, problem): commands is a list of (name, fields) in order; problem is None, or a
    string saying why parsing stopped (unknown CID, or a command cut short). ``uplink`` says who sent
    them: False (default) for commands received by a device.
    """
    cmds = []
    pos = 0
    n = len(data)
    while pos < n:
        cid = data[pos]
        row = None
        for r in TABLE:
            if r[0] == cid:
                row = r
                break
        if row is None:
            kind = "proprietary" if cid >= 0x80 else "unknown"
            return cmds, "%s CID 0x%02X at byte %d ends MAC command processing (§5); %d bytes ignored" % (
                kind, cid, pos, n - pos)
        name, length = (row[1], row[2]) if uplink else (row[3], row[4])
        if pos + 1 + length > n:
            return cmds, "%s at byte %d: needs %d payload bytes, only %d left" % (
                name, pos, length, n - pos - 1)
        cmds.append((name, _decode_fields(name, data, pos + 1)))
        pos += 1 + length
    return cmds, None


def decode_strict(data, uplink=False):
    """Like decode() but raises MACCommandError instead of returning a problem."""
    cmds, problem = decode(data, uplink)
    if problem:
        raise MACCommandError(problem)
    return cmds


def encode(name, fields=None):
    """One command as bytes (CID + payload). Missing fields are 0/False; out-of-range values raise
    MACCommandError naming the command and the field."""
    cid, _, length = _entry(name)
    fields = fields or {}
    spec = layout(name)
    known = [f[0] for f in spec]
    for k in fields:
        if k not in known:
            raise MACCommandError("%s: no field %r (fields: %s)" % (name, k, ", ".join(known) or "none"))
    buf = bytearray(1 + length)
    buf[0] = cid
    for field, off, n, shift, mask, kind in spec:
        v = fields.get(field, 0)
        if kind == "bool":
            v = 1 if v else 0
        elif kind == "signed":
            top = (mask + 1) >> 1
            if not -top <= v < top:
                raise MACCommandError("%s.%s: %r not in %d..%d" % (name, field, v, -top, top - 1))
            v &= mask
        elif kind == "hz":
            if v % 100:
                raise MACCommandError("%s.%s: %r Hz is not a multiple of 100 Hz" % (name, field, v))
            v //= 100
        elif kind == "s" and not 1 <= v <= 15 and v != 0:
            raise MACCommandError("%s.%s: %r s not in 1..15" % (name, field, v))
        if not 0 <= v <= mask:
            top = mask * (100 if kind == "hz" else 1)
            raise MACCommandError("%s.%s: %r does not fit (max %d)" % (name, field, fields.get(field), top))
        word = _get(buf, 1 + off, n) | (v << shift)
        for i in range(n):
            buf[1 + off + i] = (word >> (8 * i)) & 0xFF
    return bytes(buf)


def encode_all(commands):
    """A sequence of (name, fields) as one byte string, e.g. the answers to put in FOpts."""
    return b"".join(encode(name, fields) for name, fields in commands)
