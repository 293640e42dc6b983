"""``citynode lorawan``: look inside LoRaWAN frames.

Examples::

    citynode lorawan decode 40F17DBE4900020001954378762B11FF0D \\
        --nwkskey 44024241ed4ce9a68c6a8bc055233fd3 --appskey ec925802ae430ca77fd3dd73cb2cc588
    citynode lorawan decode 20a1b1c3a420359c1610db5fd65836d747 --appkey 2b7e151628aed2a6abf7158809cf4f3c
    citynode lorawan decode QPF9vkkAAgABlUN4disR/w0=        # base64, as in ChirpStack gateway events

Keys may also come from the environment (CITYNODE_APPKEY, CITYNODE_NWKSKEY, CITYNODE_APPSKEY), which
keeps them out of the shell history. Keys are never printed.
"""

from __future__ import annotations

import argparse
import json
import os

from gateway.errors import ConfigError
from gateway.field.lorawan_tools import decode_phy, format_decoded, parse_key, parse_phy

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("lorawan", help="inspect LoRaWAN frames (decode, MIC check, decrypt)",
                            description="Look inside LoRaWAN 1.0.x frames: every field, MAC commands, MIC "
                            "check and decryption. `citynode ns-sim --log-frames` prints real frames to try.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    dec = actions.add_parser(
        "decode",
        help="print every field of a PHYPayload, its MAC commands, the decrypted payload and the MIC check",
        description="Decode a LoRaWAN 1.0.x PHYPayload. Exit status: 0 decoded (MIC valid or not checked), "
        "1 MIC invalid, 2 malformed frame or bad option. Keys may come from the environment instead of "
        "the command line (kept out of shell history): CITYNODE_APPKEY, CITYNODE_NWKSKEY, CITYNODE_APPSKEY. "
        "Keys are never printed.",
    )
    dec.add_argument("phy", metavar="PHYPAYLOAD", help="the frame as hex (spaces allowed) or base64")
    dec.add_argument("--appkey", help="AppKey (32 hex digits): join-request MIC, join-accept decryption")
    dec.add_argument("--nwkskey", help="NwkSKey: data frame MIC and FPort 0 decryption")
    dec.add_argument("--appskey", help="AppSKey: FPort 1..255 decryption")
    dec.add_argument("--fcnt", type=int, help="full 32-bit FCnt (as ChirpStack shows it) when above 65535")
    dec.add_argument("--json", action="store_true", help="print the fields as one JSON object")
    dec.set_defaults(func=_decode)


def _key(args: argparse.Namespace, name: str) -> bytes | None:
    value = getattr(args, name)
    option = f"--{name}"
    if value is None:
        value = os.environ.get(f"CITYNODE_{name.upper()}") or None
        option = f"CITYNODE_{name.upper()}"
    return parse_key(value, option)


def _decode(args: argparse.Namespace) -> int:
    appkey = _key(args, "appkey")
    nwkskey = _key(args, "nwkskey")
    appskey = _key(args, "appskey")
    if args.fcnt is not None and args.fcnt < 0:
        raise ConfigError(f"--fcnt: {args.fcnt} is negative")
    decoded = decode_phy(parse_phy(args.phy), appkey=appkey, nwkskey=nwkskey, appskey=appskey, fcnt=args.fcnt)
    if args.json:
        print(json.dumps(decoded, ensure_ascii=False))
    else:
        print(format_decoded(decoded))
    return 1 if decoded.get("mic_valid") is False else 0
