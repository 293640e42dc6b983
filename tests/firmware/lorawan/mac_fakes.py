# Test doubles for the Class A MAC, in MicroPython-compatible Python: the tests prepend this file to the
# snippets they run on the MicroPython unix port (and import it under CPython).
#
# FakeClock: a millisecond clock that only moves when the MAC sleeps or the radio is on air.
# FakeRadio: the citynode.radio.base.Radio interface. send() advances the clock by the LoRa time on air
#   and hands the frame to a scripted network; recv() delivers a downlink only when the radio is tuned to
#   the downlink's frequency, spreading factor and bandwidth, with inverted IQ, and listening at the instant
#   the network starts transmitting it, exactly like a receiver that must catch the preamble.
# Network: a scripted LoRaWAN network built on citynode.lorawan.frames (join server + network server
#   rolled into one): decodes and MIC-checks every uplink, and answers as the test tells it.
from citynode.lorawan import airtime, crypto, frames, maccmd, region

APP_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
JOIN_EUI = bytes.fromhex("70B3D57ED0000001")
DEV_EUI = bytes.fromhex("0004A30B001C0530")
NET_ID = 0x000013
DEV_ADDR = 0x260B1234
CFLIST_FREQS = [867100000, 867300000, 867500000, 867700000, 867900000]


class FakeClock:
    def __init__(self, t=1000000):
        self.t = t

    def __call__(self):
        return self.t

    def sleep(self, ms):
        if ms < 0:
            raise ValueError("negative sleep")
        self.t += ms


def _toa_ms(n, sf, bw):
    return airtime.time_on_air_ms(n, sf, bw)


class FakeRadio:
    def __init__(self, clock, network):
        self.clock = clock
        self.net = network
        self.cfg = None
        self.pending = []  # [t_start_ms, freq, sf, bw, phy]
        self.log = []

    def configure(self, freq_hz, sf, bw_hz, cr=5, tx_power_dbm=14, preamble=8, invert_iq=False, crc=True):
        self.cfg = (freq_hz, sf, bw_hz, cr, tx_power_dbm, preamble, invert_iq, crc)

    def send(self, data):
        freq, sf, bw, cr, power, preamble, iq, crc = self.cfg
        assert not iq and crc and cr == 5 and preamble == 8, "uplink radio settings"
        t0 = self.clock.t
        self.clock.t += _toa_ms(len(data), sf, bw)
        self.log.append({"op": "tx", "t0": t0, "t_end": self.clock.t, "freq": freq, "sf": sf, "bw": bw,
                         "power": power, "phy": bytes(data)})
        for delay, dfreq, ddr, phy in self.net.on_uplink(bytes(data), freq, sf, bw):
            dsf, dbw = region.dr_params(ddr)
            self.pending.append([self.clock.t + delay, dfreq, dsf, dbw, phy])

    def recv(self, timeout_ms, continuous=False):
        freq, sf, bw, _, _, _, iq, crc = self.cfg
        t = self.clock.t
        entry = {"op": "rx", "t_open": t, "timeout": timeout_ms, "freq": freq, "sf": sf, "bw": bw, "iq": iq,
                 "crc": crc, "got": False, "continuous": continuous}
        self.log.append(entry)
        for p in self.pending:
            start, dfreq, dsf, dbw, phy = p
            # The preamble must start while we listen (a late opener misses it).
            if iq and dfreq == freq and dsf == sf and dbw == bw and t <= start <= t + timeout_ms:
                self.pending.remove(p)
                self.clock.t = start + _toa_ms(len(phy), sf, bw)
                entry["got"] = True
                return (phy, -87, 7)
        self.clock.t = t + timeout_ms
        self.pending = [p for p in self.pending if p[0] >= self.clock.t]
        return None

    def sleep(self):
        pass

    def standby(self):
        pass

    def txs(self):
        return [e for e in self.log if e["op"] == "tx"]

    def rxs(self):
        return [e for e in self.log if e["op"] == "rx"]


class Network:
    """A scripted network. ``script`` decides the answer to each uplink: a callable
    (net, kind, frame) -> list of (window, fields) where window is 1 or 2 and fields are keyword
    arguments for the downlink (fport, payload, fopts, confirmed, ack) or for the join-accept."""

    def __init__(self, script=None, app_key=APP_KEY, dev_addr=DEV_ADDR, cflist=True):
        self.script = script
        self.app_key = app_key
        self.dev_addr = dev_addr
        self.cflist = cflist
        self.join_nonce = 0
        self.nwk = None
        self.app = None
        self.fcnt_down = 0
        self.fcnt_up_last = None
        self.uplinks = []  # decoded DataFrames
        self.joins = []  # decoded JoinRequests
        self.rx1_offset = 0
        self.rx1_delay_ms = 1000
        self.rx2 = (region.RX2_FREQ_HZ, region.RX2_DR)
        self.dl_freqs = {}
        self.last_phy = None

    def _dr(self, sf, bw):
        return region.DATA_RATES.index((sf, bw))

    def on_uplink(self, phy, freq, sf, bw):
        dr = self._dr(sf, bw)
        if frames.mtype_of(phy) == frames.JOIN_REQUEST:
            jr = frames.parse_join_request(phy, self.app_key)
            self.joins.append(jr)
            answers = self.script(self, "join", jr) if self.script else [(1, {})]
            out = []
            for window, f in answers:
                self.join_nonce += 1
                jf = {"frequencies": CFLIST_FREQS} if self.cflist else {}
                jf.update(f)
                key = jf.pop("app_key", self.app_key)
                ja = frames.build_join_accept(key, self.join_nonce, NET_ID, self.dev_addr, **jf)
                self.nwk, self.app = crypto.derive_session_keys(self.app_key, self.join_nonce, NET_ID, jr.dev_nonce)
                self.fcnt_down = 0
                self.fcnt_up_last = None
                self.rx1_offset = jf.get("rx1_dr_offset", 0)
                self.rx1_delay_ms = 1000 * jf.get("rx_delay_s", 1)
                self.rx2 = (region.RX2_FREQ_HZ, jf.get("rx2_dr", region.RX2_DR))
                if window == 1:
                    out.append((region.JOIN_ACCEPT_DELAY1_MS, freq, region.rx1_dr(dr, 0), ja))
                else:
                    out.append((region.JOIN_ACCEPT_DELAY2_MS, region.RX2_FREQ_HZ, region.RX2_DR, ja))
            return out
        # A retransmission repeats the last FCnt (NbTrans, confirmed retries): the network accepts it once more.
        last = self.fcnt_up_last
        f = frames.parse_uplink(phy, self.nwk, self.app, self.dev_addr, last - 1 if last else None)
        f.freq = freq
        f.dr = dr
        self.uplinks.append(f)
        self.fcnt_up_last = f.fcnt
        answers = self.script(self, "up", f) if self.script else []
        out = []
        for window, fields in answers:
            phy_dn = fields.pop("raw", None)
            if phy_dn is None:
                phy_dn = frames.build_downlink(self.nwk, self.app, self.dev_addr, self.fcnt_down, **fields)
                self.fcnt_down += 1
            self.last_phy = phy_dn
            if window == 1:
                dl_freq = self.dl_freqs.get(freq, freq)
                out.append((self.rx1_delay_ms, dl_freq, region.rx1_dr(dr, self.rx1_offset), phy_dn))
            else:
                out.append((self.rx1_delay_ms + 1000, self.rx2[0], self.rx2[1], phy_dn))
        return out


def mac_cmds(*cmds):
    """Encode (name, fields) pairs as network-sent MAC commands."""
    return maccmd.encode_all(list(cmds))


def uplink_cmds(frame):
    """The MAC commands a device put in an uplink (FOpts or FPort 0), as [name, fields] lists."""
    data = frame.payload if frame.fport == 0 else frame.fopts
    cmds, problem = maccmd.decode(data, uplink=True)
    assert problem is None, problem
    return [[n, f] for n, f in cmds]
