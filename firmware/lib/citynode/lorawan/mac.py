# LoRaWAN 1.0.4 Class A end device (EU868), independent of the radio chip.
#
# The MAC drives any object with the citynode.radio.base.Radio interface:
#   configure(freq_hz, sf, bw_hz, cr=5, tx_power_dbm=14, preamble=8, invert_iq=False, crc=True)
#   send(data) -> None (blocks until TX done); recv(timeout_ms) -> (bytes, rssi_dbm, snr_db) or None
#   sleep(); standby()
# Time comes from an injected non-wrapping millisecond clock (``now_ms``) and ``sleep_ms``; state lives in
# a session.SessionStore (RTC memory + flash), so a node survives deep sleep and power loss.
#
# Public interface (shared with the AT-modem backend): join(), send(fport, data, confirmed=False),
# max_payload(), joined, datarate. Class C multicast windows (FUOTA): listen(until_ms, freq_hz, dr, on_frame),
# which needs the radio's continuous receive mode (recv(timeout_ms, continuous=True)).
from citynode.compat import const
from citynode.lorawan import FrameError, LoRaWANError, airtime, crypto, frames, maccmd
from citynode.lorawan import region as _eu868
from citynode.lorawan.dutycycle import DutyCycle

_DEBUG = const(False)

# §3.3: the receiver must stay open long enough to detect a preamble. We open _RX_MARGIN_MS before the
# window start (clock and scheduling error) and listen for _RX_SYMBOLS symbols plus twice the margin:
# preamble 8 + sync 4.25 + the 8-symbol explicit header, so that a downlink which starts at the window
# start has raised ValidHeader before the window ends, even on an SX127x whose window is timed in
# software (RxContinuous, datasheet §4.1.6) rather than by the chip's symbol timeout.
_RX_MARGIN_MS = const(20)
_RX_SYMBOLS = const(21)
_CR_4_5 = const(5)  # LoRaWAN always uses coding rate 4/5 (RP002 §2.4.3)
_PREAMBLE = const(8)  # RP002 §2.4.1: 8-symbol preamble
_FOPTS_MAX = const(15)
_FPORT_APP_MAX = const(223)  # §4.3.2: 1..223 application, 224 test, 225..255 RFU
# ADR backoff (§4.3.1.1): once the backoff has reached its floor (full power, DR0, default channels) and
# ADR_ACK_CNT reaches ADR_ACK_LIMIT + _REJOIN_DELAYS * ADR_ACK_DELAY (64 + 10 * 32 = 384 uplinks without
# any downlink), an OTAA node gives the session up and rejoins. Derived from the persisted ADR_ACK_CNT,
# so the decision survives deep sleep. Enough delays to walk down from DR6 first.
_REJOIN_DELAYS = const(10)
_JOIN_DRS = (5, 4, 3, 2, 1, 0)  # join-request data rates, tried in turn (robust ones last)

# LinkADRAns / RXParamSetupAns / NewChannelAns / DlChannelAns status bits are named fields in maccmd.


def _log(*args):
    if _DEBUG:
        print("lorawan:", *args)


class NotJoinedError(LoRaWANError):
    """send() before a successful join (or after the session was lost and the rejoin failed)."""


class PayloadTooLong(LoRaWANError):
    """The application payload does not fit the current data rate (see max_payload())."""


class DutyCycleWait(LoRaWANError):
    """No channel may transmit now (duty cycle); ``wait_ms`` says how long until one may."""

    def __init__(self, wait_ms):
        super().__init__("duty cycle: next transmission allowed in %d ms" % wait_ms)
        self.wait_ms = wait_ms


class Downlink:
    """A valid downlink: ``port`` (None when it carried only MAC commands), ``data`` (decrypted bytes),
    ``ack`` (it acknowledged our confirmed uplink), ``confirmed``, ``fpending``, ``fcnt``, ``rssi_dbm``,
    ``snr_db``, ``window`` (1 or 2). Unpacks as ``port, data``."""

    def __init__(self, frame, rssi_dbm, snr_db, window):
        self.port = frame.fport if frame.fport else None
        self.data = frame.payload if frame.fport else b""
        self.ack = frame.ack
        self.confirmed = frame.confirmed
        self.fpending = frame.fpending
        self.fcnt = frame.fcnt
        self.rssi_dbm = rssi_dbm
        self.snr_db = snr_db
        self.window = window

    def __iter__(self):
        # ``fport, data = mac.send(...)``, as with the AT-modem backend's Downlink
        return iter((self.port, self.data))


def _default_sleep_ms():
    import time

    if hasattr(time, "sleep_ms"):
        return time.sleep_ms
    return lambda ms: time.sleep(ms / 1000)


def _default_wall():
    import time

    return time.time


def _default_rand():
    try:
        from random import getrandbits
    except ImportError:  # pragma: no cover
        import os

        return lambda n: int.from_bytes(os.urandom(4), "little") & ((1 << n) - 1)
    return getrandbits


class ClassA:
    """A LoRaWAN 1.0.4 Class A device.

    radio: the Radio object. store: a session.SessionStore (loaded here if it was not). now_ms /
    sleep_ms: non-wrapping ms clock and a sleep function (dutycycle.MonotonicMs() and time.sleep_ms on a
    node; a fake clock in tests). dev_eui / join_eui (8 bytes, MSB first) and app_key (16 bytes) for
    OTAA. battery: callable returning the DevStatusAns battery byte (0 external power, 1..254 level,
    255 unknown). antenna_gain_dbi: subtracted from the region's EIRP to get the radio's conducted power.
    rand: getrandbits-like callable (channel choice, retransmission timeout). wall_s: seconds clock that
    keeps running in deep sleep (default time.time; the ESP32 RTC keeps it), to credit sleep time
    against duty-cycle time-offs.
    """

    def __init__(self, radio, store, now_ms, sleep_ms=None, region=None, dev_eui=None, join_eui=None,
                 app_key=None, battery=None, antenna_gain_dbi=2, rand=None, repeater=False, wall_s=None):
        self.radio = radio
        self.store = store
        self.region = region if region is not None else _eu868
        self._now = now_ms
        self._sleep = sleep_ms if sleep_ms is not None else _default_sleep_ms()
        self._rand = rand if rand is not None else _default_rand()
        self._wall = wall_s if wall_s is not None else _default_wall()
        self._battery = battery
        self._gain = antenna_gain_dbi
        self._repeater = repeater
        self.dev_eui = dev_eui
        self.join_eui = join_eui
        self.app_key = app_key
        if store.session is None:
            store.load()
        self.dc = DutyCycle(now_ms, self.region.SUB_BANDS)
        s = self.session
        if s.dutycycle:
            # Time-offs were saved relative to the wall clock of the moment (ESP32: the RTC keeps
            # time.time() across deep sleep), so the time spent asleep counts. After power loss the
            # wall clock restarts, the difference is negative and nothing is deducted (conservative).
            try:
                st, saved_s = s.dutycycle
                self.dc.restore(st, (self._wall() - saved_s - 1) * 1000)  # -1: whole-second clock
            except (TypeError, ValueError):
                pass  # a state from another firmware version: start with open bands
        self.dc.max_dcycle = s.max_dcycle
        self._answers = []  # (name, fields) to send once, in the next uplink
        self._sticky = []  # answers repeated until a downlink arrives (§5.5, §5.8, §5.10)
        self._ack_next = False  # the last downlink was confirmed: set ACK in the next uplink
        self._last_snr = 0
        self.last_error = None  # why the last received frame was dropped (str), for diagnostics
        self.link_check = None  # (margin_db, gw_cnt) from the last LinkCheckAns
        self.device_time = None  # (gps_seconds, fraction_256, tx_end_ms) from the last DeviceTimeAns
        self.last_tx_end_ms = None

    # ------------------------------------------------------------------ properties
    @property
    def session(self):
        return self.store.session

    @property
    def joined(self):
        return self.session.joined

    @property
    def datarate(self):
        return self.session.dr

    def max_payload(self):
        """Largest application payload (bytes) the next uplink can carry at the current data rate,
        after the pending MAC answers in FOpts (RP002 §2.4.6)."""
        n = self.region.max_app_payload(self.session.dr, self._repeater) - len(self._fopts())
        return max(0, n)

    def time_to_tx_ms(self, join=False):
        """Milliseconds until the duty cycle allows the next uplink on some enabled channel."""
        if join:
            return self._pick_channel(_JOIN_DRS[0], join=True)[1]
        return self._pick_channel(self.session.dr)[1]

    # ------------------------------------------------------------------ activation
    def activate_abp(self, dev_addr, nwk_skey, app_skey):
        """ABP: use fixed session keys. Counters continue from the persisted session when it is the
        same device address and keys (LoRaWAN 1.0.4 §6.1.4: FCnt must never restart for ABP)."""
        s = self.session
        if (s.joined and s.activation == "abp" and s.dev_addr == dev_addr and s.nwk_skey == bytes(nwk_skey)
                and s.app_skey == bytes(app_skey)):
            return
        self.store.start("abp", dev_addr, nwk_skey, app_skey)

    def join(self, attempts=1, wait=True):
        """OTAA join (LoRaWAN 1.0.4 §6.2). Each attempt sends a join-request with the next persisted
        DevNonce on a random default channel and listens in RX1 (JOIN_ACCEPT_DELAY1) and RX2
        (JOIN_ACCEPT_DELAY2). Returns True once joined, False after ``attempts`` failed attempts.
        Waits for the join back-off/duty cycle with ``sleep_ms`` (or raises DutyCycleWait if not ``wait``).
        """
        if self.app_key is None or self.dev_eui is None or self.join_eui is None:
            raise LoRaWANError("join: OTAA needs dev_eui, join_eui and app_key")
        for _ in range(attempts):
            # Successive join-requests rotate through DR5..DR0 (fast first, robust later).
            dr = _JOIN_DRS[self.session.devnonce_next % len(_JOIN_DRS)]
            ch, wait_ms = self._pick_channel(dr, join=True)
            if wait_ms:
                if not wait:
                    raise DutyCycleWait(wait_ms)
                self._sleep(wait_ms)
                ch, wait_ms = self._pick_channel(dr, join=True)
            freq = self.session.channels[ch][0]
            devnonce = self.store.take_devnonce()
            self.last_error = None
            phy = frames.build_join_request(self.app_key, self.join_eui, self.dev_eui, devnonce)
            _log("join-request devnonce", devnonce, "freq", freq, "dr", dr)
            t_end = self._transmit(phy, freq, dr, join=True)
            rx = self.region
            ja = self._receive_windows(
                t_end, rx.JOIN_ACCEPT_DELAY1_MS, freq, rx.rx1_dr(dr, 0), rx.RX2_FREQ_HZ, rx.RX2_DR,
                lambda phy, rssi, snr, w, n=devnonce, d=dr: self._accept_join(phy, n, d))
            self._persist()
            if ja:
                return True
            if self.last_error is None:
                # What a technician needs when a join fails: where the device listened.
                self.last_error = "join: no join-accept for DevNonce %d in RX1 (%d Hz DR%d) or RX2 (%d Hz DR%d)" % (
                    devnonce, freq, rx.rx1_dr(dr, 0), rx.RX2_FREQ_HZ, rx.RX2_DR)
        return False

    def _accept_join(self, phy, devnonce, dr):
        try:
            if frames.mtype_of(phy) != frames.JOIN_ACCEPT:
                raise FrameError("not a join-accept")
            ja = frames.parse_join_accept(self.app_key, phy)
            crypto.check_join_nonce(ja.join_nonce, self.session.join_nonce if self.session.join_nonce >= 0 else None)
        except LoRaWANError as e:
            self.last_error = str(e)
            _log("join-accept dropped:", e)
            return None
        nwk, app = crypto.derive_session_keys(self.app_key, ja.join_nonce, ja.net_id, devnonce)
        cflist = ja.cflist if ja.cflist_type == 0 else None
        try:
            self.region.parse_cflist(cflist)
        except ValueError:
            cflist = None  # out-of-band frequencies: keep the default channels (RP002 §2.4.4)
        self.session.join_nonce = ja.join_nonce  # kept across sessions; written with the new one below
        self.store.start("otaa", ja.dev_addr, nwk, app, cflist)
        s = self.session
        if ja.rx1_dr_offset <= self.region.MAX_RX1_DR_OFFSET:
            s.rx1_dr_offset = ja.rx1_dr_offset
        if self.region.dr_supported(ja.rx2_dr):
            s.rx2_dr = ja.rx2_dr
        s.rx1_delay_ms = ja.rx_delay_s * 1000
        s.dr = dr  # the data rate the join went through: proven to reach the network; ADR takes over
        self.dc.join_succeeded()
        self._answers = []
        self._sticky = []
        self._ack_next = False
        self._persist(flash=True)
        _log("joined devaddr %08x" % ja.dev_addr)
        return ja

    # ------------------------------------------------------------------ uplink
    def send(self, fport, data, confirmed=False, wait=True):
        """Send ``data`` on ``fport`` (1..223) and listen in RX1/RX2.

        Unconfirmed uplinks go out NbTrans times unless a downlink arrives; confirmed ones are repeated
        (up to NbTrans times, RETRANSMIT_TIMEOUT apart) until acknowledged. Returns the Downlink received
        (``ack`` tells a confirmed uplink was acknowledged), or None.
        Raises NotJoinedError, PayloadTooLong, ValueError("fport"), DutyCycleWait (only if not ``wait``).
        """
        s = self.session
        if not s.joined:
            raise NotJoinedError("send: the device has not joined (call join() first)")
        if not 1 <= fport <= _FPORT_APP_MAX:
            raise ValueError("fport")
        if s.fcnt_up > 0xFFFFFFFF and s.activation == "otaa":
            # §4.3.1.5: a 32-bit FCntUp never wraps within a session: a new session is needed.
            self.store.forget()
            if not self.join(attempts=1, wait=wait):
                raise NotJoinedError("send: frame counter exhausted and the rejoin failed")
            s = self.session
        data = bytes(data)
        if len(data) > self.max_payload():
            raise PayloadTooLong("send: %d bytes, at most %d fit at DR%d" % (len(data), self.max_payload(), s.dr))
        if not wait:
            # Checked before anything is consumed: no FCnt is spent and no MAC answer lost.
            wait_ms = self._pick_channel(s.dr)[1]
            if wait_ms:
                raise DutyCycleWait(wait_ms)
        result = None
        acked = False
        fopts = self._fopts()
        if s.adr:
            s.adr_ack_cnt += 1  # saved to RTC memory together with FCntUp below
        adr_ack_req = s.adr and s.adr_ack_cnt >= self.region.ADR_ACK_LIMIT
        fcnt = self.store.take_fcnt_up()
        phy = frames.build_uplink(s.nwk_skey, s.app_skey, s.dev_addr, fcnt, fport, data, fopts, confirmed,
                                  adr=s.adr, adr_ack_req=adr_ack_req, ack=self._ack_next)
        self._ack_next = False
        self._answers = []  # one-shot answers went out with this frame
        last_ch = None
        dr = s.dr  # the frame was sized for this rate: repetitions keep it even if a LinkADRReq arrives
        for trans in range(s.nb_trans if s.nb_trans > 0 else 1):
            ch, wait_ms = self._pick_channel(dr, avoid=last_ch)
            if wait_ms:  # a repetition (NbTrans) may have to wait for its band even with wait=False
                self._sleep(wait_ms)
                ch, wait_ms = self._pick_channel(dr, avoid=last_ch)
            last_ch = ch
            freq = s.channels[ch][0]
            _log("uplink fcnt", fcnt, "port", fport, "len", len(data), "freq", freq, "dr", dr, "trans", trans + 1)
            t_end = self._transmit(phy, freq, dr)
            rx1_freq = s.dl_freqs[ch] or freq
            dl = self._receive_windows(
                t_end, s.rx1_delay_ms, rx1_freq, self.region.rx1_dr(dr, s.rx1_dr_offset), s.rx2_freq_hz,
                s.rx2_dr, self._accept_downlink)
            if dl is not None:
                result = dl
                acked = dl.ack
                if not confirmed or acked:
                    break  # §4.3.1.2 / 1.0.4 NbTrans: any downlink ends the repetitions
            if confirmed and trans + 1 < s.nb_trans:
                lo, hi = self.region.RETRANSMIT_TIMEOUT_MIN_MS, self.region.RETRANSMIT_TIMEOUT_MAX_MS
                self._sleep(lo + self._rand(16) % (hi - lo + 1))
        if confirmed and not acked and result is not None:
            result.ack = False
        self._adr_backoff()
        self._persist()
        if not self.session.joined and self.app_key is not None:
            _log("link lost: rejoining")
            try:
                self.join(attempts=1, wait=wait)
            except DutyCycleWait:
                pass  # the next send() raises NotJoinedError; the application calls join() later
        return result

    def _fopts(self):
        cmds = self._sticky + self._answers
        out = maccmd.encode_all(cmds) if cmds else b""
        while len(out) > _FOPTS_MAX and cmds:  # §4.3.1.6: FOpts is at most 15 bytes; drop the newest
            cmds = cmds[:-1]
            out = maccmd.encode_all(cmds)
        return out

    def request_link_check(self):
        """Ask the network for link margin and gateway count in the next uplink (LinkCheckReq, §5.2)."""
        self._answers.append(("LinkCheckReq", {}))

    def request_device_time(self):
        """Ask for the network time in the next uplink (DeviceTimeReq, §5.11)."""
        self._answers.append(("DeviceTimeReq", {}))

    # ------------------------------------------------------------------ radio
    def _pick_channel(self, dr, join=False, avoid=None):
        """(channel index, wait ms): a random enabled channel allowing ``dr`` whose band is open now;
        if none is open, the one that opens first. Join requests use the default channels only."""
        s = self.session
        ready = []
        best, best_wait = None, None
        n = len(self.region.DEFAULT_CHANNELS) if join else self.region.MAX_CHANNELS
        for i in range(n):
            c = s.channels[i]
            if c is None or not (join or s.ch_mask & (1 << i)) or not c[1] <= dr <= c[2]:
                continue
            w = self.dc.wait_ms(c[0], join)
            if w == 0:
                ready.append(i)
            if best_wait is None or w < best_wait:
                best, best_wait = i, w
        if best is None:
            raise LoRaWANError("no enabled channel allows DR%d" % dr)
        if ready:
            if avoid in ready and len(ready) > 1:
                ready.remove(avoid)
            return ready[self._rand(16) % len(ready)], 0
        return best, best_wait

    def _power_dbm(self):
        """Conducted power for the radio: the region's EIRP for TXPower minus the antenna gain, clamped
        to what the chip can do (an SX1276 on PA_BOOST cannot go below 2 dBm)."""
        p = self.region.tx_power_dbm(self.session.tx_power) - self._gain
        lo = getattr(self.radio, "POWER_MIN_DBM", None)
        hi = getattr(self.radio, "POWER_MAX_DBM", None)
        if lo is not None and p < lo:
            p = lo
        if hi is not None and p > hi:
            p = hi
        return p

    def _transmit(self, phy, freq, dr, join=False):
        sf, bw = self.region.dr_params(dr)
        power = self._power_dbm()
        self.radio.configure(freq, sf, bw, cr=_CR_4_5, tx_power_dbm=power, preamble=_PREAMBLE,
                             invert_iq=False, crc=True)
        toa_ms = airtime.time_on_air_ms(len(phy), sf, bw)
        t0 = self._now()
        self.radio.send(phy)
        t_end = self._now()
        t_end = max(t_end, t0 + toa_ms)  # a radio that returned early: TX end from the time on air
        self.dc.record_tx(freq, toa_ms, join)
        self.last_tx_end_ms = t_end
        return t_end

    def _rx_window(self, t_open, freq, dr):
        """Listen at ``t_open`` (ms, absolute) on ``freq``/``dr``; returns (phy, rssi, snr) or None."""
        sf, bw = self.region.dr_params(dr)
        start = t_open - _RX_MARGIN_MS
        now = self._now()
        if now > t_open:
            return None  # the window has passed (a long RX1 reception, or a slow host)
        if start > now:
            self._sleep(start - now)
        timeout = 2 * _RX_MARGIN_MS + (_RX_SYMBOLS * airtime.symbol_time_us(sf, bw) + 999) // 1000
        # Downlinks: inverted IQ, no payload CRC (LoRaWAN 1.0.4 §3.2 / RP002 §2.4.1)
        self.radio.configure(freq, sf, bw, cr=_CR_4_5, tx_power_dbm=self._power_dbm(), preamble=_PREAMBLE,
                             invert_iq=True, crc=False)
        return self.radio.recv(timeout)

    def _receive_windows(self, t_end, delay1_ms, rx1_freq, rx1_dr, rx2_freq, rx2_dr, accept):
        """RX1 at t_end + delay1, RX2 one second later (§3.3); ``accept(phy, rssi, snr, window)`` turns
        a received frame into a result or None (not for us: keep listening in RX2)."""
        result = None
        for window, t_open, freq, dr in ((1, t_end + delay1_ms, rx1_freq, rx1_dr),
                                         (2, t_end + delay1_ms + 1000, rx2_freq, rx2_dr)):
            got = self._rx_window(t_open, freq, dr)
            if got is not None:
                phy, rssi, snr = got
                result = accept(phy, rssi, snr, window)
                if result is not None:
                    break
        self.radio.sleep()
        return result

    # ------------------------------------------------------------------ Class C
    def now_ms(self):
        """The MAC's millisecond clock (the one its receive windows are timed on)."""
        return self._now()

    def wait_ms(self, ms):
        """Idle ``ms`` on the MAC's clock (between Class C windows)."""
        if ms > 0:
            self._sleep(ms)

    def listen(self, until_ms, freq_hz, dr, on_frame, chunk_ms=30000):
        """A Class C window (LoRaWAN 1.0.4 §6, TS005 McClassCSession): continuous RX on ``freq_hz`` /
        ``dr`` (downlink polarity: inverted IQ, no payload CRC) from now until the MAC clock reaches
        ``until_ms``. Every frame heard is handed to ``on_frame(phy, rssi_dbm, snr_db)``; a true result
        ends the window early (e.g. the data block is complete). The caller opens it between its Class A
        exchanges (send() keeps its own RX1/RX2 windows) and the device is back in Class A when it
        returns. The radio is put back to sleep. Returns the number of frames heard."""
        sf, bw = self.region.dr_params(dr)
        self.radio.configure(freq_hz, sf, bw, cr=_CR_4_5, tx_power_dbm=self._power_dbm(), preamble=_PREAMBLE,
                             invert_iq=True, crc=False)
        heard = 0
        try:
            while True:
                left = until_ms - self._now()
                if left <= 0:
                    break
                got = self.radio.recv(left if left < chunk_ms else chunk_ms, True)
                if got is None:
                    continue
                heard += 1
                if on_frame(got[0], got[1], got[2]):
                    break
        finally:
            self.radio.sleep()
        return heard

    # ------------------------------------------------------------------ downlink
    def _accept_downlink(self, phy, rssi, snr, window):
        s = self.session
        try:
            f = frames.parse_downlink(phy, s.nwk_skey, s.app_skey, s.dev_addr, s.fcnt_down if s.fcnt_down >= 0 else None)
        except LoRaWANError as e:  # FrameError, MICError, ReplayError: not for us, forged or replayed
            self.last_error = str(e)
            _log("downlink dropped:", e)
            return None
        s.fcnt_down = f.fcnt
        s.adr_ack_cnt = 0  # §4.3.1.1: any downlink resets ADR_ACK_CNT
        self._sticky = []  # §5.5/§5.8/§5.10: a downlink ends the repetition of sticky answers
        self._ack_next = f.confirmed
        self._last_snr = int(snr)
        cmds = f.payload if f.fport == 0 else f.fopts
        flash = False
        if cmds:
            flash = self._mac_commands(cmds)
        self._persist(flash)
        _log("downlink fcnt", f.fcnt, "port", f.fport, "ack", f.ack)
        return Downlink(f, rssi, snr, window)

    def _mac_commands(self, data):
        """Apply network MAC commands (§5) and queue the answers; True when persistent radio settings
        changed (they are then written to flash, so a power cut does not lose what the network set)."""
        cmds, problem = maccmd.decode(data, uplink=False)
        if problem:
            self.last_error = problem
        s = self.session
        changed = False
        i = 0
        while i < len(cmds):
            name, p = cmds[i]
            if name == "LinkADRReq":
                j = i
                while j < len(cmds) and cmds[j][0] == "LinkADRReq":
                    j += 1
                changed |= self._link_adr([c[1] for c in cmds[i:j]])
                i = j
                continue
            if name == "LinkCheckAns":
                self.link_check = (p["margin_db"], p["gw_cnt"])
            elif name == "DutyCycleReq":
                self.dc.set_max_dcycle(p["max_duty_cycle"])
                s.max_dcycle = p["max_duty_cycle"]
                self._answers.append(("DutyCycleAns", {}))
                changed = True
            elif name == "RXParamSetupReq":
                freq_ok = self.region.valid_freq(p["frequency_hz"])
                dr_ok = self.region.dr_supported(p["rx2_data_rate"])
                off_ok = p["rx1_dr_offset"] <= self.region.MAX_RX1_DR_OFFSET
                if freq_ok and dr_ok and off_ok:
                    s.rx2_freq_hz, s.rx2_dr, s.rx1_dr_offset = p["frequency_hz"], p["rx2_data_rate"], p["rx1_dr_offset"]
                    changed = True
                self._sticky.append(("RXParamSetupAns", {"channel_ack": freq_ok, "rx2_data_rate_ack": dr_ok,
                                                         "rx1_dr_offset_ack": off_ok}))
            elif name == "DevStatusReq":
                batt = self._battery() if self._battery is not None else 255
                snr = max(-32, min(31, self._last_snr))
                self._answers.append(("DevStatusAns", {"battery": batt, "snr_db": snr}))
            elif name == "NewChannelReq":
                changed |= self._new_channel(p)
            elif name == "RXTimingSetupReq":
                s.rx1_delay_ms = p["delay_s"] * 1000
                self._sticky.append(("RXTimingSetupAns", {}))
                changed = True
            elif name == "DlChannelReq":
                ch = p["ch_index"]
                exists = ch < self.region.MAX_CHANNELS and s.channels[ch] is not None
                freq_ok = self.region.valid_freq(p["frequency_hz"])
                if exists and freq_ok:
                    s.dl_freqs[ch] = p["frequency_hz"]
                    changed = True
                self._sticky.append(("DlChannelAns", {"uplink_frequency_exists": exists,
                                                      "channel_frequency_ok": freq_ok}))
            elif name == "DeviceTimeAns":
                self.device_time = (p["gps_seconds"], p["fraction_256"], self.last_tx_end_ms)
            # TxParamSetupReq is not implemented by EU868 devices (RP002 §2.4.8): no answer. Class B
            # commands are ignored by a Class A device.
            i += 1
        return changed

    def _link_adr(self, reqs):
        """LinkADRReq block (§5.3, RP002 §2.4.5): channel masks applied in order, DR/power/NbTrans from
        the last request; all or nothing; one LinkADRAns per request, all with the same status."""
        s = self.session
        mask = s.ch_mask
        mask_ok = True
        for p in reqs:
            new = self.region.channel_mask_apply(s.channels, p["ch_mask"], p["ch_mask_cntl"])
            if new is None:
                mask_ok = False
                break
            mask = new
        last = reqs[-1]
        dr = s.dr if last["data_rate"] == self.region.DR_KEEP else last["data_rate"]
        power = s.tx_power if last["tx_power"] == self.region.TX_POWER_KEEP else last["tx_power"]
        dr_ok = self.region.dr_supported(dr)
        if dr_ok and mask_ok:  # the DR must be usable on at least one enabled channel
            dr_ok = False
            for i in range(self.region.MAX_CHANNELS):
                c = s.channels[i]
                if mask & (1 << i) and c is not None and c[1] <= dr <= c[2]:
                    dr_ok = True
                    break
        power_ok = 0 <= power <= self.region.MAX_TX_POWER_INDEX
        ok = mask_ok and dr_ok and power_ok
        if ok:
            s.ch_mask = mask
            s.dr = dr
            s.tx_power = power
            s.nb_trans = last["nb_trans"] if last["nb_trans"] else 1
            s.adr_ack_cnt = 0
        for _ in reqs:
            self._answers.append(("LinkADRAns", {"power_ack": power_ok, "data_rate_ack": dr_ok,
                                                 "channel_mask_ack": mask_ok}))
        return ok

    def _new_channel(self, p):
        s = self.session
        ch, freq = p["ch_index"], p["frequency_hz"]
        # RP002 §2.4.2: the three default channels cannot be modified; EU868 has 16 channels.
        index_ok = len(self.region.DEFAULT_CHANNELS) <= ch < self.region.MAX_CHANNELS
        freq_ok = index_ok and (freq == 0 or self.region.valid_freq(freq))
        dr_ok = (index_ok and p["min_dr"] <= p["max_dr"] and self.region.dr_supported(p["min_dr"])
                 and p["max_dr"] <= self.region.MAX_DR + 1)
        ok = freq_ok and dr_ok
        if ok:
            if freq == 0:
                s.channels[ch] = None
                s.ch_mask &= ~(1 << ch)
                s.dl_freqs[ch] = None
            else:
                s.channels[ch] = [freq, p["min_dr"], p["max_dr"]]
                s.ch_mask |= 1 << ch
                s.dl_freqs[ch] = None
        self._answers.append(("NewChannelAns", {"data_rate_range_ok": dr_ok, "channel_frequency_ok": freq_ok}))
        return ok

    # ------------------------------------------------------------------ ADR backoff and persistence
    def _adr_backoff(self):
        """§4.3.1.1: after ADR_ACK_LIMIT uplinks without a downlink the device sets ADRACKReq; after each
        further ADR_ACK_DELAY uplinks it first restores full power, then lowers the data rate one step
        at a time, then re-enables the default channels; beyond that it rejoins (OTAA)."""
        s = self.session
        limit, delay = self.region.ADR_ACK_LIMIT, self.region.ADR_ACK_DELAY
        if not s.adr or s.adr_ack_cnt < limit + delay or (s.adr_ack_cnt - limit) % delay:
            return
        default_mask = (1 << len(self.region.DEFAULT_CHANNELS)) - 1
        if s.tx_power != 0:
            s.tx_power = 0
            s.nb_trans = 1
        elif s.dr > self.region.MIN_DR:
            s.dr -= 1
        elif s.ch_mask & default_mask != default_mask:
            s.ch_mask |= default_mask
        elif s.adr_ack_cnt >= limit + _REJOIN_DELAYS * delay and s.activation == "otaa":
            _log("link lost: session dropped")
            self.store.forget()  # send() rejoins right away
            return
        else:
            return  # at the floor: keep trying until the rejoin threshold
        _log("ADR backoff: dr", s.dr, "power", s.tx_power, "mask %04x" % s.ch_mask)
        self._persist(flash=True)

    def _persist(self, flash=False):
        s = self.session
        s.dutycycle = [self.dc.state(), self._wall()]
        s.max_dcycle = self.dc.max_dcycle
        self.store.save(flash)
