"""AES-128 and AES-CMAC, the two primitives under every LoRaWAN MIC and key.

Vectors: FIPS-197 Appendix C.1 (AES-128) and RFC 4493 §4 (subkeys and all four CMAC examples).
Each vector runs on the real MicroPython unix port (``cryptolib``) and on CPython (``cryptography``).
"""

from __future__ import annotations

import json
import sys

import pytest

from gateway.paths import firmware_dir

sys.path.insert(0, str(firmware_dir() / "lib"))

from citynode.lorawan import LoRaWANError
from citynode.lorawan.aes import AES
from citynode.lorawan.cmac import CMAC, aes_cmac

RFC4493_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
RFC4493_MSG = (
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)

# (name, key, plaintext, ciphertext)
AES_VECTORS = [
    ("FIPS-197 C.1", "000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
     "69c4e0d86a7b0430d8cdb78070b4c55a"),
    ("RFC 4493 2.3 L = AES(K, 0)", RFC4493_KEY, "00" * 16, "7df76b0c1ab899b33e42f047b91b546f"),
]

# RFC 4493 §4: (name, message length in bytes, expected tag)
CMAC_VECTORS = [
    ("Example 1: len = 0", 0, "bb1d6929e95937287fa37d129b756746"),
    ("Example 2: len = 16", 16, "070a16b46b4d4144f79bdd9dd04a287c"),
    ("Example 3: len = 40", 40, "dfa66747de9ae63030ca32611497c827"),
    ("Example 4: len = 64", 64, "51f0bebf7e3b9d92fc49741779363cfe"),
]

# RFC 4493 §4 "Subkey Generation"
RFC4493_K1 = "fbeed618357133667c85e08f7236a8de"
RFC4493_K2 = "f7ddac306ae266ccf90bc11ee46d513b"

MP_SCRIPT = """
import json
from binascii import hexlify, unhexlify
from citynode.lorawan import aes
from citynode.lorawan.aes import AES
from citynode.lorawan.cmac import CMAC, aes_cmac
h = lambda b: hexlify(b).decode()
out = {"backend": aes.BACKEND, "aes": [], "cmac": []}
for key, pt in %(aes)s:
    out["aes"].append(h(AES(unhexlify(key)).encrypt(unhexlify(pt))))
msg = unhexlify("%(msg)s")
c = CMAC(unhexlify("%(key)s"))
out["k1"] = h(c._k1)
out["k2"] = h(c._k2)
for n in %(lens)s:
    out["cmac"].append(h(c.digest(msg[:n])))
out["oneshot"] = h(aes_cmac(unhexlify("%(key)s"), msg))
out["end"] = h(c.digest(msg, 40))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def mp(micropython):
    code = MP_SCRIPT % {
        "aes": repr([(k, p) for _, k, p, _ in AES_VECTORS]),
        "msg": RFC4493_MSG,
        "key": RFC4493_KEY,
        "lens": repr([n for _, n, _ in CMAC_VECTORS]),
    }
    return micropython.eval_json(code)


def test_micropython_uses_cryptolib(mp):
    assert mp["backend"] == "cryptolib"


@pytest.mark.parametrize("i,vector", list(enumerate(AES_VECTORS)), ids=[v[0] for v in AES_VECTORS])
def test_aes128_vector_on_micropython(mp, i, vector):
    assert mp["aes"][i] == vector[3]


@pytest.mark.parametrize("vector", AES_VECTORS, ids=[v[0] for v in AES_VECTORS])
def test_aes128_vector_on_cpython(vector):
    _, key, pt, ct = vector
    assert AES(bytes.fromhex(key)).encrypt(bytes.fromhex(pt)).hex() == ct


def test_rfc4493_subkeys_on_micropython(mp):
    assert (mp["k1"], mp["k2"]) == (RFC4493_K1, RFC4493_K2)


def test_rfc4493_subkeys_on_cpython():
    c = CMAC(bytes.fromhex(RFC4493_KEY))
    assert (bytes(c._k1).hex(), bytes(c._k2).hex()) == (RFC4493_K1, RFC4493_K2)


@pytest.mark.parametrize("i,vector", list(enumerate(CMAC_VECTORS)), ids=[v[0] for v in CMAC_VECTORS])
def test_rfc4493_cmac_on_micropython(mp, i, vector):
    assert mp["cmac"][i] == vector[2]


@pytest.mark.parametrize("vector", CMAC_VECTORS, ids=[v[0] for v in CMAC_VECTORS])
def test_rfc4493_cmac_on_cpython(vector):
    _, n, tag = vector
    assert aes_cmac(bytes.fromhex(RFC4493_KEY), bytes.fromhex(RFC4493_MSG)[:n]).hex() == tag


def test_digest_end_limits_the_message_without_slicing(mp):
    # Example 3 (40 bytes) computed over the full 64-byte buffer with end=40.
    assert mp["end"] == CMAC_VECTORS[2][2]
    assert mp["oneshot"] == CMAC_VECTORS[3][2]


def test_cmac_is_reusable_across_messages():
    c = CMAC(bytes.fromhex(RFC4493_KEY))
    msg = bytes.fromhex(RFC4493_MSG)
    assert [c.digest(msg[:n]).hex() for _, n, _ in CMAC_VECTORS] == [t for _, _, t in CMAC_VECTORS]


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_aes_rejects_a_key_that_is_not_128_bits(length):
    with pytest.raises(LoRaWANError, match="AES key: need 16 bytes, got %d" % length):
        AES(bytes(length))


def test_aes_rejects_a_short_block():
    with pytest.raises(LoRaWANError, match="AES block: need 16 bytes, got 15"):
        AES(bytes(16)).encrypt(bytes(15))


# The plain-Python fallback (aes_soft) for runtimes with no native AES, forced on both runtimes.
SOFT_SCRIPT = """
import json
from binascii import hexlify, unhexlify
from citynode.lorawan import aes
aes._backend = "soft"
from citynode.lorawan.aes import AES
from citynode.lorawan.cmac import aes_cmac
from citynode.lorawan import crypto
h = lambda b: hexlify(bytes(b)).decode()
a = AES(unhexlify("000102030405060708090a0b0c0d0e0f"))
ct = a.encrypt(unhexlify("00112233445566778899aabbccddeeff"))
pt = bytearray(16)
a.decrypt_into(ct, pt)
print(json.dumps({
    "backend": a._b,
    "encrypt": h(ct),
    "decrypt": h(pt),
    "cmac": h(aes_cmac(unhexlify("%(key)s"), unhexlify("%(msg)s"))),
    "keys": [h(k) for k in crypto.derive_session_keys(bytes(range(16)), 1, 0x13, 0)],
}))
"""


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_soft_aes_fallback_meets_fips197_and_rfc4493(runtime, micropython):
    code = SOFT_SCRIPT % {"key": RFC4493_KEY, "msg": RFC4493_MSG}
    if runtime == "micropython":
        out = micropython.eval_json(code)
    else:
        import subprocess

        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={"PYTHONPATH": str(firmware_dir() / "lib")})
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "backend": "soft",
        "encrypt": "69c4e0d86a7b0430d8cdb78070b4c55a",  # FIPS-197 C.1
        "decrypt": "00112233445566778899aabbccddeeff",
        "cmac": CMAC_VECTORS[3][2],  # RFC 4493 Example 4
        "keys": ["d9f5d591bf8ded9992217f494b8f34c0", "dd28c12ef2d381e467dd9ae29a4466f2"],  # lora-packet
    }


def test_circuitpython_aesio_branch(micropython):
    """The adapter's CircuitPython branch, against aesio's documented interface (a cryptolib-backed
    stand-in on MicroPython, tests/firmware/lorawan/circuitpython_shim/aesio.py): FIPS-197, RFC 4493, lora-packet."""
    from pathlib import Path

    from gateway.field.micropython import run_code

    # cryptolib wins the import race on MicroPython, so select the branch as a CircuitPython import would
    force = 'import aesio\naes._cp = aesio\naes._backend = "circuitpython"\n'
    code = SOFT_SCRIPT.replace('aes._backend = "soft"\n', force) % {"key": RFC4493_KEY, "msg": RFC4493_MSG}
    shim = Path(__file__).with_name("circuitpython_shim")
    out = json.loads(run_code(code, extra_paths=[shim]).stdout.strip().splitlines()[-1])
    assert out["backend"] == "circuitpython"
    assert (out["encrypt"], out["decrypt"], out["cmac"]) == (
        "69c4e0d86a7b0430d8cdb78070b4c55a", "00112233445566778899aabbccddeeff", CMAC_VECTORS[3][2])
    assert out["keys"] == ["d9f5d591bf8ded9992217f494b8f34c0", "dd28c12ef2d381e467dd9ae29a4466f2"]
