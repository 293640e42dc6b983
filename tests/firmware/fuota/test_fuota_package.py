"""The node checks an update package before anything is written (citynode.fuota.package, .ed25519).

Ed25519 verification in plain MicroPython against RFC 8032 §7.1's test vectors and against signatures
made by ``cryptography``; then packages built by ``gateway.field.fuota`` (as `citynode fuota build`
makes them) checked on MicroPython: a good one passes, a tampered one, one for another base version,
one signed by another key and a non-package are refused with the reason the status uplink carries.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.field import fuota

# RFC 8032 §7.1: TEST 1 (empty message), TEST 2 (one byte), TEST 3 (two bytes)
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


def _verify_cases() -> list[tuple[str, str, str, bool]]:
    cases = []
    for pk, msg, sig in RFC8032:
        cases.append((pk, msg, sig, True))
        cases.append((pk, msg + "00", sig, False))  # another message
        bad = bytearray.fromhex(sig)
        bad[40] ^= 0x10
        cases.append((pk, msg, bad.hex(), False))  # S changed
        bad = bytearray.fromhex(sig)
        bad[3] ^= 0x01
        cases.append((pk, msg, bad.hex(), False))  # R changed
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pub = key.public_key().public_bytes_raw().hex()
    for n in (0, 1, 111, 112, 127, 128, 300):  # SHA-512 block boundaries (with R | A in front: 64 bytes)
        msg = bytes((i * 7) & 0xFF for i in range(n))
        cases.append((pub, msg.hex(), key.sign(msg).hex(), True))
    cases.append((pub, "", "00" * 64, False))
    cases.append((pub[:-2], "", RFC8032[0][2], False))  # a 31-byte key
    cases.append(("ff" * 32, "", RFC8032[0][2], False))  # not a point
    return cases


def test_ed25519_verification_on_micropython(micropython) -> None:
    cases = _verify_cases()
    code = f"""
import json
from binascii import unhexlify as u
from citynode.fuota import ed25519 as E
E.sha512 = E._sha512_soft  # the pure-Python SHA-512 an ESP32 build uses
print(json.dumps([E.verify(u(pk), u(m), u(s)) for pk, m, s, _ in {[c[:3] + (0,) for c in cases]!r}]))
"""
    assert micropython.eval_json(code) == [c[3] for c in cases]


CHECK = """
import json, sys
from binascii import unhexlify
from citynode.fuota import package, store
args = json.loads(sys.stdin.readline())
data = unhexlify(args["data"])
s = store.RamStore(len(data))
s.write(0, data)
manifest, reason = package.check(s, len(data), unhexlify(args["pub"]), args["running"])
print(json.dumps([None if manifest is None else [manifest["base"], manifest["target"], manifest["files"],
                  manifest["delete"]], reason]))
"""


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> tuple[bytes, bytes]:
    root = tmp_path_factory.mktemp("trees")
    for name, version, files in (("v1", "0.1.0", {"app.mpy": b"A" * 300, "old.mpy": b"O"}),
                                 ("v2", "0.2.0", {"app.mpy": b"B" * 300, "new.mpy": b"N" * 1000})):
        (root / name).mkdir()
        (root / name / "VERSION").write_text(version)
        for f, data in files.items():
            (root / name / f).write_bytes(data)
    pair = fuota.generate_keypair()
    data = fuota.build_package(root / "v1", root / "v2", load_pem_private_key(pair.private_pem, None))
    return data, pair.public_raw


def _check(micropython, data: bytes, pub: bytes, running: str = "0.1.0") -> list:
    return micropython.eval_json(CHECK, stdin=json.dumps({"data": data.hex(), "pub": pub.hex(), "running": running}) + "\n")


def test_a_good_package_passes_on_the_node(micropython, signed) -> None:
    data, pub = signed
    manifest, reason = _check(micropython, data, pub)
    assert reason is None
    base, target, files, delete = manifest
    assert (base, target, delete) == ("0.1.0", "0.2.0", ["old.mpy"])
    assert [f[:2] for f in files] == [["app.mpy", 300], ["new.mpy", 1000]]


def test_a_package_for_another_base_version_is_refused(micropython, signed) -> None:
    data, pub = signed
    assert _check(micropython, data, pub, running="0.0.9") == [None, "base 0.1.0, running 0.0.9"]


def _flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x01
    return bytes(b)


def test_tampered_packages_are_refused(micropython, signed) -> None:
    data, pub = signed
    n = int.from_bytes(data[5:7], "little")
    assert _check(micropython, _flip(data, len(data) - 1), pub) == [None, "hash new.mpy"]
    assert _check(micropython, _flip(data, 7 + n + 64), pub) == [None, "hash app.mpy"]
    assert _check(micropython, _flip(data, 30), pub) == [None, "bad signature"]
    assert _check(micropython, data[:-1], pub) == [None, "truncated"]
    assert _check(micropython, data + b"x", pub) == [None, "trailing bytes"]
    assert _check(micropython, b"PK\x03\x04" + data[4:], pub) == [None, "not a package"]
    other = fuota.generate_keypair().public_raw
    assert _check(micropython, data, other) == [None, "bad signature"]
