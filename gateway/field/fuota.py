"""Signed update packages for FUOTA (issue 19): key pairs, building a package, reading one back.

A package carries the files of an app tree that changed between a base version and a target version
(normally the ``.mpy`` modules), the files to delete, and a manifest with both versions and every
file's SHA-256, signed with Ed25519. The layout is the one the node checks in
``firmware/lib/citynode/fuota/package.py`` (docs/design/fuota.md, "Update package format")::

    b"CNUP" | format (1) | manifest length (2, LE) | manifest (compact JSON) | signature (64) | files

The signature covers everything before it; the files follow in the manifest's order.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import CitynodeError, ConfigError

__all__ = [
    "MAGIC",
    "FORMAT",
    "Package",
    "PackageError",
    "KeyPair",
    "generate_keypair",
    "write_keypair",
    "load_private_key",
    "load_public_key",
    "tree_version",
    "build_package",
    "read_package",
]

MAGIC = b"CNUP"
FORMAT = 1
MAX_MANIFEST = 4096  # the node refuses longer manifests (its RAM)
VERSION_FILE = "VERSION"


class PackageError(CitynodeError):
    """An update package that cannot be built or does not verify."""


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes  # PKCS#8 PEM, unencrypted: keep it off the nodes and out of the repository
    public_raw: bytes  # 32 bytes, what the node's config bundle carries (hex)


@dataclass(frozen=True)
class Package:
    base: str
    target: str
    files: dict[str, bytes]  # path -> content, in manifest order
    delete: tuple[str, ...]
    manifest: dict[str, object]

    @property
    def full(self) -> bool:
        """Whether it carries the whole target tree (``build_package(full=True)``): the only kind a node
        whose factory app is frozen installs."""
        return self.manifest.get("full") is True


def generate_keypair() -> KeyPair:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KeyPair(pem, raw)


def write_keypair(prefix: Path) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (mode 0600) and ``PREFIX.pub`` (hex); never overwrites an existing key."""
    key_path = prefix.with_name(prefix.name + ".key")
    pub_path = prefix.with_name(prefix.name + ".pub")
    for p in (key_path, pub_path):
        if p.exists():
            raise ConfigError(f"{p} exists: refusing to overwrite a signing key")
    if not prefix.parent.is_dir():
        raise ConfigError(f"{prefix.parent}: no such directory")
    pair = generate_keypair()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pair.private_pem)
    pub_path.write_text(pair.public_raw.hex() + "\n")
    return key_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"signing key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise ConfigError(f"signing key {path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {path}: not an Ed25519 key (make one with `citynode fuota keygen`)")
    return key


def load_public_key(path: Path) -> bytes:
    """The 32-byte Ed25519 public key of a ``PREFIX.pub`` file (64 hex digits, as ``keygen`` writes it).

    ConfigError (one line) for a missing or unreadable file, for anything but 64 hex digits, and, with
    a warning of its own, for the private key given by mistake (it must never reach a bundle).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"update key {path}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY" in raw:
        raise ConfigError(f"update key {path}: this is the PRIVATE signing key; give the PREFIX.pub file "
                          "`citynode fuota keygen` wrote next to it (the private key stays off the nodes)")
    text = raw.decode("ascii", "replace").strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        shown = f"{len(text)} characters" if len(text) != 64 else "64 characters, not all hex digits"
        raise ConfigError(f"update key {path}: expected the 64 hex digits of an Ed25519 public key "
                          f"(the PREFIX.pub of `citynode fuota keygen`), got {shown}")
    key = bytes.fromhex(text)
    try:
        Ed25519PublicKey.from_public_bytes(key)
    except ValueError:
        raise ConfigError(f"update key {path}: not a valid Ed25519 public key") from None
    return key


def _tree(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory")
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != VERSION_FILE:
            files[p.relative_to(root).as_posix()] = p.read_bytes()
    return files


def tree_version(root: Path, given: str | None) -> str:
    """The version of an app tree: ``given``, else the first line of its ``VERSION`` file."""
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory")
    if given:
        return given
    vf = root / VERSION_FILE
    if not vf.is_file():
        raise ConfigError(f"{root}: no {VERSION_FILE} file; give the version on the command line")
    version = vf.read_text().strip().splitlines()[0] if vf.read_text().strip() else ""
    if not version:
        raise ConfigError(f"{vf}: empty")
    return version


def build_package(base_dir: Path | None, target_dir: Path, key: Ed25519PrivateKey, *, base_version: str | None = None,
                  target_version: str | None = None, full: bool = False) -> bytes:
    """The signed package taking ``base_dir``'s tree to ``target_dir``'s: changed and new files, deletions.

    ``full``: every file of ``target_dir`` (``base_dir`` then only gives the base version and may be
    None when ``base_version`` is given), marked ``"full": true`` in the manifest: the node installs the
    target tree alone, without copying its running one. A node whose factory app is frozen into its
    firmware image has no running tree to copy and refuses a package that is not full (its first
    update; later ones start from the slot it runs)."""
    if base_dir is None and not (full and base_version):
        raise PackageError("no base tree: give --from, or --full with --base-version")
    base_v = base_version if base_dir is None else tree_version(base_dir, base_version)
    target_v = tree_version(target_dir, target_version)
    if base_v == target_v:
        raise PackageError(f"base and target are both version {base_v}")
    old = {} if full else _tree(base_dir)  # type: ignore[arg-type]
    new = _tree(target_dir)
    changed = [(p, data) for p, data in new.items() if old.get(p) != data]
    deleted = sorted(p for p in old if p not in new)
    manifest: dict[str, object] = {
        "format": FORMAT,
        "base": base_v,
        "target": target_v,
        "files": [[p, len(data), hashlib.sha256(data).hexdigest()] for p, data in changed],
        "delete": deleted,
    }
    if full:
        manifest["full"] = True
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    if len(body) > MAX_MANIFEST:
        raise PackageError(f"manifest of {len(body)} bytes: the node reads at most {MAX_MANIFEST}")
    signed = MAGIC + bytes([FORMAT]) + len(body).to_bytes(2, "little") + body
    return signed + key.sign(signed) + b"".join(data for _, data in changed)


def read_package(data: bytes, public_key: bytes) -> Package:
    """Verify and unpack a package (the checks the node makes). Raises :class:`PackageError`."""
    if len(data) < 7 + 64 or data[:4] != MAGIC:
        raise PackageError("not a citynode update package")
    if data[4] != FORMAT:
        raise PackageError(f"package format {data[4]}, this tool reads {FORMAT}")
    n = int.from_bytes(data[5:7], "little")
    if 7 + n + 64 > len(data):
        raise PackageError("truncated package")
    signed, sig = data[:7 + n], data[7 + n:7 + n + 64]
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, signed)
    except (InvalidSignature, ValueError):
        raise PackageError("bad signature") from None
    manifest = json.loads(signed[7:])
    pos = 7 + n + 64
    files: dict[str, bytes] = {}
    for path, size, digest in manifest["files"]:
        content = data[pos:pos + size]
        if len(content) != size or hashlib.sha256(content).hexdigest() != digest:
            raise PackageError(f"{path}: content does not match its hash")
        files[path] = content
        pos += size
    if pos != len(data):
        raise PackageError("trailing bytes after the last file")
    return Package(manifest["base"], manifest["target"], files, tuple(manifest["delete"]), manifest)
