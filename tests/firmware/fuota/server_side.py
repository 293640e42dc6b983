"""The network side of the FUOTA tests, written from the specifications and ChirpStack's sources.

Not a test module: ``test_fuota_*.py`` load it by its path. It holds what a network server
computes: the FEC encoder of TS004 (from the specification's description), a GF(2) rank oracle,
AES/CMAC helpers, the TS004 v2 data-block MIC, multicast frames (LoRaWAN 1.0.4 §4.3.3/§4.4) and the
downlinks ChirpStack's flow.rs sends one device.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.cmac import CMAC


def prbs23(x: int) -> int:
    """The specification's 23-bit PRBS: x/2 plus (bit0 XOR bit5) * 2^22."""
    return x // 2 + ((x & 1) ^ ((x >> 5) & 1)) * (1 << 22)


def matrix_line(n: int, m: int, version: int) -> set[int]:
    """Fragments XORed into coded fragment M+n (v1: m//2 draws, v2: m//2 distinct)."""
    mod = m + 1 if m & (m - 1) == 0 else m
    x = 1 + 1001 * n
    chosen: set[int] = set()
    draws = 0
    while (draws < m // 2) if version == 1 else (len(chosen) < m // 2):
        r = m
        while r >= m:
            x = prbs23(x)
            r = x % mod
        chosen.add(r)
        draws += 1
    return chosen


def encode(data: bytes, size: int, redundancy: int, version: int) -> list[bytes]:
    m = len(data) // size
    frags = [data[i * size:(i + 1) * size] for i in range(m)]
    for n in range(1, redundancy + 1):
        acc = bytearray(size)
        for j in matrix_line(n, m, version):
            for k in range(size):
                acc[k] ^= frags[j][k]
        frags.append(bytes(acc))
    return frags


def decodable(m: int, redundancy: int, lost: set[int], version: int) -> bool:
    """The oracle: the received coded rows, restricted to the lost uncoded fragments, have full rank."""
    unknown = [j for j in range(m) if j in lost]
    pivots: dict[int, int] = {}
    for n in range(1, redundancy + 1):
        if m + n - 1 in lost:
            continue
        row = sum(1 << unknown.index(j) for j in matrix_line(n, m, version) if j in lost)
        while row:
            top = row.bit_length() - 1
            if top not in pivots:
                pivots[top] = row
                break
            row ^= pivots[top]
    return len(pivots) == len(unknown)


def aes(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def v2_mic(gen_app_key: bytes, cnt: int, descriptor: bytes, data: bytes) -> bytes:
    # TS004 v2 (as ChirpStack computes it): DataBlockIntKey = aes128_encrypt(GenAppKey, 0x30 | pad16);
    # MIC = aes128_cmac(key, 0x49 | SessionCnt | FragIndex | Descriptor | 0x00000000 | len)[0:4]
    key = aes(gen_app_key, bytes([0x30]) + bytes(15))
    b0 = bytes([0x49]) + cnt.to_bytes(2, "little") + bytes([0]) + descriptor + bytes(4) + len(data).to_bytes(4, "little")
    c = CMAC(AES(key))
    c.update(b0 + data)
    return c.finalize()[:4]


def mc_frame(fcnt: int, port: int, clear: bytes, *, app_key: bytes, nwk_key: bytes, addr: int, mhdr: int = 0x60,
             fctrl: int = 0, fopts: bytes = b"") -> bytes:
    """A downlink as a network server sends it to a multicast group (DevAddr = McAddr)."""
    def block(first: int, last: int) -> bytes:  # §4.3.3 A_i and §4.4 B0, Dir = 1 (down)
        return bytes([first, 0, 0, 0, 0, 1]) + addr.to_bytes(4, "little") + fcnt.to_bytes(4, "little") + bytes([0, last])

    stream = b"".join(aes(app_key, block(0x01, i)) for i in range(1, len(clear) // 16 + 2))
    enc = bytes(c ^ k for c, k in zip(clear, stream))
    msg = bytes([mhdr]) + addr.to_bytes(4, "little") + bytes([fctrl | len(fopts)]) + (fcnt & 0xFFFF).to_bytes(2, "little") \
        + fopts + bytes([port]) + enc
    c = CMAC(algorithms.AES(nwk_key))
    c.update(block(0x49, len(msg)) + msg)
    return msg + c.finalize()[:4]


def chirpstack_flow(version: int, payload: bytes, gen: bytes, mc_key: bytes, mc_addr: int, frag_size: int,
                     redundancy_pct: int, start_gps: int, now_gps: int, lost: set[int]) -> list[tuple[int, int, bytes]]:
    """The downlinks ChirpStack's flow.rs sends one device, as (fPort, node GPS time, payload):
    McGroupSetup, FragSessionSetup, McClassCSession (unicast FRMPayloads), the DataFragments (whole
    multicast frames, fPort -1, one per 5 s: ChirpStack's default Class C margin), FragSessionStatusReq."""
    ke = aes(aes(gen, bytes(16)), bytes(16))  # McKEKey of a LoRaWAN 1.0.x device from its GenAppKey
    dec = Cipher(algorithms.AES(ke), modes.ECB()).decryptor()
    mc_key_enc = dec.update(mc_key) + dec.finalize()  # encrypt_mc_key: aes128_decrypt(McKEKey, McKey)
    out = [(200, now_gps, bytes([0x02, 0x00]) + mc_addr.to_bytes(4, "little") + mc_key_enc + bytes(4)
            + (2**32 - 1).to_bytes(4, "little"))]
    m = -(-len(payload) // frag_size)
    padding = (frag_size - len(payload) % frag_size) % frag_size
    descriptor = bytes(4)
    setup = bytes([0x02, 0x01]) + m.to_bytes(2, "little") + bytes([frag_size, 0x00, padding]) + descriptor
    if version == 2:
        setup += (0).to_bytes(2, "little") + v2_mic(gen, 0, descriptor, payload)
    out.append((201, now_gps, setup))
    # Class C session: SessionTime in GPS s, TimeOut 2^10 s, 869.525 MHz (8695250 = 0x84ADD2), DR 3
    out.append((200, now_gps, bytes([0x04, 0x00]) + start_gps.to_bytes(4, "little") + bytes([10])
                + (869525000 // 100).to_bytes(3, "little") + bytes([3])))
    red = -(-m * redundancy_pct // 100)
    frags = encode(payload + bytes(padding), frag_size, red, version)
    # the multicast group's session keys, as ChirpStack's CreateMcGroup derives them from McKey
    addr_block = mc_addr.to_bytes(4, "little") + bytes(11)
    app, nwk = aes(mc_key, b"\x01" + addr_block), aes(mc_key, b"\x02" + addr_block)
    for i, f in enumerate(frags):  # port -1: a multicast frame for the MAC to open (group FCnt from 0)
        if i not in lost:
            clear = bytes([0x08]) + (i + 1).to_bytes(2, "little") + f
            out.append((-1, start_gps + 5 * i, mc_frame(i, 201, clear, app_key=app, nwk_key=nwk, addr=mc_addr)))
    out.append((201, start_gps + 5 * len(frags), bytes([0x01, 0x01])))  # Participants 1, FragIndex 0
    return out


