"""The network side of the LoRaWAN application-layer packages, as ChirpStack v4 speaks them.

TS003 clock synchronization (fPort 202), TS004 fragmented data block transport (201) and TS005 remote
multicast setup (200): the requests ChirpStack's FUOTA flow sends, the answers it parses, the keys it
derives and the FEC-coded fragments it enqueues. Byte layouts and derivations: docs/design/fuota.md
(facts read from ``lrwn/src/applayer`` and ``chirpstack/src/applayer``). The parity lines of the FEC
code come from the firmware's own generator (``citynode.fuota.fragmentation.parity_line``), whose
tests check it against ChirpStack's tables; AES and CMAC from ``cryptography``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.paths import firmware_module

__all__ = [
    "McClassCSessionAns",
    "FragSessionStatusAns",
    "app_time_ans",
    "data_fragments",
    "encrypt_mc_key",
    "frag_session_setup_ans_error",
    "frag_session_setup_req",
    "frag_session_status_req",
    "mc_class_c_session_req",
    "mc_group_setup_ans_error",
    "mc_group_setup_req",
    "mc_ke_key",
    "mc_root_key",
    "mc_session_keys",
    "parse_frag_session_status_ans",
    "parse_mc_class_c_session_ans",
]


def _aes_encrypt(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _aes_decrypt(key: bytes, block: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return dec.update(block) + dec.finalize()


# ------------------------------------------------------------------ TS005 keys


def mc_root_key(gen_app_key: bytes) -> bytes:
    """LoRaWAN 1.0.x: McRootKey = aes128_encrypt(GenAppKey, 0x00 | pad16)."""
    return _aes_encrypt(gen_app_key, bytes(16))


def mc_ke_key(root: bytes) -> bytes:
    """McKEKey = aes128_encrypt(McRootKey, 0x00 | pad16)."""
    return _aes_encrypt(root, bytes(16))


def encrypt_mc_key(ke_key: bytes, mc_key: bytes) -> bytes:
    """McKey_encrypted = aes128_decrypt(McKEKey, McKey), so that the device decrypts with the forward cipher."""
    return _aes_decrypt(ke_key, mc_key)


def mc_session_keys(mc_key: bytes, mc_addr: int) -> tuple[bytes, bytes]:
    """(McAppSKey, McNwkSKey) = aes128_encrypt(McKey, 0x01 / 0x02 | McAddr (LE) | pad16)."""
    tail = struct.pack("<I", mc_addr) + bytes(11)
    return _aes_encrypt(mc_key, b"\x01" + tail), _aes_encrypt(mc_key, b"\x02" + tail)


# ------------------------------------------------------------------ TS005 commands


def mc_group_setup_req(mc_addr: int, mc_key_encrypted: bytes, group: int = 0, min_fcnt: int = 0,
                       max_fcnt: int = 0xFFFFFFFF) -> bytes:
    """McGroupSetupReq (CID 0x02): header | McAddr | McKey_encrypted | minMcFCount | maxMcFCount."""
    return bytes([0x02, group & 0x03]) + struct.pack("<I", mc_addr) + mc_key_encrypted + struct.pack(
        "<II", min_fcnt, max_fcnt)


def mc_class_c_session_req(session_time_gps: int, timeout: int, freq_hz: int, dr: int, group: int = 0) -> bytes:
    """McClassCSessionReq (CID 0x04): header | SessionTime (GPS s) | TimeOut | DLFrequ (100 Hz) | DR."""
    freq = (freq_hz // 100).to_bytes(3, "little")
    return bytes([0x04, group & 0x03]) + struct.pack("<I", session_time_gps & 0xFFFFFFFF) + bytes(
        [timeout & 0x0F]) + freq + bytes([dr])


def mc_group_setup_ans_error(payload: bytes) -> bool | None:
    """McGroupSetupAns: True for IDerror, False for success, None when it is not that answer."""
    if len(payload) < 2 or payload[0] != 0x02:
        return None
    return bool(payload[1] & 0x04)


@dataclass(frozen=True)
class McClassCSessionAns:
    dr_error: bool
    freq_error: bool
    mc_group_undefined: bool
    start_missed: bool  # v2 only
    time_to_start: int | None

    @property
    def ok(self) -> bool:
        return not (self.dr_error or self.freq_error or self.mc_group_undefined or self.start_missed)

    def error_msg(self, version: int) -> str:
        """ChirpStack's device error message (``applayer/multicastsetup.rs``)."""
        msg = (f"Error: McClassCSessionAns response dr_error: {_rs(self.dr_error)}, freq_error: "
               f"{_rs(self.freq_error)}, mc_group_undefined: {_rs(self.mc_group_undefined)}")
        return msg + (f", start_missed: {_rs(self.start_missed)}" if version == 2 else "")


def parse_mc_class_c_session_ans(payload: bytes, version: int) -> McClassCSessionAns | None:
    """McClassCSessionAns (CID 0x04): Status | TimeToStart (3, only when bits 4..2 are clear)."""
    if len(payload) < 2 or payload[0] != 0x04:
        return None
    st = payload[1]
    tts = None
    if st & 0x1C == 0:
        if len(payload) < 5:
            return None
        tts = int.from_bytes(payload[2:5], "little")
    return McClassCSessionAns(bool(st & 0x04), bool(st & 0x08), bool(st & 0x10),
                              version == 2 and bool(st & 0x20), tts)


# ------------------------------------------------------------------ TS004


def frag_session_setup_req(version: int, payload: bytes, frag_size: int, block_ack_delay: int,
                           descriptor: bytes, matrix: int = 0, session_cnt: int = 0,
                           gen_app_key: bytes | None = None) -> bytes:
    """FragSessionSetupReq (CID 0x02) for FragIndex 0, multicast group 0, as ChirpStack builds it;
    v2 adds SessionCnt and the data block's MIC (DataBlockIntKey from the GenAppKey)."""
    nb_frag = -(-len(payload) // frag_size)
    padding = (frag_size - len(payload) % frag_size) % frag_size
    desc = descriptor if len(descriptor) == 4 else bytes(4)
    algo = 0 if version == 2 else matrix  # v2: FragAlgo 0 (ChirpStack sets it), AckReception 0
    head = bytes([0x02, 0x01]) + struct.pack("<H", nb_frag) + bytes(
        [frag_size, (block_ack_delay & 0x07) | ((algo & 0x07) << 3), padding]) + desc
    if version != 2:
        return head
    key = _aes_encrypt(gen_app_key or bytes(16), b"\x30" + bytes(15))  # DataBlockIntKey
    b0 = b"\x49" + struct.pack("<H", session_cnt) + b"\x00" + desc + bytes(4) + struct.pack("<I", len(payload))
    c = cmac.CMAC(algorithms.AES(key))
    c.update(b0 + payload)
    return head + struct.pack("<H", session_cnt) + c.finalize()[:4]


def frag_session_setup_ans_error(payload: bytes, version: int) -> str | None:
    """'' for a FragSessionSetupAns without error bits, ChirpStack's error message otherwise, None when
    the payload is not that answer (``applayer/fragmentation.rs``)."""
    if len(payload) < 2 or payload[0] != 0x02:
        return None
    st = payload[1]
    if version == 2:
        bits = {"frag_algo_unsupported": st & 0x01, "not_enough_memory": st & 0x02,
                "frag_index_unsupported": st & 0x04, "wrong_descriptor": st & 0x08, "session_cnt_replay": st & 0x10}
    else:
        bits = {"encoding_unsupported": st & 0x01, "not_enough_memory": st & 0x02,
                "frag_session_index_not_supported": st & 0x04, "wrong_descriptor": st & 0x08}
    if not any(bits.values()):
        return ""
    return "Error: FragSessionAns response " + ", ".join(f"{k}={_rs(bool(v))}" for k, v in bits.items())


def frag_session_status_req() -> bytes:
    """FragSessionStatusReq (CID 0x01) with Participants = 1, FragIndex 0."""
    return bytes([0x01, 0x01])


@dataclass(frozen=True)
class FragSessionStatusAns:
    nb_frag_received: int
    missing_frag: int
    memory_error: bool
    mic_error: bool = False  # v2
    session_does_not_exist: bool = False  # v2

    @property
    def ok(self) -> bool:
        return not (self.missing_frag or self.memory_error or self.mic_error or self.session_does_not_exist)

    def error_msg(self, version: int) -> str:
        """ChirpStack's device error message (``applayer/fragmentation.rs``)."""
        head = (f"Error: FragSessionStatusAns response nb_frag_received={self.nb_frag_received}, "
                f"missing_frag={self.missing_frag}, ")
        if version == 2:
            return head + (f"memory_error={_rs(self.memory_error)}, mic_error={_rs(self.mic_error)}, "
                           f"session_does_not_exist={_rs(self.session_does_not_exist)}")
        return head + f"not_enough_matrix_memory={_rs(self.memory_error)}"


def parse_frag_session_status_ans(payload: bytes, version: int) -> FragSessionStatusAns | None:
    """FragSessionStatusAns (CID 0x01): v1 ReceivedAndIndex | MissingFrag | Status; v2 Status first."""
    if len(payload) < 5 or payload[0] != 0x01:
        return None
    if version == 2:
        st = payload[1]
        rx = struct.unpack_from("<H", payload, 2)[0] & 0x3FFF
        return FragSessionStatusAns(rx, payload[4], bool(st & 0x01), bool(st & 0x02), bool(st & 0x04))
    rx = struct.unpack_from("<H", payload, 1)[0] & 0x3FFF
    return FragSessionStatusAns(rx, payload[3], bool(payload[4] & 0x01))


def data_fragments(payload: bytes, frag_size: int, redundancy_pct: int, version: int) -> list[bytes]:
    """Every DataFragment (CID 0x08) ChirpStack enqueues: the padded block's M uncoded fragments, then
    R = ceil(M * redundancy / 100) coded ones (XOR of the uncoded fragments of parity line n)."""
    frag = firmware_module("citynode.fuota.fragmentation")
    m = -(-len(payload) // frag_size)
    block = payload + bytes(m * frag_size - len(payload))
    pieces = [block[i * frag_size:(i + 1) * frag_size] for i in range(m)]
    r = -(-m * redundancy_pct // 100)
    line = bytearray((m + 7) // 8)
    for n in range(1, r + 1):
        frag.parity_line(n, m, line, version)
        acc = bytearray(frag_size)
        for i in range(m):
            if line[i >> 3] & (1 << (i & 7)):
                for j, b in enumerate(pieces[i]):
                    acc[j] ^= b
        pieces.append(bytes(acc))
    return [b"\x08" + struct.pack("<H", (n + 1) & 0x3FFF) + p for n, p in enumerate(pieces)]


# ------------------------------------------------------------------ TS003


def app_time_ans(payload: bytes, gps_s: float) -> bytes | None:
    """AppTimeAns for an AppTimeReq received at GPS time ``gps_s``, as ``applayer/clocksync.rs``
    answers: TimeCorrection = gps - DeviceTime (saturated to i32), TokenAns = TokenReq; None when the
    payload is not an AppTimeReq, or when the correction is 0 and AnsRequired is not set."""
    if len(payload) < 6 or payload[0] != 0x01:
        return None
    device_time = struct.unpack_from("<I", payload, 1)[0]
    param = payload[5]
    corr = max(-(2**31), min(2**31 - 1, int(gps_s) - device_time))
    if corr == 0 and not param & 0x10:
        return None
    return b"\x01" + struct.pack("<i", corr) + bytes([param & 0x0F])


def _rs(value: bool) -> str:
    """A bool as Rust's Display writes it."""
    return "true" if value else "false"
