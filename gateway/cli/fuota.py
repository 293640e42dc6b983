"""``citynode fuota``: signing keys, update packages, and deployments through ChirpStack.

Examples::

    citynode fuota keygen --out keys/city
    citynode fuota build --from build/app-0.1.0 --to build/app-0.2.0 --key keys/city.key --out app-0.2.0.cnup
    citynode fuota deploy app-0.2.0.cnup --application UUID --devices tag:district=north --redundancy 30
    citynode fuota status DEPLOYMENT_ID

``deploy`` and ``status`` talk to ChirpStack's gRPC API (``FuotaService``) as ``citynode provision``
does: ``--server`` (or ``$CITYNODE_CHIRPSTACK_SERVER``), the token from ``$CITYNODE_CHIRPSTACK_TOKEN``
or ``--token-file``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.field.chirpstack_client import ChirpStackClient

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
                               description="Build a package of the files that differ between two app trees (and the deletions), with a manifest of base version, target version and file hashes, signed with Ed25519. A node whose factory app is frozen into its firmware image cannot copy it into an app slot, so its first update must be a --full package (the whole tree); it refuses a partial one (update: refused_other).")
    build.add_argument("--from", dest="base", type=Path,
                       help="the app tree nodes run now (with --full, only its VERSION is read)")
    build.add_argument("--to", dest="target", type=Path, required=True, help="the app tree to update them to")
    build.add_argument("--key", type=Path, required=True, help="the private key (from `citynode fuota keygen`)")
    build.add_argument("--out", type=Path, required=True, help="the package file to write")
    build.add_argument("--base-version", help="version of --from (default: its VERSION file)")
    build.add_argument("--target-version", help="version of --to (default: its VERSION file)")
    build.add_argument("--full", action="store_true",
                       help="carry every file of --to, not only the changed ones: needed by nodes whose factory "
                            "app is frozen into the firmware image (they refuse a partial package); --from may "
                            "then be left out if --base-version is given")
    build.set_defaults(func=_build)

    deploy = actions.add_parser(
        "deploy", help="create and start FUOTA deployments of a package in ChirpStack",
        description="Create and start, through ChirpStack's FuotaService, one FUOTA deployment per device profile "
                    "among the chosen devices: Class C multicast (TS005), fragmentation with FEC (TS004), a "
                    "fragmentation status request after the session, and the tag app_version=<target> on "
                    "every device that completes. Follow it with `citynode fuota status ID`.")
    deploy.add_argument("package", type=Path, metavar="PKG", help="the update package (`citynode fuota build`)")
    deploy.add_argument("--application", required=True, metavar="ID", help="ChirpStack application id (UUID)")
    deploy.add_argument("--devices", required=True, metavar="FILTER|FILE",
                        help="a file of DevEUIs (one a line), or: all, tag:KEY=VALUE, name:GLOB, profile:NAME, "
                             "or DevEUIs separated by commas")
    deploy.add_argument("--redundancy", type=_percent, default=20,
                        help="coded fragments as a percentage of the uncoded ones (0..300, default 20); "
                             "allow about 5 points more than the loss you expect")
    deploy.add_argument("--dr", type=_dr, default=5, help="multicast data rate (EU868 DR0..DR7, default 5)")
    deploy.add_argument("--frequency", type=_freq, default=869525000,
                        help="multicast frequency in Hz (default 869525000)")
    deploy.add_argument("--retries", type=_retries, default=3,
                        help="resends of each unicast request to devices that did not answer (0..15, default 3)")
    deploy.add_argument("--fragment-size", type=_frag_size, default=None,
                        help="bytes per fragment (default: ChirpStack computes the largest for --dr)")
    deploy.add_argument("--name", help="deployment name (default: citynode <target version> <profile>)")
    _chirpstack_options(deploy)
    deploy.set_defaults(func=_deploy)

    st = actions.add_parser("status", help="each device's progress and result in FUOTA deployments",
                            description="Show a FUOTA deployment's latest job and, per device, the steps done "
                                        "and the result (complete, failed with ChirpStack's reason, in progress).")
    st.add_argument("ids", nargs="+", metavar="ID", help="deployment id(s) printed by `citynode fuota deploy`")
    _chirpstack_options(st)
    st.set_defaults(func=_status)


def _chirpstack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("CITYNODE_CHIRPSTACK_SERVER", "localhost:8080"),
                        help="ChirpStack API host:port (default $CITYNODE_CHIRPSTACK_SERVER or localhost:8080)")
    parser.add_argument("--token-file", type=Path, help="file holding the ChirpStack API token")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (ChirpStack behind a TLS proxy)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per API call (default 10)")


def _ranged(name: str, lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name}: {value} not in {lo}..{hi}")
        return value

    parse.__name__ = name
    return parse


_percent = _ranged("redundancy", 0, 300)
_dr = _ranged("dr", 0, 7)
_freq = _ranged("frequency", 863000000, 870000000)  # EU868 band, Hz
_retries = _ranged("retries", 0, 15)
_frag_size = _ranged("fragment-size", 1, 239)  # EU868 DR5..7: 242-byte FRMPayload - 3 bytes of header


def _client(args: argparse.Namespace) -> ChirpStackClient:
    from gateway.field.chirpstack_client import ChirpStackClient, resolve_token  # grpc only when used


    return ChirpStackClient(args.server, resolve_token(token_file=args.token_file), tls=args.tls,
                            timeout=args.timeout)


def _deploy(args: argparse.Namespace) -> int:
    from gateway.field import fuota_deploy

    try:
        data = args.package.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{args.package}: {exc.strerror}") from None
    base, target = fuota_deploy.package_versions(data, str(args.package))
    with _client(args) as cs:
        devices = fuota_deploy.select_devices(cs.list_devices(args.application), args.devices)
        made = fuota_deploy.deploy(cs, data, args.application, devices, redundancy_pct=args.redundancy, dr=args.dr,
                                   frequency_hz=args.frequency, retries=args.retries,
                                   fragment_size=args.fragment_size, name=args.name, target=target)
    print(f"{args.package}: {base} -> {target}, {len(data)} bytes, {len(devices)} devices, "
          f"{len(made)} deployment(s) started")
    for dep_id, profile, n in made:
        print(f"{dep_id}  {profile}: {n} devices  (citynode fuota status {dep_id})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from gateway.field import fuota_deploy

    with _client(args) as cs:
        for dep_id in args.ids:
            st = fuota_deploy.status(cs, dep_id)
            state = "complete" if st.completed else "running" if st.started else "not started"
            counts = ", ".join(f"{v} {k}" for k, v in st.counts().items())
            print(f"deployment {st.id} {st.name!r}: {state}, job {st.job or '-'}"
                  f"{': ' + st.job_note if st.job_note else ''}; {counts}")
            for d in st.devices:
                print(f"  {d.dev_eui}  steps {len(d.steps_done)}/4  {d.result}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from gateway.field import fuota  # cryptography (~7 MiB) only when used, not in every CLI process

    key_path, pub_path = fuota.write_keypair(args.out)
    print(f"private key {key_path} (keep it secret), public key {pub_path}: {pub_path.read_text().strip()}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from gateway.field import fuota  # cryptography only when used

    if args.base is None and not (args.full and args.base_version):
        raise ConfigError("fuota build: give --from, or --full with --base-version")
    key = fuota.load_private_key(args.key)
    data = fuota.build_package(args.base, args.target, key, base_version=args.base_version,
                               target_version=args.target_version, full=args.full)
    try:
        args.out.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"{args.out}: {exc.strerror}") from None
    pub = key.public_key().public_bytes_raw()
    pkg = fuota.read_package(data, pub)
    kind = "full" if pkg.full else "partial"
    print(f"{args.out}: {pkg.base} -> {pkg.target}, {kind}, {len(pkg.files)} files, {len(pkg.delete)} deleted, "
          f"{len(data)} bytes")
    if not pkg.full:
        print("note: a partial package installs only on a node that runs its app from files (lib/ or an app slot); "
              "a node whose factory app is frozen refuses it (update: refused_other): build its first update with --full")
    return 0
