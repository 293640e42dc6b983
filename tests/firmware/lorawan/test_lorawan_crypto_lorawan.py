"""LoRaWAN 1.0.4 security functions (citynode.lorawan.crypto) against known-good vectors.

The expected values in the tables were computed once with the npm package lora-packet 0.9.3 (an
independent implementation; tests/firmware/lorawan/lorapacket.js) and are fixed here, so these tests need no
Node.js. Every case is an expression evaluated both on the real MicroPython unix port and on CPython.
"""


from __future__ import annotations

import json
import sys

import pytest

from gateway.paths import firmware_dir

sys.path.insert(0, str(firmware_dir() / "lib"))

from citynode.lorawan import LoRaWANError, ReplayError, crypto

PRELUDE = """
from binascii import hexlify, unhexlify
from citynode.lorawan import crypto
def u(s):
    return unhexlify(s)
def h(b):
    return hexlify(bytes(b)).decode()
"""

NWKSKEY = "44024241ed4ce9a68c6a8bc055233fd3"
APPSKEY = "ec925802ae430ca77fd3dd73cb2cc588"
APPKEY = "2b7e151628aed2a6abf7158809cf4f3c"

# §6.2.6: (AppKey, JoinNonce, NetID, DevNonce) -> (NwkSKey, AppSKey); lora-packet generateSessionKeys10
SESSION_KEYS = [
    ("000102030405060708090a0b0c0d0e0f", 0x000001, 0x000013, 0x0000,
     "d9f5d591bf8ded9992217f494b8f34c0", "dd28c12ef2d381e467dd9ae29a4466f2"),
    (APPKEY, 0xABCDEF, 0xC0002F, 0x1234,
     "d19f0f0c62775ca1353f59d7fdd39802", "81fa062518f1e935e7e181a8dcc2934c"),
    ("ff" * 16, 0xFFFFFF, 0xFFFFFF, 0xFFFF,
     "581f46d8e52223acc83e03b33a01a1ea", "4f73b6223614db9a0ffb1ca8887ca43f"),
]

# §6.2.5: join-requests built by lora-packet (AppKey = APPKEY); the MIC is the last 4 bytes.
JOIN_REQUESTS = [
    ("DevNonce 0", "00010000d07ed5b37030051c000ba3040000005484d702"),
    ("DevNonce 300", "00010000d07ed5b37030051c000ba304002c01aa8afda6"),
]

# §6.2.6: a join-accept built and encrypted by lora-packet: JoinNonce 1, NetID 0, DevAddr 00A1B2C3,
# DLSettings 0, RXDelay 1, no CFList, AppKey = APPKEY.
JOIN_ACCEPT = "20a1b1c3a420359c1610db5fd65836d747"

# §4.4 / §4.3.3: data frames from lora-packet: (name, PHYPayload, DevAddr, 32-bit FCnt, downlink, clear FRMPayload)
DATA_FRAMES = [
    ("lora-packet README uplink 'test'", "40f17dbe4900020001954378762b11ff0d", 0x49BE7DF1, 2, False, "74657374"),
    ("FPort 0 downlink, FCnt 0x12345 (32 bit)", "603412012600452300211099c695cd", 0x26011234, 0x12345, True, "0602"),
    ("confirmed uplink, FCnt 0x10000, FOpts", "803412012682000003070ab510087bb245f7ac", 0x26011234, 0x10000, False,
     "8219086a"),
]


def _frm(phy: str) -> tuple[int, int]:
    """Start and end of FRMPayload in a data PHYPayload (hex): after FHDR + FOpts + FPort, before MIC."""
    raw = bytes.fromhex(phy)
    start = 8 + (raw[5] & 0x0F) + 1
    return start, len(raw) - 4


CASES: list[tuple[str, str, object]] = []
for key, jn, nid, dn, nwk, app in SESSION_KEYS:
    CASES.append((f"session keys JoinNonce {jn:06X} NetID {nid:06X} DevNonce {dn:04X}",
                  f"[h(k) for k in crypto.derive_session_keys(u('{key}'), {jn}, {nid}, {dn})]", [nwk, app]))
for name, phy in JOIN_REQUESTS:
    CASES.append((f"join-request MIC, {name}", f"h(crypto.join_mic(u('{APPKEY}'), u('{phy}'), 19))", phy[-8:]))
CASES.append(("join-accept decrypted with aes128_encrypt carries JoinNonce/NetID/DevAddr",
              f"h(crypto.decrypt_join_accept(u('{APPKEY}'), u('{JOIN_ACCEPT}'))[:13])", "20010000000000c3b2a1000001"))
CASES.append(("join-accept MIC over the clear frame",
              f"(lambda c: h(crypto.join_mic(u('{APPKEY}'), c, 13)) == h(c[13:]))"
              f"(crypto.decrypt_join_accept(u('{APPKEY}'), u('{JOIN_ACCEPT}')))", True))
CASES.append(("join-accept: network-side encryption inverts device-side decryption",
              f"h(crypto.encrypt_join_accept(u('{APPKEY}'), crypto.decrypt_join_accept(u('{APPKEY}'), u('{JOIN_ACCEPT}'))))",
              JOIN_ACCEPT))
for name, phy, addr, fcnt, down, clear in DATA_FRAMES:
    start, end = _frm(phy)
    key = NWKSKEY if bytes.fromhex(phy)[start - 1] == 0 else APPSKEY
    CASES.append((f"data MIC (B0 block), {name}",
                  f"h(crypto.data_mic(u('{NWKSKEY}'), u('{phy}'), {addr}, {fcnt}, {down}, {len(phy) // 2 - 4}))",
                  phy[-8:]))
    CASES.append((f"FRMPayload decryption (A blocks), {name}",
                  f"h(crypto.crypt_payload(u('{key}'), {addr}, {fcnt}, {down}, u('{phy}')[{start}:{end}]))", clear))
    CASES.append((f"FRMPayload encryption is the same XOR, {name}",
                  f"h(crypto.crypt_payload(u('{key}'), {addr}, {fcnt}, {down}, u('{clear}')))", phy[2 * start:2 * end]))
CASES.append(("a 40-byte payload spans three A blocks and round-trips",
              f"h(crypto.crypt_payload(u('{APPSKEY}'), 1, 7, False, crypto.crypt_payload(u('{APPSKEY}'), 1, 7, False, bytes(range(40)))))",
              bytes(range(40)).hex()))
CASES.append(("the MIC depends on the FCnt's high 16 bits, which never go on air",
              f"crypto.data_mic(u('{NWKSKEY}'), u('{DATA_FRAMES[1][1]}'), 0x26011234, 0x2345, True, 11) "
              f"!= crypto.data_mic(u('{NWKSKEY}'), u('{DATA_FRAMES[1][1]}'), 0x26011234, 0x12345, True, 11)", True))
CASES.append(("the MIC depends on the direction bit",
              f"crypto.data_mic(u('{NWKSKEY}'), b'abc', 1, 1, True) != crypto.data_mic(u('{NWKSKEY}'), b'abc', 1, 1, False)",
              True))
CASES.append(("DevNonce counts from 0", "[crypto.next_dev_nonce(None), crypto.next_dev_nonce(0), crypto.next_dev_nonce(65534)]",
              [0, 1, 65535]))
CASES.append(("NetID type is its top 3 bits", "[crypto.netid_type(0x000013), crypto.netid_type(0xC0002F)]", [0, 6]))

IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def on_micropython(micropython):
    # One statement per case, one JSON line each: a 96 KiB heap never holds all results at once.
    code = PRELUDE + "import json\n" + "".join("print(json.dumps(%s))\n" % c[1] for c in CASES)
    lines = micropython.run(code).splitlines()
    assert len(lines) == len(CASES), lines[-3:]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_vector_on_micropython(on_micropython, i):
    assert on_micropython[i] == CASES[i][2]


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_vector_on_cpython(i):
    env: dict[str, object] = {}
    exec(PRELUDE, env)
    assert json.loads(json.dumps(eval(CASES[i][1], env))) == CASES[i][2]


# Failure modes: each names the field.
@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: crypto.derive_session_keys(bytes(15), 1, 1, 1), "AppKey: need a 16-byte key, got 15 bytes"),
        (lambda: crypto.derive_session_keys(bytes(16), 1 << 24, 1, 1), "JoinNonce"),
        (lambda: crypto.derive_session_keys(bytes(16), 1, 1 << 24, 1), "NetID"),
        (lambda: crypto.derive_session_keys(bytes(16), 1, 1, 1 << 16), "DevNonce"),
        (lambda: crypto.data_mic(None, b"x", 1, 1, False), "NwkSKey: need a 16-byte key, got none"),
        (lambda: crypto.crypt_payload(bytes(8), 1, 1, False, b"x"), "payload key: need a 16-byte key"),
        (lambda: crypto.decrypt_join_accept(bytes(16), bytes(18)), "join-accept: need 17 or 33 bytes, got 18"),
        (lambda: crypto.next_dev_nonce(0xFFFF), "DevNonce: all 65536 values used"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(LoRaWANError, match=message):
        call()


def test_a_join_nonce_that_does_not_grow_is_a_replay():
    crypto.check_join_nonce(5, None)
    crypto.check_join_nonce(6, 5)
    with pytest.raises(ReplayError, match="JoinNonce 5 is not greater than the last accepted 5: replayed join-accept"):
        crypto.check_join_nonce(5, 5)
