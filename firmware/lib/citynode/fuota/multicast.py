# LoRaWAN TS005 Remote Multicast Setup v1.0.0 / v2.0.0 (fPort 200), device side.
# Byte layouts as ChirpStack's lrwn/src/applayer/multicastsetup/{v1,v2}.rs encode them; key derivation
# in docs/design/fuota.md ("Multicast keys"). Only the forward AES cipher is used, as for LoRaWAN.
# The MAC reads the groups (`groups[i]`) and the pending Class C session (`class_c[i]`) later.
from citynode.compat import const
from citynode.fuota import le, put_le

_PACKAGE_ID = const(2)  # TS005: PackageIdentifier of remote multicast setup
_CID_VERSION = const(0x00)
_CID_STATUS = const(0x01)
_CID_SETUP = const(0x02)
_CID_DELETE = const(0x03)
_CID_CLASS_C = const(0x04)
_CID_CLASS_B = const(0x05)
_ID_ERROR = const(0x04)  # McGroupSetupAns bit 2
_UNDEFINED = const(0x04)  # McGroupDeleteAns bit 2
_DR_ERROR = const(0x04)  # McClassCSessionAns bits 2..5
_FREQ_ERROR = const(0x08)
_GROUP_UNDEFINED = const(0x10)
_START_MISSED = const(0x20)  # v2 only
_MAX_ANSWER = const(48)


def session_keys(mc_key, mc_addr):
    """(McAppSKey, McNwkSKey) = aes128_encrypt(McKey, 0x01 / 0x02 | McAddr (LE) | pad16)."""
    from citynode.lorawan.aes import AES

    aes = AES(mc_key)
    blk = bytearray(16)
    put_le(blk, 1, mc_addr, 4)
    blk[0] = 0x01
    app = aes.encrypt(blk)
    blk[0] = 0x02
    return app, aes.encrypt(blk)


def decrypt_mc_key(mc_ke_key, mc_key_encrypted):
    """McKey = aes128_encrypt(McKEKey, McKey_encrypted): the server encrypted with aes128_decrypt."""
    from citynode.lorawan.aes import AES

    return AES(mc_ke_key).encrypt(bytes(mc_key_encrypted))


def mc_root_key(root_key, lorawan_1_1=False):
    """McRootKey from the GenAppKey (LoRaWAN 1.0.x: 0x00 | pad16) or the AppKey (1.1: 0x20 | pad16)."""
    from citynode.lorawan.aes import AES

    blk = bytearray(16)
    blk[0] = 0x20 if lorawan_1_1 else 0x00
    return AES(root_key).encrypt(blk)


def mc_ke_key(mc_root):
    """McKEKey = aes128_encrypt(McRootKey, 0x00 | pad16)."""
    from citynode.lorawan.aes import AES

    return AES(mc_root).encrypt(bytes(16))


class MulticastSetup:
    """One node's TS005 state.

    ``root_key``: GenAppKey (a LoRaWAN 1.0.x node; AppKey with ``lorawan_1_1``). ``max_groups``: how
    many groups the node keeps (1..4; ChirpStack uses group 0 only). ``freq_ok(hz)`` / ``dr_ok(dr)``:
    the region's checks for a Class C session (None accepts all). ``groups[i]`` is None or
    ``(mc_addr, mc_app_s_key, mc_nwk_s_key, min_fcnt, max_fcnt)``; ``class_c[i]`` is None or
    ``(start_gps_s, end_gps_s, freq_hz, dr)`` for the MAC to open its window.
    """

    def __init__(self, root_key, version=2, max_groups=1, freq_ok=None, dr_ok=None, lorawan_1_1=False):
        self.version = 2 if version == 2 else 1
        self._ke = mc_ke_key(mc_root_key(root_key, lorawan_1_1))
        self.max_groups = max(1, min(4, max_groups))
        self.groups = [None] * self.max_groups
        self.class_c = [None] * self.max_groups
        self._fcnt = [None] * self.max_groups  # last accepted 32-bit McFCnt per group
        self._freq_ok = freq_ok
        self._dr_ok = dr_ok
        self._out = bytearray(_MAX_ANSWER)

    def handle(self, payload, now_gps_s=0):
        """Handle one downlink on the multicast-setup port; return the answer bytes or None."""
        out = self._out
        n = 0
        pos = 0
        size = len(payload)
        while pos < size and n < _MAX_ANSWER - 24:
            cid = payload[pos]
            pos += 1
            if cid == _CID_VERSION:
                out[n] = _CID_VERSION
                out[n + 1] = _PACKAGE_ID
                out[n + 2] = self.version
                n += 3
            elif cid == _CID_STATUS:  # ReqGroupMask bits 3..0
                if pos + 1 > size:
                    break
                mask = payload[pos] & 0x0F
                pos += 1
                out[n] = _CID_STATUS
                st = n + 1
                n += 2
                ans = 0
                total = 0
                for i in range(self.max_groups):
                    g = self.groups[i]
                    if g is None:
                        continue
                    total += 1
                    if mask & (1 << i):
                        ans |= 1 << i
                        out[n] = i
                        put_le(out, n + 1, g[0], 4)
                        n += 5
                out[st] = (total << 4) | ans  # bits 6..4 NbTotalGroups, 3..0 AnsGroupMask
            elif cid == _CID_SETUP:  # 29 bytes
                if pos + 29 > size:
                    break
                gid = payload[pos] & 0x03
                out[n] = _CID_SETUP
                if gid >= self.max_groups:
                    out[n + 1] = gid | _ID_ERROR
                else:
                    addr = le(payload, pos + 1, 4)
                    app, nwk = session_keys(decrypt_mc_key(self._ke, payload[pos + 5:pos + 21]), addr)
                    self.groups[gid] = (addr, app, nwk, le(payload, pos + 21, 4), le(payload, pos + 25, 4))
                    self.class_c[gid] = None
                    self._fcnt[gid] = None
                    out[n + 1] = gid
                n += 2
                pos += 29
            elif cid == _CID_DELETE:
                if pos + 1 > size:
                    break
                gid = payload[pos] & 0x03
                pos += 1
                out[n] = _CID_DELETE
                if gid < self.max_groups and self.groups[gid] is not None:
                    self.groups[gid] = None
                    self.class_c[gid] = None
                    out[n + 1] = gid
                else:
                    out[n + 1] = gid | _UNDEFINED
                n += 2
            elif cid == _CID_CLASS_C:  # 10 bytes
                if pos + 10 > size:
                    break
                n = self._class_c(payload, pos, now_gps_s, out, n)
                pos += 10
            elif cid == _CID_CLASS_B:
                # Class B is not supported: the command is skipped unanswered (the device profile must
                # use Class C groups); ChirpStack then times the device out of the deployment.
                if pos + 10 > size:
                    break
                pos += 10
            else:
                break
        return bytes(out[:n]) if n else None

    def _class_c(self, b, pos, now, out, n):
        gid = b[pos] & 0x03
        start = le(b, pos + 1, 4)  # SessionTime, GPS seconds
        timeout_s = 1 << (b[pos + 5] & 0x0F)  # Class C: 2^TimeOut seconds
        freq = le(b, pos + 6, 3) * 100  # DLFrequ in 100 Hz steps
        dr = b[pos + 9]
        status = gid
        if gid >= self.max_groups or self.groups[gid] is None:
            status |= _GROUP_UNDEFINED
        if self._freq_ok is not None and not self._freq_ok(freq):
            status |= _FREQ_ERROR
        if self._dr_ok is not None and not self._dr_ok(dr):
            status |= _DR_ERROR
        out[n] = _CID_CLASS_C
        if status & 0x1C:
            out[n + 1] = status
            return n + 2  # TimeToStart only when the session is accepted
        wait = start - now
        if wait < 0:
            if self.version == 2 and start + timeout_s <= now:
                # v2 StartMissed: the whole session is over. ChirpStack still reads TimeToStart when
                # bits 4..2 are clear, so it is sent (0) to keep the answer parseable.
                out[n + 1] = status | _START_MISSED
                put_le(out, n + 2, 0, 3)
                return n + 5
            wait = 0
        self.class_c[gid] = (start, start + timeout_s, freq, dr)
        out[n + 1] = status
        put_le(out, n + 2, min(wait, 0xFFFFFF), 3)
        return n + 5

    def state(self):
        """The groups as JSON for the node's flash (citynode.fuota.node): per group None or
        [McAddr, McAppSKey hex, McNwkSKey hex, minMcFCount, maxMcFCount, last McFCnt or None]."""
        from binascii import hexlify

        out = []
        for i in range(self.max_groups):
            g = self.groups[i]
            out.append(None if g is None else [g[0], hexlify(g[1]).decode(), hexlify(g[2]).decode(), g[3], g[4],
                                               self._fcnt[i]])
        return out

    def windows(self):
        """The Class C sessions as JSON: per group None or [start GPS s, end GPS s, Hz, DR]."""
        return [None if w is None else list(w) for w in self.class_c]

    def restore(self, groups, windows=None):
        """Take back ``state()`` and ``windows()`` saved before a reboot (malformed entries are dropped)."""
        from binascii import unhexlify

        for i in range(min(self.max_groups, len(groups or ()))):
            g = groups[i]
            try:
                self.groups[i] = (int(g[0]), unhexlify(g[1]), unhexlify(g[2]), int(g[3]), int(g[4]))
                self._fcnt[i] = None if g[5] is None else int(g[5])
            except (TypeError, ValueError, IndexError):
                self.groups[i] = None
        for i in range(min(self.max_groups, len(windows or ()))):
            w = windows[i]
            if self.groups[i] is not None and w is not None and len(w) == 4:
                self.class_c[i] = tuple(w)

    def open_frame(self, phy, now_gps_s=None):
        """A multicast downlink received in a Class C window: ``(group id, FPort, FRMPayload)`` when its
        DevAddr is a group's McAddr, it is an unconfirmed data down without FOpts or ACK (TS005: no MAC
        commands, no acknowledgement on multicast), its MIC checks with McNwkSKey and its FCnt is newer
        than the group's last and within [minMcFCount, maxMcFCount]; None otherwise (never raises).
        ``now_gps_s`` (optional) also requires the group's Class C session to be open.
        """
        try:
            n = len(phy)
            if n < 13 or phy[0] & 0xE0 != 0x60:  # LoRaWAN 1.0.4 §4.2.1: MType 011 unconfirmed data down
                return None
            addr = le(phy, 1, 4)
            gid = -1
            for i in range(self.max_groups):
                g = self.groups[i]
                if g is not None and g[0] == addr:
                    gid = i
                    break
            if gid < 0 or phy[5] & 0x2F:  # FCtrl: ACK (bit 5) or FOptsLen (bits 3..0)
                return None
            if now_gps_s is not None:
                w = self.class_c[gid]
                if w is None or not w[0] <= now_gps_s < w[1]:
                    return None
            g = self.groups[gid]
            last = self._fcnt[gid]
            base = g[3] if last is None else last + 1
            fcnt = (base & ~0xFFFF) | le(phy, 6, 2)  # §4.3.1.5: 16 bits on air
            if fcnt < base:
                fcnt += 0x10000
            if fcnt > g[4] or fcnt > 0xFFFFFFFF:
                return None
            from citynode.lorawan import crypto

            if crypto.data_mic(g[2], phy, addr, fcnt, True, n - 4) != bytes(phy[n - 4:]):
                return None
            port = phy[8]
            if port == 0:
                return None  # FPort 0 carries MAC commands, which multicast may not
            self._fcnt[gid] = fcnt
            return gid, port, bytes(crypto.crypt_payload(g[1], addr, fcnt, True, phy[9:n - 4]))
        except Exception:
            return None
