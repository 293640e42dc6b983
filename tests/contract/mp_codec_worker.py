# Runs ON MicroPython: a line protocol over stdin/stdout so tests can drive the firmware codec
# without paying an interpreter start per case. One JSON request per line, one JSON answer per line:
#   {"op": "encode", "type": T, "reading": R}          -> {"hex": H} | {"error": E}
#   {"op": "batch", "type": T, "readings": L, "max_len": N} -> {"hex": H, "count": C} | {"error": E}
#   {"op": "downlink", "fport": P, "hex": H}            -> {"data": D} | {"error": E}
import binascii
import json
import sys

from citynode import codec

while True:
    line = sys.stdin.readline()
    if not line:
        break
    req = json.loads(line)
    try:
        if req["op"] == "encode":
            out = {"hex": binascii.hexlify(codec.encode(req["type"], req["reading"])).decode()}
        elif req["op"] == "batch":
            data, count = codec.encode_batch(req["type"], req["readings"], req["max_len"])
            out = {"hex": binascii.hexlify(data).decode(), "count": count}
        else:
            out = {"data": codec.decode_downlink(req["fport"], binascii.unhexlify(req["hex"]))}
    except (codec.EncodeError, codec.DecodeError) as exc:
        out = {"error": "%s: %s" % (type(exc).__name__, exc)}
    print(json.dumps(out))
