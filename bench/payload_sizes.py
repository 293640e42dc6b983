"""Payload bytes per message type: citynode CBOR vs CayenneLPP vs JSON.

The citynode bytes come from the firmware encoder on the MicroPython unix port (the gateway encoder
gives the same bytes; the test suite proves it). CayenneLPP is encoded with `pycayennelpp`, choosing
for each field the smallest LPP type that holds a typical value; JSON is the compact text of the
reading. Readings are the typical city values in codecs/samples.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cayennelpp import LppFrame

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import machine, write_section  # noqa: E402

# Size targets from the foundation issue (single reading, all fields present).
TARGETS = {"air_quality": 24, "bin_fill": 12, "passenger_count": 28, "crowd_count": 12}
DR0_LIMIT = 51


def samples() -> dict[str, dict[str, Any]]:
    data = json.loads((ROOT / "codecs" / "samples.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("$")}


def cayenne_lpp(msg_type: str, r: dict[str, Any]) -> bytes:
    """The same fields as CayenneLPP, one channel per field, smallest fitting LPP type."""
    f = LppFrame()
    ch = iter(range(64))
    if msg_type == "air_quality":
        f.add_temperature(next(ch), r["temperature"])  # 0.1 °C: coarser than citynode's 0.01
        f.add_humidity(next(ch), r["relative_humidity"])  # 0.5 %
        f.add_barometer(next(ch), r["pressure"])
        f.add_generic(next(ch), int(r["gas_resistance"]))  # no LPP type for Ω: 4-byte generic
        for name in ("pm1_0", "pm2_5", "pm10"):
            f.add_concentration(next(ch), round(r[name]))  # whole units only
        f.add_voltage(next(ch), r["battery"])
    elif msg_type == "bin_fill":
        f.add_distance(next(ch), r["distance"] / 1000)
        f.add_percentage(next(ch), r["fill_level"])
        f.add_temperature(next(ch), r["temperature"])
        f.add_digital_input(next(ch), int(r["tilt"]))
        f.add_voltage(next(ch), r["battery"])
    elif msg_type == "passenger_count":
        f.add_generic(next(ch), r["interval"])
        for door in r["doors"]:
            f.add_analog_input(next(ch), door["boardings"])  # ±327.67: enough for typical counts
            f.add_analog_input(next(ch), door["alightings"])
        f.add_analog_input(next(ch), r["occupancy"])
        f.add_voltage(next(ch), r["battery"])
        f.add_gps(next(ch), r["latitude"], r["longitude"], 0)
    elif msg_type == "crowd_count":
        f.add_generic(next(ch), r["interval"])
        f.add_analog_input(next(ch), r["wifi_devices"])
        f.add_analog_input(next(ch), r["ble_devices"])
        f.add_voltage(next(ch), r["battery"])
    elif msg_type == "device_status":
        f.add_generic(next(ch), r["uptime"])
        f.add_digital_input(next(ch), 2)  # reset cause index
        f.add_voltage(next(ch), r["battery"])
        f.add_generic(next(ch), 0)  # firmware version packed
        f.add_generic(next(ch), 0)  # fault mask
    return bytes(f)


def json_size(reading: dict[str, Any]) -> int:
    return len(json.dumps(reading, separators=(",", ":"), ensure_ascii=False).encode())


def citynode_sizes() -> dict[str, bytes]:
    """Encode every sample with the firmware codec on the MicroPython unix port."""
    from gateway.field.micropython import run_code

    code = (
        "import json, binascii\nfrom citynode import codec\n"
        f"samples = json.loads({json.dumps(json.dumps(samples()))})\n"
        "print(json.dumps({k: binascii.hexlify(codec.encode(k, v)).decode() for k, v in samples.items()}))\n"
    )
    out = run_code(code).stdout.strip().splitlines()[-1]
    return {k: bytes.fromhex(v) for k, v in json.loads(out).items()}


def table() -> str:
    encoded = citynode_sizes()
    rows = [
        "| message | citynode CBOR | CayenneLPP | JSON | target | fits DR0 (51) |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for msg_type, reading in samples().items():
        ours = len(encoded[msg_type])
        lpp = len(cayenne_lpp(msg_type, reading))
        target = TARGETS.get(msg_type)
        rows.append(
            f"| {msg_type} | {ours} | {lpp} | {json_size(reading)} | {'≤ ' + str(target) if target else '–'} "
            f"| {'yes' if ours <= DR0_LIMIT else 'NO'} |"
        )
    return "\n".join(rows)


def batch_table() -> str:
    """How many readings (15 minutes apart) one uplink carries at DR0, DR3 and DR5."""
    from gateway.contract.codec import encode_batch

    rows = ["Readings per batched uplink (15 min apart):", "",
            "| message | DR0–2 (51 B) | DR3 (115 B) | DR4–5 (242 B) |", "|---|---:|---:|---:|"]
    for msg_type, reading in samples().items():
        batch = [{**reading, "offset_s": 900 * i} for i in range(40)]
        counts = [encode_batch(msg_type, batch, limit)[1] for limit in (51, 115, 242)]
        rows.append(f"| {msg_type} | " + " | ".join(str(c) for c in counts) + " |")
    return "\n".join(rows)


# Published payload formats of devices cities deploy today, from the vendors' public decoder
# documentation (sizes of one periodic report with the fields listed).
PUBLISHED = (
    ("ESP32-Paxcounter, packed format", "WiFi + BLE device counts", 4,
     "crowd_count", {"interval": 900, "wifi_devices": 143, "ble_devices": 87, "battery": 3.72},
     "adds interval and battery (V)"),
    ("Milesight EM310-UDL (bin)", "battery %, distance mm, tilt", 10,
     "bin_fill", {"distance": 850, "fill_level": 62, "temperature": 18.5, "tilt": False, "battery": 3.61},
     "adds fill level and temperature (fire alarm); battery in V"),
    ("Milesight VS350 (people counter)", "battery %, temperature, total and period in/out, one passage", 19,
     "passenger_count", {"interval": 300, "doors": [{"door": 0, "boardings": 12, "alightings": 9}],
                         "occupancy": 45, "battery": 3.9},
     "per door, with occupancy; GPS adds 10 B"),
)


def published_table() -> str:
    from gateway.contract.codec import encode_uplink

    rows = ["Against the published formats of devices in use today (one periodic report):", "",
            "| device | its fields | its bytes | citynode equivalent | citynode bytes | |",
            "|---|---|---:|---|---:|---|"]
    for device, fields, size, msg_type, reading, note in PUBLISHED:
        ours = len(encode_uplink(msg_type, reading))
        rows.append(f"| {device} | {fields} | {size} | {msg_type} | {ours} | {note} |")
    return "\n".join(rows)


def main() -> None:
    body = (
        "## Payload size per message type\n\n"
        f"Single reading with every field present, typical city values (codecs/samples.json); {machine()}.\n"
        "citynode bytes from the firmware encoder on the MicroPython unix port; CayenneLPP with pycayennelpp,\n"
        "smallest fitting LPP type per field (LPP is often coarser: 0.1 °C, 0.5 % RH, whole µg/m³); JSON compact.\n"
        "\n"
        + table()
        + "\n\n"
        + batch_table()
        + "\n\n"
        + published_table()
        + "\n"
    )
    write_section("payload_sizes", body)
    print(body)


if __name__ == "__main__":
    main()
