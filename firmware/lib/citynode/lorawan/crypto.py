# LoRaWAN 1.0.4 security: MICs, FRMPayload encryption, join-accept decryption, session keys.
#
# Conventions (used by frames.py and the MAC): keys are 16-byte bytes; DevAddr, FCnt, JoinNonce, NetID
# and DevNonce are ints (the spec's little-endian wire order is handled here); `downlink` is the Dir bit
# (False = uplink, True = downlink). FCnt is always the full 32-bit counter, never the 16 bits on air.
#
# Note on FOpts: in LoRaWAN 1.0.x FOpts travel in clear (only 1.1 encrypts them with NwkSEncKey);
# MAC commands sent on FPort 0 are encrypted here like any FRMPayload, with the NwkSKey (§4.3.3).
from citynode.compat import const
from citynode.lorawan import LoRaWANError, ReplayError
from citynode.lorawan.aes import AES
from citynode.lorawan.cmac import CMAC

_B0 = const(0x49)  # §4.4: first byte of the MIC block B0
_A0 = const(0x01)  # §4.3.3: first byte of the encryption blocks A_i
# §6.2.6: NwkSKey = aes128_encrypt(AppKey, 0x01 | JoinNonce | NetID | DevNonce | pad16)
_KEY_NWK = const(0x01)
_KEY_APP = const(0x02)  # §6.2.6: AppSKey, same with 0x02
_MAX_DEV_NONCE = const(0xFFFF)


def _check_key(key, name):
    if key is None or len(key) != 16:
        got = "none" if key is None else "%d bytes" % len(key)
        raise LoRaWANError("%s: need a 16-byte key, got %s" % (name, got))


# RAM: a node computes a MIC and runs the payload cipher on every frame with the same few keys, so the
# last CMAC (subkeys derived) and the last AES object (key schedule done) are kept, and the B0/A_i
# blocks live in two preallocated buffers. A frame then allocates little more than its own bytes.
# The price: these functions are not thread-safe (fine on a node and in the asyncio gateway; a
# multi-threaded caller needs a lock around them).
_cmac_key = None
_cmac = None
_aes_key = None
_aes = None
_blk = bytearray(16)
_stream = bytearray(16)


def _cmac_for(key):
    global _cmac_key, _cmac
    if _cmac is None or _cmac_key != key:
        _cmac = CMAC(key)
        _cmac_key = bytes(key)
    return _cmac


def _aes_for(key):
    global _aes_key, _aes
    if _aes is None or _aes_key != key:
        _aes = AES(key)
        _aes_key = bytes(key)
    return _aes


def _put_le(buf, pos, value, n):
    for i in range(n):
        buf[pos + i] = (value >> (8 * i)) & 0xFF


def _block(first, dev_addr, fcnt, downlink, last):
    # §4.4 (B0) and §4.3.3 (A_i) share a layout:
    #   first | 0x00*4 | Dir | DevAddr (LE) | FCnt (LE, 32 bit) | 0x00 | last
    b = _blk
    b[0] = first
    b[1] = b[2] = b[3] = b[4] = b[14] = 0
    b[5] = 1 if downlink else 0
    _put_le(b, 6, dev_addr, 4)
    _put_le(b, 10, fcnt, 4)
    b[15] = last
    return b


def data_mic(nwkskey, msg, dev_addr, fcnt, downlink, end=-1):
    """LoRaWAN 1.0.4 §4.4: MIC of a data frame.

    ``msg`` = MHDR | FHDR | FPort | FRMPayload (``msg[:end]`` when ``end`` >= 0), ``fcnt`` the 32-bit
    counter. Returns the 4-byte MIC: aes128_cmac(NwkSKey, B0 | msg)[0:4].
    """
    _check_key(nwkskey, "NwkSKey")
    n = len(msg) if end < 0 else end
    if n > 255:
        raise LoRaWANError("MIC: message of %d bytes is longer than a PHYPayload can be" % n)
    b0 = _block(_B0, dev_addr, fcnt, downlink, n)
    return _cmac_for(nwkskey).digest(msg, n, b0)[:4]


def join_mic(appkey, msg, end=-1):
    """LoRaWAN 1.0.4 §6.2.5 (join-request) / §6.2.6 (join-accept): aes128_cmac(AppKey, msg)[0:4].

    ``msg`` = MHDR | JoinEUI | DevEUI | DevNonce, or MHDR | JoinNonce | NetID | DevAddr | DLSettings |
    RxDelay | CFList (the join-accept in clear).
    """
    _check_key(appkey, "AppKey")
    return _cmac_for(appkey).digest(msg, end)[:4]


def crypt_payload(key, dev_addr, fcnt, downlink, data, out=None):
    """LoRaWAN 1.0.4 §4.3.3: encrypt or decrypt (the same XOR) an FRMPayload.

    ``key`` is the AppSKey for FPort 1..255 and the NwkSKey for FPort 0. Writes into ``out`` (a
    bytearray at least as long as ``data``; may be ``data`` itself) or a new bytearray, and returns it.
    """
    _check_key(key, "payload key")
    n = len(data)
    if out is None:
        out = bytearray(n)
    aes = _aes_for(key)
    a = _block(_A0, dev_addr, fcnt, downlink, 0)
    s = _stream
    pos = 0
    i = 1
    while pos < n:
        a[15] = i  # §4.3.3: A_i for i = 1..k
        aes.encrypt_into(a, s)
        k = n - pos
        if k > 16:
            k = 16
        for j in range(k):
            out[pos + j] = data[pos + j] ^ s[j]
        pos += 16
        i += 1
    return out


def decrypt_join_accept(appkey, phy):
    """LoRaWAN 1.0.4 §6.2.6: the join-accept in clear, MHDR kept, MIC included.

    The network encrypts with aes128_decrypt, so the device decrypts with aes128_encrypt (ECB, block by
    block). ``phy`` must be 17 or 33 bytes (checked by frames.parse_join_accept).
    """
    _check_key(appkey, "AppKey")
    n = len(phy)
    if n not in (17, 33):
        raise LoRaWANError("join-accept: need 17 or 33 bytes, got %d" % n)
    aes = AES(appkey)
    out = bytearray(n)
    out[0] = phy[0]
    mv = memoryview(phy)
    s = bytearray(16)
    for pos in range(1, n, 16):
        aes.encrypt_into(mv[pos:pos + 16], s)
        out[pos:pos + 16] = s
    return bytes(out)


def encrypt_join_accept(appkey, clear):
    """Network side of §6.2.6: aes128_decrypt over everything after MHDR (MIC included).

    For the network-server simulator and tests; a device never calls it.
    """
    _check_key(appkey, "AppKey")
    n = len(clear)
    if n not in (17, 33):
        raise LoRaWANError("join-accept: need 17 or 33 bytes, got %d" % n)
    aes = AES(appkey)
    out = bytearray(n)
    out[0] = clear[0]
    mv = memoryview(clear)
    s = bytearray(16)
    for pos in range(1, n, 16):
        aes.decrypt_into(mv[pos:pos + 16], s)
        out[pos:pos + 16] = s
    return bytes(out)


def derive_session_keys(appkey, join_nonce, net_id, dev_nonce):
    """LoRaWAN 1.0.4 §6.2.6: (NwkSKey, AppSKey) from the AppKey after a join.

    ``join_nonce`` (24 bit, called AppNonce before 1.0.4), ``net_id`` (24 bit) and ``dev_nonce``
    (16 bit) are ints, as carried in the join-accept and the join-request.
    """
    _check_key(appkey, "AppKey")
    if not 0 <= join_nonce <= 0xFFFFFF:
        raise LoRaWANError("JoinNonce: %r is not a 24-bit value" % (join_nonce,))
    if not 0 <= net_id <= 0xFFFFFF:
        raise LoRaWANError("NetID: %r is not a 24-bit value" % (net_id,))
    if not 0 <= dev_nonce <= _MAX_DEV_NONCE:
        raise LoRaWANError("DevNonce: %r is not a 16-bit value" % (dev_nonce,))
    aes = AES(appkey)
    block = bytearray(16)
    _put_le(block, 1, join_nonce, 3)
    _put_le(block, 4, net_id, 3)
    _put_le(block, 7, dev_nonce, 2)
    block[0] = _KEY_NWK
    nwkskey = aes.encrypt(block)
    block[0] = _KEY_APP
    appskey = aes.encrypt(block)
    return nwkskey, appskey


def next_dev_nonce(last):
    """LoRaWAN 1.0.4 §6.2.5: DevNonce is a counter starting at 0 that is never reused.

    ``last`` is the DevNonce of the previous join-request (None if there never was one). Raises
    LoRaWANError once all 65536 values are used: a DevNonce SHALL never be reused for a JoinEUI, so the
    device must be re-provisioned.
    """
    if last is None:
        return 0
    if last >= _MAX_DEV_NONCE:
        raise LoRaWANError("DevNonce: all 65536 values used; the device must be re-provisioned")
    return last + 1


def check_join_nonce(join_nonce, last):
    """Accept a join-accept only if its JoinNonce is greater than the last accepted one.

    LoRaWAN 1.0.4 §6.2.6 calls JoinNonce non-repeating and points to TR001 for the incrementing
    JoinNonce that ChirpStack's join server uses; TR007 §4.13 requires the device to persist it and
    validate it against reuse.

    ``last`` is the JoinNonce of the last accepted join-accept (None if none). Raises ReplayError.
    """
    if last is not None and join_nonce <= last:
        raise ReplayError(
            "JoinNonce %d is not greater than the last accepted %d: replayed join-accept" % (join_nonce, last)
        )


def netid_type(net_id):
    """LoRaWAN Backend Interfaces 1.0 §13: the NetID type is its 3 most significant bits."""
    return (net_id >> 21) & 0x07
