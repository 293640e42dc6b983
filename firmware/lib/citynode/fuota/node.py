# FUOTA in the node application: the three packages (citynode.fuota.Fuota) wired to the MAC's Class A
# uplinks and Class C windows, the GPS clock they run on, and the step from a complete data block to a
# running update (a hand-over to the boot step, which checks the package and installs it before the app
# is built: citynode.fuota.install.pending).
#
# The app imports this module on the first downlink on fPort 200, 201 or 202 (or, on a node provisioned
# for FUOTA, to send AppTimeReq after its join), so a node that is never updated loads none of it.
#
# Time: the packages speak GPS seconds. The node's GPS clock is the MAC's millisecond clock plus an
# offset, first guessed from the wall clock, then corrected by TS003 (AppTimeReq with AnsRequired: the
# network answers with the correction even when it is 0). A McClassCSessionReq that arrives before the
# clock is synchronised asks for the time again.
#
# State that survives a reboot (fuota.json, atomic writes, as citynode.files writes every small record):
# the TS004 v2 SessionCnt of the last accepted FragSessionSetupReq (replay protection); the multicast
# groups ("mc": McAddr, the derived session keys, the FCnt range and the last accepted McFCnt) and their
# Class C sessions ("mc_c"), written when a McGroupSetup/Delete or McClassCSession is accepted; an
# unfinished fragmentation session ("frag": the FragSessionSetupReq's parameters and the bitmap of the
# uncoded fragments already in the block file), written at the setup and at checkpoints (after each
# Class C window, at most every 30 s, the block file flushed first); and, once a block is complete,
# its FragIndex and fragment count ("done") with the hand-over to the boot step ("install"), so that the
# FragSessionStatusReq after the Class C session is answered after the reboot into the new version.
# A reboot during a session resumes it: the groups, the window and the uncoded fragments received up to
# the last checkpoint are kept; the coded fragments (rows of the decoder's matrix, in RAM) and those
# received since the checkpoint are lost and made up by the redundancy. The McFCnt kept is the one of
# the last checkpoint, so a replay of a frame received after it is taken again: its fragment is one
# the block already holds or needs (a fragment is data, not a command).
from citynode import files
from citynode.compat import const
from citynode.fuota.store import BLOCK_PATH, STATE_PATH

_GPS_MINUS_UNIX = const(-315964782)  # GPS s = Unix s - 315964800 + 18 leap seconds (since 2017)
_STEP_MS = const(30000)  # longest wait or window between two watchdog feeds
_PORT_MULTICAST = const(200)
_PORT_FRAG = const(201)
_PORT_CLOCK = const(202)


def _hex(b):
    from binascii import hexlify

    return hexlify(b).decode()


def app_time_req(token, gps_s):
    """An AppTimeReq with AnsRequired (TS003): 01 | DeviceTime (4, LE) | Param."""
    b = bytearray(6)
    b[0] = 0x01
    for i in range(4):
        b[1 + i] = (gps_s >> (8 * i)) & 0xFF
    b[5] = (token & 0x0F) | 0x10
    return bytes(b)


class FuotaNode:
    """``config``: the node's config (``gen_app_key``, ``fuota_pub``, optional ``fuota_versions``,
    ``fuota_block_max``, ``fuota_max_missing``). ``mac``: the citynode.lorawan.mac.ClassA (its clock, its
    Class C windows). ``wall_s``: seconds since the Unix epoch (the first guess of the GPS clock).
    ``running``: the app version the node runs. ``factory_tree``: the directory of the flashed app (copied
    into a slot with the package's changes), None when it is frozen. ``rand``: getrandbits-like."""

    def __init__(self, config, mac, wall_s, running, factory_tree=None, out=print, rand=None, root=""):
        from binascii import unhexlify

        from citynode.fuota import Fuota
        from citynode.fuota.store import FileStore

        key = config.get("gen_app_key")
        pub = config.get("fuota_pub")
        self.pub = unhexlify(pub) if pub else None
        self.mac = mac
        self.running = running
        self.factory_tree = factory_tree
        self.out = out
        self.root = root
        if rand is None:
            from random import getrandbits as rand
        self._rand = rand
        self.fuota = Fuota(unhexlify(key) if key else bytes(16),
                           FileStore(root + BLOCK_PATH, config.get("fuota_block_max", 65536)),
                           versions=tuple(config.get("fuota_versions", (2, 2, 2))),
                           max_missing=config.get("fuota_max_missing", 128))
        self.state = files.read(root + STATE_PATH, None) or {}
        self.answers = []  # [due MAC ms, fPort, payload], sent as Class A uplinks
        self._gps0 = (int(wall_s()) + _GPS_MINUS_UNIX) * 1000 - mac.now_ms()
        self.handed_over = False  # the complete block is handed over to the boot step: reboot
        self.refused = None  # why the complete block was refused here (no fuota_pub)
        self._saved_received = -1  # fragments received at the last checkpoint
        self._restore()

    # ---- across a reboot ---------------------------------------------------------------------------

    def _restore(self):
        """Take back the multicast groups, the Class C session and the fragmentation session of
        fuota.json (a reboot during a session); a session still pending asks for the time again."""
        st = self.state
        f = self.fuota
        if st.get("mc"):
            f.handle(_PORT_MULTICAST, b"")  # makes the package object
            f.multicast.restore(st["mc"], st.get("mc_c"))
        if st.get("frag"):
            from binascii import unhexlify

            f.handle(_PORT_FRAG, b"")
            fr = f.fragmentation
            fr.last_session_cnt = st.get("session_cnt", -1)
            try:
                ok = fr.restore(unhexlify(st["frag"][0]), unhexlify(st["frag"][1]))
            except (TypeError, ValueError, IndexError):
                ok = False
            if ok:
                self._saved_received = fr.received
                self.out("fuota: session resumed, %d of %d fragments kept" % (fr.received, fr.nb_frag))
            else:
                self._save(frag=None)
        if self.session() is not None:
            self.ask_time()
        elif st.get("mc_c"):
            self._save(mc_c=None)  # the session is over: a later boot need not load FUOTA for it

    def checkpoint(self):
        """Persist the fragments received so far (their bitmap, after the block file is flushed) and the
        multicast groups' frame counters, when more fragments came since the last checkpoint."""
        fr = self.fuota.fragmentation
        if fr is None or not fr.active or fr.complete or fr.received == self._saved_received:
            return
        flush = getattr(fr.store, "flush", None)
        if flush is not None:
            flush()
        mc = self.fuota.multicast
        self._save(frag=[_hex(fr.setup), _hex(fr.known())],
                   mc=mc.state() if mc is not None else None)
        self._saved_received = fr.received

    # ---- the GPS clock ----------------------------------------------------------------------------

    def gps(self):
        return (self._gps0 + self.mac.now_ms()) // 1000

    def gps_to_ms(self, gps_s):
        return gps_s * 1000 - self._gps0

    def _clock(self):
        f = self.fuota
        if f.clock is None:
            f.handle(_PORT_CLOCK, b"")  # makes the package object
        return f.clock

    def ask_time(self):
        """Queue an AppTimeReq with AnsRequired (after the join; before a Class C session)."""
        self._clock()
        for a in self.answers:
            if a[1] == _PORT_CLOCK and a[2][0] == 0x01:
                return
        self.answers.append([0, _PORT_CLOCK, None])  # built when sent: DeviceTime is the send time

    # ---- downlinks ---------------------------------------------------------------------------------

    def downlink(self, port, data, multicast=False):
        """A downlink on fPort 200..202 (unicast in a Class A window, or multicast in a Class C one)."""
        f = self.fuota
        if port == _PORT_FRAG:
            if f.fragmentation is None:
                f.handle(_PORT_FRAG, b"")
                f.fragmentation.last_session_cnt = self.state.get("session_cnt", -1)
            fr = f.fragmentation
            if not fr.active and data and data[0] == 0x01 and self.state.get("done"):
                ans = self._done_status(data)
            else:
                ans = f.handle(port, data, self.gps())
            if fr.last_session_cnt != self.state.get("session_cnt", -1):
                self._save(session_cnt=fr.last_session_cnt, done=None)
            if not multicast:  # a session set up (its parameters, no fragment yet) or deleted
                saved = self.state.get("frag")
                if fr.active and not fr.complete and (saved is None or saved[0] != _hex(fr.setup)):
                    self._save(frag=[_hex(fr.setup), _hex(fr.known())])
                    self._saved_received = fr.received
                elif not fr.active and saved is not None:
                    self._save(frag=None)
        else:
            ans = f.handle(port, data, self.gps())
            if port == _PORT_MULTICAST and not multicast and f.multicast is not None:
                self._save(mc=f.multicast.state(), mc_c=f.multicast.windows())
        if f.clock is not None and f.clock.correction:
            self._gps0 += f.clock.take_correction() * 1000
        if port == _PORT_MULTICAST and f.multicast is not None and self.session() is not None:
            if not (f.clock is not None and f.clock.synced):
                self.ask_time()
        if ans:
            due = 0
            if port == _PORT_FRAG and ans[0] == 0x01:
                # FragSessionStatusAns: spread over [0, answer_delay_max_s] so a group does not answer at once
                n = f.fragmentation.answer_delay_max_s * 1000
                due = self.mac.now_ms() + (self._rand(24) % (n + 1) if n > 0 else 0)
            self.answers.append([due, port, ans])
        fr = f.fragmentation
        if fr is not None and fr.pending is not None:  # v2 FragDataBlockReceivedReq
            self.answers.append([0, _PORT_FRAG, fr.pending])
            fr.pending = None

    def _done_status(self, data):
        """FragSessionStatusReq for the block completed before the reboot: all received, none missing."""
        idx, received = self.state["done"]
        if len(data) < 2 or (data[1] >> 1) & 0x03 != idx:
            return None
        rec = (min(received, 16383) | (idx << 14)).to_bytes(2, "little")
        if self.fuota.fragmentation.version == 1:
            return b"\x01" + rec + b"\x00\x00"
        return b"\x01\x00" + rec + b"\x00"

    def _save(self, **kw):
        self.state.update(kw)
        files.write(self.root + STATE_PATH, self.state)

    # ---- the Class C session -----------------------------------------------------------------------

    def session(self):
        """(start MAC ms, end MAC ms, freq Hz, DR) of the next or open Class C session, or None."""
        mc = self.fuota.multicast
        if mc is None:
            return None
        now = self.gps()
        best = None
        for w in mc.class_c:
            if w is not None and w[1] > now and (best is None or w[0] < best[0]):
                best = w
        if best is None:
            return None
        return self.gps_to_ms(best[0]), self.gps_to_ms(best[1]), best[2], best[3]

    def busy(self):
        """True while the node must stay awake for FUOTA: answers to send, a session pending or open."""
        fr = self.fuota.fragmentation
        return bool(self.answers) or self.session() is not None or (
            fr is not None and fr.active and fr.complete and not self.handed_over and self.refused is None)

    def _on_frame(self, phy, rssi, snr):
        mc = self.fuota.multicast
        got = mc.open_frame(phy, self.gps())
        if got is None:
            return False
        self.downlink(got[1], got[2], multicast=True)
        fr = self.fuota.fragmentation
        return fr is not None and fr.complete

    def due_answers(self):
        now = self.mac.now_ms()
        return [a for a in self.answers if a[0] <= now]

    def send_answers(self, send):
        """Send the answers that are due, each as one uplink through ``send(fport, payload)`` (the app's,
        so a downlink in its RX windows comes back to downlink())."""
        for _ in range(8):
            due = self.due_answers()
            if not due:
                return
            a = due[0]
            self.answers.remove(a)
            payload = a[2]
            if payload is None:  # AppTimeReq: DeviceTime at the send
                payload = app_time_req(self._clock().token, self.gps())
            send(a[1], payload)

    def wait(self, ms, send, feed=None):
        """Spend up to ``ms`` MAC ms as FUOTA needs: Class C windows while a session is open (continuous
        RX on its frequency and DR), Class A uplinks for the answers when they are due, idle otherwise.
        Returns early once nothing is left to do (the app then sleeps its own way)."""
        mac = self.mac
        deadline = mac.now_ms() + ms
        while mac.now_ms() < deadline:
            if feed is not None:
                feed()
            self.send_answers(send)
            if self.finish() and not self.answers:
                return  # the answers queued before the reboot (a status request after the block) go first
            if not self.busy():
                return
            now = mac.now_ms()
            until = min(deadline, now + _STEP_MS)
            for a in self.answers:
                if a[0] < until:
                    until = max(now + 1, a[0])
            s = self.session()
            if s is not None and s[0] <= now:
                mac.listen(min(until, s[1]), s[2], s[3], self._on_frame)
                self.checkpoint()  # at most every _STEP_MS: what a reboot would lose
            else:
                if s is not None and s[0] < until:
                    until = s[0]
                mac.wait_ms(until - now)
        self.finish()

    # ---- a complete data block -> the boot step ----------------------------------------------------

    def finish(self):
        """Once the block is complete: hand it over to the boot step (citynode.fuota.install.pending, run
        by slots.select before the app is built) with one atomic write of fuota.json, and ask for the
        reboot (``handed_over``); without ``fuota_pub`` the block is refused here. Returns
        ``handed_over``."""
        fr = self.fuota.fragmentation
        if fr is None or not fr.complete or self.handed_over or self.refused is not None:
            return self.handed_over
        from citynode.fuota import slots

        if self.pub is None:
            self._save(done=[fr.index, fr.received])
            self.refused = "no fuota_pub"
            slots.refused(self.refused, self.root)
            self.out("update refused: %s" % self.refused)
            return False
        close = getattr(fr.store, "close", None)
        if close is not None:
            close()  # the whole block on flash before the hand-over names it
        self._save(done=[fr.index, fr.received], frag=None, mc_c=None,
                   install={"seq": (slots.read(self.root).get("block") or 0) + 1, "length": fr.length, "running": self.running,
                            "tree": self.factory_tree})
        self.handed_over = True
        self.out("update received (%d bytes): rebooting to check and install it" % fr.length)
        return True
