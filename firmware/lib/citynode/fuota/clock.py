# LoRaWAN TS003 Application Layer Clock Synchronization v1.0.0 / v2.0.0 (fPort 202), device side.
# Byte layouts as ChirpStack's lrwn/src/applayer/clocksync/{v1,v2}.rs encode them (docs/design/fuota.md).
# Time is GPS seconds modulo 2^32. The app owns the clock: it passes its GPS time in, reads
# `correction` / `synced` out, and sends `app_time_req()` when `resync_left` or the periodicity asks.
from citynode.compat import const
from citynode.fuota import le, put_le

_PACKAGE_ID = const(1)  # TS003: PackageIdentifier of clock synchronization
_CID_VERSION = const(0x00)
_CID_APP_TIME = const(0x01)  # up: AppTimeReq, down: AppTimeAns
_CID_PERIODICITY = const(0x02)  # down: DeviceAppTimePeriodicityReq, up: ...Ans
_CID_RESYNC = const(0x03)  # down: ForceDeviceResyncReq (v1) / ForceDeviceResyncCmd (v2)
_ANS_REQUIRED = const(0x10)  # AppTimeReq Param bit 4
_MAX_ANSWER = const(16)


class ClockSync:
    """One node's TS003 state. ``version`` is 1 or 2 (what PackageVersionAns announces).

    State the app reads: ``correction`` (seconds to add to the clock, cumulative since the last
    ``take_correction()``), ``synced`` (an AppTimeAns with the right token arrived), ``period_s`` (the
    AppTimeReq periodicity asked by the network, None until asked: 128 * 2^Period s), ``resync_left``
    (AppTimeReq still to send after a ForceDeviceResyncReq).
    """

    def __init__(self, version=2):
        self.version = 2 if version == 2 else 1
        self.token = 0  # TokenReq, 4 bits, incremented after each accepted correction
        self.correction = 0
        self.synced = False
        self.period_s = None
        self.resync_left = 0
        self._out = bytearray(_MAX_ANSWER)

    def app_time_req(self, device_gps_s, ans_required=False):
        """The AppTimeReq uplink (CID 0x01): DeviceTime (4) | Param (TokenReq, AnsRequired)."""
        b = bytearray(6)
        b[0] = _CID_APP_TIME
        put_le(b, 1, device_gps_s & 0xFFFFFFFF, 4)
        b[5] = (self.token & 0x0F) | (_ANS_REQUIRED if ans_required else 0)
        if self.resync_left > 0:
            self.resync_left -= 1
        return bytes(b)

    def take_correction(self):
        """Return the pending correction (seconds) and clear it: the app has applied it."""
        c = self.correction
        self.correction = 0
        return c

    def handle(self, payload, now_gps_s=0):
        """Handle one downlink on the clock port; return the answer bytes or None. Never raises."""
        out = self._out
        n = 0
        pos = 0
        size = len(payload)
        while pos < size:
            cid = payload[pos]
            pos += 1
            if cid == _CID_VERSION:
                out[n] = _CID_VERSION
                out[n + 1] = _PACKAGE_ID
                out[n + 2] = self.version
                n += 3
            elif cid == _CID_APP_TIME:  # AppTimeAns: TimeCorrection (4, signed) | Param (TokenAns)
                if pos + 5 > size:
                    break
                corr = le(payload, pos, 4)
                if corr & 0x80000000:
                    corr -= 0x100000000
                if payload[pos + 4] & 0x0F == self.token:
                    self.correction += corr
                    self.synced = True
                    self.token = (self.token + 1) & 0x0F
                pos += 5
            elif cid == _CID_PERIODICITY:  # Period bits 3..0 -> 128 * 2^Period s; answer Status | Time
                if pos + 1 > size or n + 6 > _MAX_ANSWER:
                    break
                self.period_s = 128 << (payload[pos] & 0x0F)
                pos += 1
                out[n] = _CID_PERIODICITY
                out[n + 1] = 0  # Status bit 0 NotSupported: supported
                put_le(out, n + 2, now_gps_s & 0xFFFFFFFF, 4)
                n += 6
            elif cid == _CID_RESYNC:  # NbTransmissions bits 2..0; no answer
                if pos + 1 > size:
                    break
                self.resync_left = payload[pos] & 0x07
                pos += 1
            else:
                break  # unknown CID: the rest of the frame cannot be parsed
            if n + 3 > _MAX_ANSWER:
                break
        return bytes(out[:n]) if n else None
