"""``citynode fuota``: signing keys and update packages for over-the-air updates.

Examples::

    citynode fuota keygen --out keys/city
    citynode fuota build --from build/app-0.1.0 --to build/app-0.2.0 --key keys/city.key --out app-0.2.0.cnup
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.errors import ConfigError
from gateway.field import fuota

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "fuota", help="signing keys and signed update packages (FUOTA)",
        description="Make the Ed25519 key pair that signs app updates, and build signed update packages of the .mpy modules changed between two app trees (docs/design/fuota.md). Bad input: one line, exit 2.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    key = actions.add_parser("keygen", help="make an Ed25519 key pair: PREFIX.key (private) and PREFIX.pub (hex)",
                             description="Write PREFIX.key (Ed25519 private key, PKCS#8 PEM, mode 0600, never overwritten) and PREFIX.pub (the 32-byte public key in hex, for the node's config bundle).")
    key.add_argument("--out", type=Path, default=Path("fuota"), help="path prefix of the two files (default: fuota)")
    key.set_defaults(func=_keygen)

    build = actions.add_parser("build", help="build a signed package of the files changed between two app trees",
                               description="Build a package of the files that differ between two app trees (and the deletions), with a manifest of base version, target version and file hashes, signed with Ed25519.")
    build.add_argument("--from", dest="base", type=Path, required=True, help="the app tree nodes run now")
    build.add_argument("--to", dest="target", type=Path, required=True, help="the app tree to update them to")
    build.add_argument("--key", type=Path, required=True, help="the private key (from `citynode fuota keygen`)")
    build.add_argument("--out", type=Path, required=True, help="the package file to write")
    build.add_argument("--base-version", help="version of --from (default: its VERSION file)")
    build.add_argument("--target-version", help="version of --to (default: its VERSION file)")
    build.set_defaults(func=_build)


def _keygen(args: argparse.Namespace) -> int:
    key_path, pub_path = fuota.write_keypair(args.out)
    print(f"private key {key_path} (keep it secret), public key {pub_path}: {pub_path.read_text().strip()}")
    return 0


def _build(args: argparse.Namespace) -> int:
    key = fuota.load_private_key(args.key)
    data = fuota.build_package(args.base, args.target, key, base_version=args.base_version,
                               target_version=args.target_version)
    try:
        args.out.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"{args.out}: {exc.strerror}") from None
    pub = key.public_key().public_bytes_raw()
    pkg = fuota.read_package(data, pub)
    print(f"{args.out}: {pkg.base} -> {pkg.target}, {len(pkg.files)} files, {len(pkg.delete)} deleted, {len(data)} bytes")
    return 0
