"""``citynode codec``: encode and decode citynode payloads, and regenerate the generated codecs.

Examples::

    citynode codec encode bin_fill '{"distance": 850, "fill_level": 62, "temperature": 18.5, "tilt": false, "battery": 3.61}'
    citynode codec decode --fport 11 8601190352183e1855f4183d
    citynode codec encode config '{"interval": 900, "adr": true}'
    citynode codec generate --check
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.contract import codec, codegen
from gateway.errors import ConfigError, DecodeError, EncodeError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "codec", help="encode/decode citynode payloads; regenerate generated codecs",
        description="The citynode payload contract (codecs/schema.json): encode a reading as a node would, "
        "decode a payload as the gateway does, regenerate the generated codecs.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    enc = actions.add_parser("encode", help="encode a reading (or list of readings, or config) and print hex",
                             description="Encode a reading (a JSON list makes a batch; type `config` encodes "
                             "a config downlink) and print the payload as hex. Exit status: 0 encoded, 2 the "
                             "reading does not fit the schema (one line why).")
    enc.add_argument("type", help="message type, e.g. air_quality, bin_fill, config")
    enc.add_argument("json", help="the reading as JSON (a list of readings makes a batch)")
    enc.add_argument("--max-len", type=int, default=codec.DR0_MAX_PAYLOAD, help="payload size limit in bytes (default %(default)s, the EU868 DR0 limit)")
    enc.set_defaults(func=_encode)

    dec = actions.add_parser("decode", help="decode a hex payload and print JSON",
                             description="Decode a citynode payload (hex, spaces allowed) as the gateway "
                             "does and print the readings as JSON. Exit status: 0 decoded, 2 not a valid "
                             "payload for that fPort (one line why).")
    dec.add_argument("--fport", type=int, required=True, help="LoRaWAN fPort the payload arrived on")
    dec.add_argument("hex", help="payload as hex (spaces allowed)")
    dec.add_argument("--downlink", action="store_true", help="decode a downlink (config) instead of an uplink")
    dec.set_defaults(func=_decode)

    gen = actions.add_parser("generate", help="regenerate firmware tables and the ChirpStack codec from codecs/schema.json",
                             description="Regenerate the firmware's codec tables and the ChirpStack "
                             "JavaScript codec from codecs/schema.json. With --check only report stale files "
                             "(exit status 2 when any is stale).")
    gen.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    gen.set_defaults(func=_generate)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise EncodeError(f"reading is not valid JSON: {exc}") from None


def _encode(args: argparse.Namespace) -> int:
    value = _parse_json(args.json)
    if args.type == "config":
        fport, data = codec.encode_downlink(value)
    else:
        if not isinstance(value, (dict, list)):
            raise EncodeError("reading must be a JSON object (or a list of objects for a batch)")
        data = codec.encode_uplink(args.type, value, max_len=args.max_len)
    print(data.hex())
    return 0


def _decode(args: argparse.Namespace) -> int:
    try:
        payload = bytes.fromhex("".join(args.hex.split()))
    except ValueError:
        raise DecodeError(f"not a hex string: {args.hex!r}") from None
    result = codec.decode_downlink(args.fport, payload) if args.downlink else codec.decode(args.fport, payload)
    print(json.dumps(result, ensure_ascii=False))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from gateway.service.sinks import ngsild_models  # the NGSI-LD context is generated from the schema too

    if args.check:
        stale = codegen.stale_files()
        if ngsild_models.context_stale():
            stale.append(ngsild_models.citynode_context_path())
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            raise ConfigError("generated codec files are stale: run `make generate`")
        print("generated codec files are up to date")
        return 0
    for path in codegen.write_generated():
        print(f"wrote {path}")
    context = ngsild_models.write_context()
    if context is not None:
        print(f"wrote {context}")
    return 0
