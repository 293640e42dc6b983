# LoRaWAN 1.0.4 PHYPayload: build and parse join-request, join-accept and data frames.
#
#   PHYPayload = MHDR | MACPayload | MIC                   (§4.1, §4.2)
#   MACPayload = FHDR | [FPort | FRMPayload]               (§4.3)
#   FHDR       = DevAddr(4) | FCtrl(1) | FCnt(2) | FOpts(0..15)   (§4.3.1)
#
# Conventions: keys are 16-byte bytes; DevAddr is an int (written MSB first like ChirpStack shows it,
# little endian on air); JoinEUI/DevEUI are 8-byte bytes MSB first (as on the label and in ChirpStack),
# reversed on air; FCnt is the 32-bit counter (only its 16 low bits travel, §4.3.1.5).
# Errors: FrameError (malformed), MICError (wrong key / corrupted), ReplayError (old counter).
from citynode.compat import const
from citynode.lorawan import FrameError, MICError, ReplayError, crypto

# §4.2.1 Table 2: MType (MHDR bits 7..5)
JOIN_REQUEST = const(0)
JOIN_ACCEPT = const(1)
UNCONFIRMED_UP = const(2)
UNCONFIRMED_DOWN = const(3)
CONFIRMED_UP = const(4)
CONFIRMED_DOWN = const(5)
RFU = const(6)  # Rejoin-request in LoRaWAN 1.1; RFU in 1.0.4
PROPRIETARY = const(7)

MTYPE_NAMES = (
    "JoinRequest",
    "JoinAccept",
    "UnconfirmedDataUp",
    "UnconfirmedDataDown",
    "ConfirmedDataUp",
    "ConfirmedDataDown",
    "RFU",
    "Proprietary",
)

_MAJOR_R1 = const(0)  # §4.2.2: Major 00 = LoRaWAN R1; the rest RFU
_FCTRL_ADR = const(0x80)  # §4.3.1.1 (uplink and downlink)
_FCTRL_ADRACKREQ = const(0x40)  # §4.3.1.1 uplink only (RFU in downlinks)
_FCTRL_ACK = const(0x20)  # §4.3.1.2
_FCTRL_FPENDING = const(0x10)  # §4.3.1.4 downlink: FPending
_FCTRL_CLASSB = const(0x10)  # §4.3.1.1 uplink: ClassB (same bit)
_FOPTS_MAX = const(15)  # §4.3.1.6: FOptsLen is 4 bits
_DATA_MIN = const(12)  # MHDR 1 + FHDR 7 + MIC 4
_PHY_MAX = const(255)  # a LoRa PHY payload length fits one byte (SX1276 RegPayloadLength)
_JOIN_REQUEST_LEN = const(23)  # §6.2.5: MHDR 1 + JoinEUI 8 + DevEUI 8 + DevNonce 2 + MIC 4
_JOIN_ACCEPT_LEN = const(17)  # §6.2.6: MHDR 1 + 3 + 3 + 4 + 1 + 1 + MIC 4
_JOIN_ACCEPT_CFLIST_LEN = const(33)  # ... + CFList 16
_FCNT_MAX = const(0xFFFFFFFF)


def _le(buf, pos, n):
    v = 0
    for i in range(n - 1, -1, -1):
        v = (v << 8) | buf[pos + i]
    return v


def _put_le(buf, pos, value, n):
    for i in range(n):
        buf[pos + i] = (value >> (8 * i)) & 0xFF


def _hex(b):
    return "".join("%02x" % x for x in b)


def _check_len(value, n, name):
    if value is None or len(value) != n:
        raise FrameError("%s: need %d bytes, got %s" % (name, n, "none" if value is None else len(value)))


def mhdr(mtype):
    """§4.2: the MHDR byte for ``mtype`` (Major = LoRaWAN R1)."""
    return ((mtype & 0x07) << 5) | _MAJOR_R1


def mtype_of(phy):
    """§4.2: MType of a PHYPayload. Raises FrameError on an empty frame or an unknown Major."""
    if not phy:
        raise FrameError("PHYPayload: empty frame")
    if phy[0] & 0x03 != _MAJOR_R1:
        raise FrameError("MHDR: Major %d is not LoRaWAN R1 (0)" % (phy[0] & 0x03))
    return phy[0] >> 5


def reconstruct_fcnt(fcnt16, last):
    """§4.3.1.5: the 32-bit counter whose 16 low bits are ``fcnt16``, closest above ``last``.

    ``last`` is the last accepted 32-bit counter in that direction (None when none since the session
    started). Returns the candidate in the same 64 Ki epoch when it is greater than ``last``, else in
    the next epoch (a roll-over of the 16 bits on air).
    """
    if last is None:
        return fcnt16
    c = (last & 0xFFFF0000) | fcnt16
    if c <= last:
        c += 0x10000
    return c


# ---------------------------------------------------------------- join-request (§6.2.5)


class JoinRequest:
    """A parsed join-request: ``join_eui``/``dev_eui`` (8 bytes, MSB first), ``dev_nonce`` (int),
    ``mic`` (4 bytes) and ``mic_ok`` (True/False, or None when no AppKey was given)."""

    def __init__(self, join_eui, dev_eui, dev_nonce, mic, mic_ok):
        self.join_eui = join_eui
        self.dev_eui = dev_eui
        self.dev_nonce = dev_nonce
        self.mic = mic
        self.mic_ok = mic_ok


def build_join_request(app_key, join_eui, dev_eui, dev_nonce):
    """§6.2.5: MHDR | JoinEUI | DevEUI | DevNonce | MIC (23 bytes), MIC with the AppKey."""
    _check_len(join_eui, 8, "JoinEUI")
    _check_len(dev_eui, 8, "DevEUI")
    if not 0 <= dev_nonce <= 0xFFFF:
        raise FrameError("DevNonce: %r is not a 16-bit value" % (dev_nonce,))
    buf = bytearray(_JOIN_REQUEST_LEN)
    buf[0] = mhdr(JOIN_REQUEST)
    for i in range(8):  # EUIs travel little endian (§1.2: octet order)
        buf[1 + i] = join_eui[7 - i]
        buf[9 + i] = dev_eui[7 - i]
    _put_le(buf, 17, dev_nonce, 2)
    buf[19:23] = crypto.join_mic(app_key, buf, 19)
    return bytes(buf)


def parse_join_request(phy, app_key=None):
    """Parse a join-request (network side, CLI); with ``app_key`` the MIC is checked (MICError)."""
    if mtype_of(phy) != JOIN_REQUEST:
        raise FrameError("MType: %s, not JoinRequest" % MTYPE_NAMES[phy[0] >> 5])
    if len(phy) != _JOIN_REQUEST_LEN:
        raise FrameError("join-request: need 23 bytes, got %d" % len(phy))
    join_eui = bytes(phy[8 - i] for i in range(8))
    dev_eui = bytes(phy[16 - i] for i in range(8))
    mic = bytes(phy[19:23])
    mic_ok = None
    if app_key is not None:
        mic_ok = crypto.join_mic(app_key, phy, 19) == mic
        if not mic_ok:
            raise MICError("join-request: MIC mismatch (wrong AppKey or corrupted frame)")
    return JoinRequest(join_eui, dev_eui, _le(phy, 17, 2), mic, mic_ok)


# ---------------------------------------------------------------- join-accept (§6.2.6)


class JoinAccept:
    """A decrypted, MIC-checked join-accept.

    ``join_nonce``, ``net_id``, ``dev_addr`` (ints); ``rx1_dr_offset``, ``rx2_dr`` (DLSettings,
    §5.4 / §6.2.6); ``rx_delay_s`` (RXDelay in seconds, 0 on air means 1 s, §5.7); ``cflist``
    (16 raw bytes or None); ``cflist_type`` (RP002: 0 = frequencies, 1 = channel masks as in US915, or
    None); ``frequencies`` (type 0: five ints in Hz for channels 3..7, 0 = no channel) and
    ``ch_masks`` (type 1: list of 16-bit masks), else None; ``mic`` (4 bytes).
    """

    def __init__(self):
        self.join_nonce = 0
        self.net_id = 0
        self.dev_addr = 0
        self.rx1_dr_offset = 0
        self.rx2_dr = 0
        self.rx_delay_s = 1
        self.cflist = None
        self.cflist_type = None
        self.frequencies = None
        self.ch_masks = None
        self.mic = b""


def build_join_accept(app_key, join_nonce, net_id, dev_addr, rx1_dr_offset=0, rx2_dr=0, rx_delay_s=1,
                      frequencies=None, cflist=None):
    """§6.2.6, network side (network-server simulator, tests): an encrypted join-accept.

    ``frequencies``: up to five channel frequencies in Hz for a CFList of type 0 (RP002 §2.4.4, EU868
    channels 3..7); or ``cflist``: 16 raw bytes. At most one of them.
    """
    if frequencies is not None and cflist is not None:
        raise FrameError("CFList: give frequencies or cflist, not both")
    if not 0 <= rx1_dr_offset <= 7:
        raise FrameError("DLSettings.RX1DRoffset: %r not in 0..7" % (rx1_dr_offset,))
    if not 0 <= rx2_dr <= 15:
        raise FrameError("DLSettings.RX2DataRate: %r not in 0..15" % (rx2_dr,))
    if not 0 <= rx_delay_s <= 15:
        raise FrameError("RXDelay: %r s not in 0..15" % (rx_delay_s,))
    if frequencies is not None:
        if len(frequencies) > 5:
            raise FrameError("CFList: at most 5 frequencies, got %d" % len(frequencies))
        cflist = bytearray(16)  # last byte 0 = CFListType 0
        for i, f in enumerate(frequencies):
            if f % 100 or not 0 <= f // 100 <= 0xFFFFFF:
                raise FrameError("CFList frequency %r Hz: must be a multiple of 100 Hz below 1.68 GHz" % (f,))
            _put_le(cflist, 3 * i, f // 100, 3)
    if cflist is not None:
        _check_len(cflist, 16, "CFList")
    n = _JOIN_ACCEPT_CFLIST_LEN if cflist is not None else _JOIN_ACCEPT_LEN
    buf = bytearray(n)
    buf[0] = mhdr(JOIN_ACCEPT)
    _put_le(buf, 1, join_nonce, 3)
    _put_le(buf, 4, net_id, 3)
    _put_le(buf, 7, dev_addr, 4)
    buf[11] = (rx1_dr_offset << 4) | rx2_dr
    buf[12] = rx_delay_s
    if cflist is not None:
        buf[13:29] = cflist
    buf[n - 4:n] = crypto.join_mic(app_key, buf, n - 4)
    return crypto.encrypt_join_accept(app_key, buf)


def parse_join_accept(app_key, phy):
    """§6.2.6: decrypt a join-accept with the AppKey, check its MIC and unpack it.

    Raises FrameError (wrong MType or length) or MICError (wrong AppKey, or not meant for this
    device). The caller derives the session keys with crypto.derive_session_keys(app_key,
    ja.join_nonce, ja.net_id, dev_nonce) and checks ja.join_nonce with crypto.check_join_nonce.
    """
    if mtype_of(phy) != JOIN_ACCEPT:
        raise FrameError("MType: %s, not JoinAccept" % MTYPE_NAMES[phy[0] >> 5])
    n = len(phy)
    if n != _JOIN_ACCEPT_LEN and n != _JOIN_ACCEPT_CFLIST_LEN:
        raise FrameError("join-accept: need 17 or 33 bytes, got %d" % n)
    clear = crypto.decrypt_join_accept(app_key, phy)
    mic = clear[n - 4:]
    if crypto.join_mic(app_key, clear, n - 4) != mic:
        raise MICError("join-accept: MIC mismatch (wrong AppKey, or a join-accept for another device)")
    ja = JoinAccept()
    ja.join_nonce = _le(clear, 1, 3)
    ja.net_id = _le(clear, 4, 3)
    ja.dev_addr = _le(clear, 7, 4)
    ja.rx1_dr_offset = (clear[11] >> 4) & 0x07  # bit 7 is RFU in 1.0.4 (OptNeg in 1.1)
    ja.rx2_dr = clear[11] & 0x0F
    delay = clear[12] & 0x0F  # §5.7 Table: Del 0 and 1 both mean 1 s
    ja.rx_delay_s = delay if delay else 1
    ja.mic = mic
    if n == _JOIN_ACCEPT_CFLIST_LEN:
        cf = clear[13:29]
        ja.cflist = cf
        ja.cflist_type = cf[15]
        if cf[15] == 0:  # RP002 §2.4.4: five 24-bit frequencies in 100 Hz steps, then CFListType
            ja.frequencies = [_le(cf, 3 * i, 3) * 100 for i in range(5)]
        elif cf[15] == 1:  # RP002 US902-928 style: ChMask0..4, 16 bit each
            ja.ch_masks = [_le(cf, 2 * i, 2) for i in range(5)]
    return ja


# ---------------------------------------------------------------- data frames (§4.3)


class DataFrame:
    """A data frame. From unpack_data(): structure only (``payload`` still encrypted, ``fcnt`` the 16
    bits on air, ``mic_ok`` None). From parse_downlink()/parse_uplink(): MIC checked, ``fcnt`` the
    reconstructed 32-bit counter, ``payload`` decrypted (AppSKey for FPort > 0, NwkSKey for FPort 0).

    Fields: ``mtype``, ``dev_addr``, ``adr``, ``adr_ack_req`` (uplink), ``ack``, ``fpending``
    (downlink), ``class_b`` (uplink), ``fopts`` (bytes, in clear in 1.0.x), ``fcnt``, ``fport``
    (int or None), ``payload`` (bytes), ``mic`` (4 bytes), ``mic_ok``.
    """

    def __init__(self):
        self.mtype = UNCONFIRMED_UP
        self.dev_addr = 0
        self.adr = False
        self.adr_ack_req = False
        self.ack = False
        self.fpending = False
        self.class_b = False
        self.fopts = b""
        self.fcnt = 0
        self.fport = None
        self.payload = b""
        self.mic = b""
        self.mic_ok = None

    @property
    def uplink(self):
        return self.mtype == UNCONFIRMED_UP or self.mtype == CONFIRMED_UP

    @property
    def confirmed(self):
        return self.mtype == CONFIRMED_UP or self.mtype == CONFIRMED_DOWN


def build_data(mtype, nwkskey, appskey, dev_addr, fcnt, fport=None, payload=b"", fopts=b"", adr=False,
               adr_ack_req=False, ack=False, fpending=False, class_b=False):
    """§4.3: build a data frame of ``mtype`` (UNCONFIRMED_UP .. CONFIRMED_DOWN).

    ``fcnt`` is the 32-bit counter (its 16 low bits go on air, all 32 into the MIC and the
    encryption). ``fopts``: MAC commands piggy-backed in FHDR (0..15 bytes, clear). ``fport`` None
    means no FPort and no FRMPayload; FPort 0 carries MAC commands encrypted with the NwkSKey.
    """
    if mtype < UNCONFIRMED_UP or mtype > CONFIRMED_DOWN:
        raise FrameError("MType: %r is not a data frame type" % (mtype,))
    up = mtype == UNCONFIRMED_UP or mtype == CONFIRMED_UP
    if not 0 <= dev_addr <= 0xFFFFFFFF:
        raise FrameError("DevAddr: %r is not a 32-bit value" % (dev_addr,))
    if not 0 <= fcnt <= _FCNT_MAX:
        raise FrameError("FCnt: %r is not a 32-bit counter value" % (fcnt,))
    nfo = len(fopts)
    if nfo > _FOPTS_MAX:
        raise FrameError("FOpts: %d bytes, at most 15 fit (§4.3.1.6); send them on FPort 0" % nfo)
    np = len(payload)
    if fport is None:
        if np:
            raise FrameError("FPort: a FRMPayload needs an FPort (§4.3.2)")
    elif not 0 <= fport <= 255:
        raise FrameError("FPort: %r not in 0..255" % (fport,))
    elif fport == 0 and nfo:
        raise FrameError("FOpts: MAC commands may not be in FOpts and on FPort 0 at once (§4.3.1.6)")
    n = 8 + nfo + (0 if fport is None else 1 + np) + 4
    if n > _PHY_MAX:
        raise FrameError("PHYPayload: %d bytes is longer than 255" % n)
    buf = bytearray(n)
    buf[0] = mhdr(mtype)
    _put_le(buf, 1, dev_addr, 4)
    fctrl = nfo
    if adr:
        fctrl |= _FCTRL_ADR
    if ack:
        fctrl |= _FCTRL_ACK
    if up:
        if adr_ack_req:
            fctrl |= _FCTRL_ADRACKREQ
        if class_b:
            fctrl |= _FCTRL_CLASSB
    elif fpending:
        fctrl |= _FCTRL_FPENDING
    buf[5] = fctrl
    _put_le(buf, 6, fcnt & 0xFFFF, 2)
    pos = 8
    if nfo:
        buf[8:8 + nfo] = fopts
        pos += nfo
    if fport is not None:
        buf[pos] = fport
        pos += 1
        if np:
            key = nwkskey if fport == 0 else appskey
            crypto.crypt_payload(key, dev_addr, fcnt, not up, payload, memoryview(buf)[pos:pos + np])
            pos += np
    buf[pos:pos + 4] = crypto.data_mic(nwkskey, buf, dev_addr, fcnt, not up, pos)
    return bytes(buf)


def build_uplink(nwkskey, appskey, dev_addr, fcnt, fport=None, payload=b"", fopts=b"", confirmed=False,
                 adr=False, adr_ack_req=False, ack=False, class_b=False):
    """§4.3: an (un)confirmed data uplink; see build_data."""
    return build_data(CONFIRMED_UP if confirmed else UNCONFIRMED_UP, nwkskey, appskey, dev_addr, fcnt, fport,
                      payload, fopts, adr=adr, adr_ack_req=adr_ack_req, ack=ack, class_b=class_b)


def build_downlink(nwkskey, appskey, dev_addr, fcnt, fport=None, payload=b"", fopts=b"", confirmed=False,
                   adr=False, ack=False, fpending=False):
    """§4.3: an (un)confirmed data downlink (network-server simulator, tests); see build_data."""
    return build_data(CONFIRMED_DOWN if confirmed else UNCONFIRMED_DOWN, nwkskey, appskey, dev_addr, fcnt,
                      fport, payload, fopts, adr=adr, ack=ack, fpending=fpending)


def unpack_data(phy):
    """§4.3: split a data frame into its fields without keys (payload stays encrypted).

    Raises FrameError when the frame is too short, not a data frame, or FOptsLen runs past the end.
    """
    mt = mtype_of(phy)
    if mt < UNCONFIRMED_UP or mt > CONFIRMED_DOWN:
        raise FrameError("MType: %s is not a data frame" % MTYPE_NAMES[mt])
    n = len(phy)
    if n < _DATA_MIN:
        raise FrameError("data frame: %d bytes, at least 12 needed (MHDR, FHDR, MIC)" % n)
    f = DataFrame()
    f.mtype = mt
    f.dev_addr = _le(phy, 1, 4)
    fctrl = phy[5]
    f.adr = bool(fctrl & _FCTRL_ADR)
    f.ack = bool(fctrl & _FCTRL_ACK)
    if f.uplink:
        f.adr_ack_req = bool(fctrl & _FCTRL_ADRACKREQ)
        f.class_b = bool(fctrl & _FCTRL_CLASSB)
    else:
        f.fpending = bool(fctrl & _FCTRL_FPENDING)
    nfo = fctrl & 0x0F
    f.fcnt = _le(phy, 6, 2)
    end = n - 4
    pos = 8 + nfo
    if pos > end:
        raise FrameError("FOptsLen: %d bytes of FOpts do not fit in a %d-byte frame" % (nfo, n))
    f.fopts = bytes(phy[8:pos])
    if pos < end:
        f.fport = phy[pos]
        f.payload = bytes(phy[pos + 1:end])
        if f.fport == 0 and nfo:
            raise FrameError("FOpts: MAC commands in FOpts and on FPort 0 at once; frame ignored (§4.3.1.6)")
    f.mic = bytes(phy[end:])
    return f


def _parse_data(phy, nwkskey, appskey, dev_addr, last_fcnt, want_up):
    f = unpack_data(phy)
    if f.uplink != want_up:
        want = "an uplink" if want_up else "a downlink"
        raise FrameError("MType: %s, expected %s" % (MTYPE_NAMES[f.mtype], want))
    if dev_addr is not None and f.dev_addr != dev_addr:
        raise FrameError("DevAddr: frame is for %08X, not %08X" % (f.dev_addr, dev_addr))
    down = not want_up
    end = len(phy) - 4
    c = reconstruct_fcnt(f.fcnt, last_fcnt)
    if last_fcnt is not None:
        # §4.3.1.5: try the counter in the last one's epoch first; a valid MIC there means a genuine
        # frame whose counter is not above the last accepted one: a replay, reported as such.
        old = (last_fcnt & 0xFFFF0000) | f.fcnt
        if old <= last_fcnt and crypto.data_mic(nwkskey, phy, f.dev_addr, old, down, end) == f.mic:
            raise ReplayError("FCnt %d is not above the last accepted %d: replayed or old frame" % (
                old, last_fcnt))
    if c > _FCNT_MAX:
        # §4.3.1.5: a 32-bit counter never wraps; the session has to be renewed (a new join).
        raise ReplayError("FCnt space exhausted (last accepted %d): the session must be renewed by a join" % (
            last_fcnt,))
    if crypto.data_mic(nwkskey, phy, f.dev_addr, c, down, end) != f.mic:
        raise MICError("data frame: MIC mismatch for DevAddr %08X FCnt %d (wrong NwkSKey, or corrupted)" % (
            f.dev_addr, c))
    f.mic_ok = True
    f.fcnt = c
    if f.payload:
        key = nwkskey if f.fport == 0 else appskey
        f.payload = bytes(crypto.crypt_payload(key, f.dev_addr, c, down, f.payload))
    return f


def parse_downlink(phy, nwkskey, appskey, dev_addr=None, last_fcnt=None):
    """§4.3 on the device: check and decrypt a downlink.

    ``last_fcnt``: the last accepted 32-bit FCntDown (None right after a join). Raises FrameError
    (malformed, an uplink, or another DevAddr), ReplayError (valid MIC but FCnt not above
    ``last_fcnt``) or MICError. Returns a DataFrame with the 32-bit ``fcnt`` to store as the new last.
    """
    return _parse_data(phy, nwkskey, appskey, dev_addr, last_fcnt, False)


def parse_uplink(phy, nwkskey, appskey, dev_addr=None, last_fcnt=None):
    """§4.3 on the network side (simulator, CLI): like parse_downlink, for uplinks."""
    return _parse_data(phy, nwkskey, appskey, dev_addr, last_fcnt, True)
