# LoRaWAN session state and its persistence across deep sleep and power loss.
#
# Two stores, both behind the same tiny interface (read() -> bytes or None, write(bytes)):
#  - "rtc": fast memory that survives deep sleep but not power loss (ESP32 RTC slow memory through
#    machine.RTC().memory(), at most 2 KiB; on the unix port a file stands in for it). Written on every
#    uplink, before the frame goes on air.
#  - "flash": a file on the device filesystem, written atomically (temp file + os.rename) and rarely:
#    on each join attempt (DevNonce), on join accept, when the network changes radio parameters, and
#    every `step` uplinks, when the frame counter reserve runs out.
#
# Frame counter rule (LoRaWAN 1.0.4 §4.3.1.5: a device must never reuse FCntUp in a session): flash holds
# `fcnt_limit`, an upper bound on every FCntUp ever used. Before FCntUp n is used, n < fcnt_limit is made
# true in flash (writing n + step), then n + 1 is written to RTC, then the frame is sent. After power
# loss the node resumes at fcnt_limit: it skips forward at most `step` counters, never back.
# DevNonce (LoRaWAN 1.0.4 §6.2.5: a counter starting at 0, never reused for a JoinEUI) is written to
# flash before each join request goes on air.
#
# Records are JSON behind a magic and a CRC-32, so garbage in RTC memory after a cold boot is ignored.
import binascii
import json
import os
import struct

from citynode.compat import const
from citynode.lorawan import LoRaWANError, region

_MAGIC = b"CNL1"
_FCNT_MAX = const(0xFFFFFFFF)
_DEVNONCE_MAX = const(0xFFFF)
DEFAULT_STEP = const(100)


class SessionError(LoRaWANError):
    """Session persistence failed or a counter is exhausted; the message names the record or counter."""


# ---------------------------------------------------------------------------------------------- stores
class MemoryStore:
    """A store in RAM (tests, and a stand-in for RTC memory that a simulated power cut clears)."""

    def __init__(self, data=None):
        self.data = data

    def read(self):
        return self.data

    def write(self, data):
        self.data = bytes(data)

    def clear(self):
        self.data = None


class RTCStore:
    """ESP32 RTC slow memory (survives deep sleep, lost on power loss). ``rtc`` is machine.RTC()."""

    def __init__(self, rtc):
        self._rtc = rtc

    def read(self):
        data = self._rtc.memory()
        return bytes(data) if data else None

    def write(self, data):
        self._rtc.memory(data)


class FileStore:
    """A record in a file, replaced atomically: write ``path.tmp``, then rename over ``path``.

    POSIX and LittleFS (the ESP32 default) replace the target in one step; on FAT, where rename refuses
    to overwrite, the old file is removed first and ``read`` falls back to the complete temp file.
    """

    def __init__(self, path):
        self.path = path
        self._tmp = path + ".tmp"
        self.recovered = False

    def read(self):
        # ``recovered`` tells the caller the data came from the temp file: either the FAT window between
        # remove and rename (complete record) or a first-ever write torn by a power cut (garbage, but
        # then nothing was ever committed, so starting fresh is right).
        self.recovered = False
        for p in (self.path, self._tmp):
            try:
                with open(p, "rb") as f:
                    return f.read()
            except OSError:
                self.recovered = True
        return None

    def write(self, data):
        self._write_tmp(data)
        self._replace()

    def _write_tmp(self, data):
        with open(self._tmp, "wb") as f:
            f.write(data)
            if hasattr(f, "flush"):
                f.flush()

    def _replace(self):
        try:
            os.rename(self._tmp, self.path)
        except OSError:  # FAT: target exists
            os.remove(self.path)
            os.rename(self._tmp, self.path)


def encode_record(d):
    body = json.dumps(d).encode()
    return _MAGIC + struct.pack(">I", binascii.crc32(body) & 0xFFFFFFFF) + body


def decode_record(data):
    """The dict in a record, or None when ``data`` is empty, foreign or corrupt."""
    if not data or len(data) < 8 or bytes(data[:4]) != _MAGIC:
        return None
    body = bytes(data[8:])
    if struct.unpack(">I", bytes(data[4:8]))[0] != binascii.crc32(body) & 0xFFFFFFFF:
        return None
    try:
        d = json.loads(body)
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


def _hex(b):
    return None if b is None else binascii.hexlify(b).decode()


def _unhex(s):
    return None if s is None else binascii.unhexlify(s)


# --------------------------------------------------------------------------------------------- session
class Session:
    """Everything a Class A device must remember. Counters are plain ints; keys are 16-byte bytes.

    Fields (units in names): ``joined``, ``activation`` ("otaa"/"abp"), ``dev_addr``, ``nwk_skey``,
    ``app_skey``, ``fcnt_up`` (next FCntUp to use), ``fcnt_down`` (last accepted FCntDown or -1; LoRaWAN
    1.0.x has one downlink counter, called NFCntDown/AFCntDown only in 1.1), ``dr``, ``tx_power``
    (TXPower index), ``nb_trans``, ``adr``, ``adr_ack_cnt``, ``channels`` (region.default_channels()
    layout), ``ch_mask`` (enabled-channel bitmask), ``dl_freqs`` (DlChannelReq RX1 overrides),
    ``rx1_dr_offset``, ``rx2_dr``, ``rx2_freq_hz``, ``rx1_delay_ms``, ``max_dcycle``, ``dutycycle``
    (DutyCycle.state()), ``devnonce_next``, ``epoch`` (incremented per join), ``fcnt_limit``.
    """

    def __init__(self):
        # Kept across sessions: the next DevNonce, the last accepted JoinNonce (-1 = none; TR007 §4.13:
        # a replayed join-accept is refused) and the session epoch (one per join).
        self.devnonce_next = 0
        self.join_nonce = -1
        self.epoch = 0
        self.reset()

    def reset(self):
        """Forget the network session (not DevNonce, JoinNonce or epoch)."""
        self.joined = False
        self.activation = None
        self.dev_addr = 0
        self.nwk_skey = None
        self.app_skey = None
        self.fcnt_up = 0
        self.fcnt_limit = 0
        self.fcnt_down = -1
        self.reset_radio_params()
        self.dutycycle = None

    def reset_radio_params(self):
        """Region defaults for data rate, power, channels and receive windows (RP002 §2.4)."""
        self.dr = region.JOIN_DR_RANGE[0]
        self.tx_power = 0  # RP002 §2.4.3: TXPower 0 = MaxEIRP (16 dBm) is the default
        self.nb_trans = 1
        self.adr = True
        self.adr_ack_cnt = 0
        self.channels = region.default_channels()
        self.ch_mask = (1 << len(region.DEFAULT_CHANNELS)) - 1
        self.dl_freqs = [None] * region.MAX_CHANNELS
        self.rx1_dr_offset = 0
        self.rx2_dr = region.RX2_DR
        self.rx2_freq_hz = region.RX2_FREQ_HZ
        self.rx1_delay_ms = region.RECEIVE_DELAY1_MS
        self.max_dcycle = 0

    _INTS = ("dev_addr", "fcnt_up", "fcnt_limit", "fcnt_down", "dr", "tx_power", "nb_trans", "adr_ack_cnt",
             "ch_mask", "rx1_dr_offset", "rx2_dr", "rx2_freq_hz", "rx1_delay_ms", "max_dcycle",
             "devnonce_next", "join_nonce", "epoch")

    def to_dict(self):
        d = {"joined": self.joined, "activation": self.activation, "adr": self.adr,
             "nwk_skey": _hex(self.nwk_skey), "app_skey": _hex(self.app_skey),
             "channels": self.channels, "dl_freqs": self.dl_freqs, "dutycycle": self.dutycycle}
        for k in self._INTS:
            d[k] = getattr(self, k)
        return d

    @classmethod
    def from_dict(cls, d):
        s = cls()
        try:
            for k in cls._INTS:
                setattr(s, k, int(d[k]))
            s.joined = bool(d["joined"])
            s.activation = d["activation"]
            s.adr = bool(d["adr"])
            s.nwk_skey = _unhex(d["nwk_skey"])
            s.app_skey = _unhex(d["app_skey"])
            s.channels = d["channels"]
            s.dl_freqs = d["dl_freqs"]
            s.dutycycle = d["dutycycle"]
            if len(s.channels) != region.MAX_CHANNELS or len(s.dl_freqs) != region.MAX_CHANNELS:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise SessionError("session record: bad or missing field")
        return s


class SessionStore:
    """Loads and saves a Session across deep sleep (``rtc``) and power loss (``flash``).

    ``flash`` and ``rtc`` are stores (FileStore, RTCStore, MemoryStore); ``rtc`` may be None. ``step`` is
    how many FCntUp values each flash write reserves: flash wear is one write per ``step`` uplinks, and
    a power cut costs at most ``step`` skipped counters.
    """

    def __init__(self, flash, rtc=None, step=DEFAULT_STEP):
        if step < 1:
            raise ValueError("step")
        self.flash = flash
        self.rtc = rtc
        self.step = step
        self.flash_writes = 0
        self.session = None

    def load(self):
        """The newest trustworthy Session: RTC when it belongs to the flash record's session, else flash."""
        raw = self.flash.read()
        f = decode_record(raw)
        if f is None and raw and not getattr(self.flash, "recovered", False):
            # A committed flash record that is corrupt must not silently restart DevNonce at 0.
            raise SessionError("flash session record is corrupt")
        r = decode_record(self.rtc.read()) if self.rtc is not None else None
        fs = Session.from_dict(f) if f is not None else Session()
        s = fs
        if r is not None:
            rs = Session.from_dict(r)
            if rs.epoch == fs.epoch:
                s = rs
                # Flash is the authority for the reserve and DevNonce; RTC for exact counters and params.
                s.fcnt_limit = fs.fcnt_limit
                s.devnonce_next = max(s.devnonce_next, fs.devnonce_next)
                s.join_nonce = max(s.join_nonce, fs.join_nonce)
        if s is fs:
            # Cold boot after power loss: resume at the reserve limit, skipping forward, never back.
            s.fcnt_up = max(s.fcnt_up, s.fcnt_limit)
        self.session = s
        return s

    # -- writes
    def save(self, flash=False):
        """Write the session to RTC memory, and to flash when ``flash`` (parameters the network set)."""
        s = self.session
        if flash:
            self._write_flash()
        self._write_rtc()
        return s

    def _write_flash(self):
        self.flash.write(encode_record(self.session.to_dict()))
        self.flash_writes += 1

    def _write_rtc(self):
        if self.rtc is not None:
            self.rtc.write(encode_record(self.session.to_dict()))

    # -- counters
    def take_fcnt_up(self):
        """The FCntUp for the next uplink, persisted so that it can never be handed out again."""
        s = self.session
        n = s.fcnt_up
        if n > _FCNT_MAX:
            raise SessionError("fcnt_up exhausted: rejoin required")
        if n >= s.fcnt_limit:
            s.fcnt_limit = n + self.step
            self._write_flash()
        s.fcnt_up = n + 1
        self._write_rtc()
        return n

    def take_devnonce(self):
        """The DevNonce for the next join request (LoRaWAN 1.0.4 §6.2.5), persisted in flash first."""
        s = self.session
        d = s.devnonce_next
        if d > _DEVNONCE_MAX:
            raise SessionError("devnonce exhausted: the device needs a new JoinEUI/AppKey")
        s.devnonce_next = d + 1
        self._write_flash()
        self._write_rtc()
        return d

    def start(self, activation, dev_addr, nwk_skey, app_skey, cflist=None):
        """Begin a new session after a join accept (or ABP activation); persisted to flash and RTC."""
        s = self.session
        s.epoch += 1
        s.reset()
        s.joined = True
        s.activation = activation
        s.dev_addr = dev_addr
        s.nwk_skey = bytes(nwk_skey)
        s.app_skey = bytes(app_skey)
        if cflist:
            region.apply_cflist(s.channels, cflist)
            for i in range(region.MAX_CHANNELS):
                if s.channels[i] is not None:
                    s.ch_mask |= 1 << i
        s.fcnt_limit = self.step
        self._write_flash()
        self._write_rtc()
        return s

    def forget(self):
        """Drop the network session (before a rejoin); DevNonce and epoch are kept."""
        s = self.session
        s.reset()
        s.epoch += 1
        self._write_flash()
        self._write_rtc()
