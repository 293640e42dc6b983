"""Time on air, EU868 duty-cycle budget and estimated battery life per role.

Time on air comes from the firmware's own implementation of Semtech's formula
(firmware/lib/citynode/lorawan/airtime.py, tested against Semtech's calculator), for each role's
typical payload (codecs/samples.json, encoded by the gateway codec, which gives the firmware's bytes)
plus the 13 bytes of LoRaWAN framing (MHDR 1, FHDR 7 without FOpts, FPort 1, MIC 4).

The battery model is stated in full below; its currents are typical datasheet values, not
measurements of a citynode board, and the result is an estimate to compare roles and data rates.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "firmware" / "lib"))

from results import machine, write_section  # noqa: E402

from citynode.lorawan import airtime  # noqa: E402  (the firmware module, run under CPython)
from gateway.contract.codec import encode_uplink  # noqa: E402

LORAWAN_OVERHEAD = 13  # MHDR 1 + DevAddr 4 + FCtrl 1 + FCnt 2 + FPort 1 + MIC 4 (LoRaWAN 1.0.4 §4)
SFS = (7, 8, 9, 10, 11, 12)
SUB_BAND_DUTY = 0.01  # ETSI EN 300 220, sub-band 868.0-868.6 MHz (the three default channels)
INTERVALS_S = {"air_quality": 600, "bin_fill": 3600, "passenger_count": 300, "crowd_count": 900}
STATUS_PER_DAY = 1


@dataclass(frozen=True)
class PowerModel:
    """Per-role energy model. Currents in mA, times in s, capacity in mAh."""

    sleep_ma: float  # whole board between cycles (ESP32 deep sleep + regulator + sensors asleep)
    awake_s: float  # MCU awake per cycle besides the radio (boot, sensors, encode, flash writes)
    awake_ma: float  # MCU active, WiFi/BLE off
    sensor_mas: float  # sensor charge per cycle in mA*s (fans, heaters, ultrasonic bursts)
    capacity_mah: float
    supply: str
    self_discharge_ma: float = 0.0  # the cell's own loss, as an equivalent current


TX_MA = 44.0  # SX1276 at +14 dBm (datasheet table 9: 44 mA with PA_BOOST at +14 dBm class)
RX_MA = 11.5  # SX1276 receive, LnaBoost off (datasheet: 10.8-12 mA)
RX_WINDOWS_S = 0.05 + 0.05  # two receive windows that find no preamble, ~50 ms each at SF7-SF9
DERATING = 0.8  # usable share of nominal capacity (cold, cut-off voltage)
SERVICE_LIFE_DAYS = 3650  # enclosure seals, cell shelf life: no battery node is planned beyond 10 years

MODELS = {
    # Board level in deep sleep ~100 uA: ESP32 ~10 uA, plus LDO quiescent current and the battery divider
    # (the bare-chip figure is never what a dev board draws). BME680 forced mode with a 150 ms heater at
    # ~12 mA; SDS011 fan and laser ~70 mA for the 30 s warm-up plus 3 s of samples. Two 18650 cells in
    # parallel (2 x 3400 mAh), self-discharge ~2.5 % a month.
    "air_quality": PowerModel(0.1, 3.0, 45.0, 70.0 * 33 + 12.0 * 0.15, 6800, "2 x 18650 Li-ion",
                              6800 * 0.025 / 730),
    # JSN-SR04T ~30 mA for 5 pings (~0.4 s), BME680 as thermometer (no heater): one Li-SOCl2 D cell,
    # self-discharge ~1 % a year.
    "bin_fill": PowerModel(0.1, 1.0, 45.0, 30.0 * 0.4, 19000, "1 x Li-SOCl2 D cell (19 Ah)", 19000 * 0.01 / 8760),
    # Buses and trams: vehicle power. Light sleep with beams and GPS powered: ~60 mA at all times.
    "passenger_count": PowerModel(60.0, 0.0, 0.0, 0.0, 0, "vehicle power (12/24 V)"),
    # Sniffing keeps the WiFi receiver on: ~100 mA continuous: mains, street lighting or a solar panel.
    "crowd_count": PowerModel(100.0, 0.0, 0.0, 0.0, 0, "mains / street lighting / solar"),
}


def payload_bytes() -> dict[str, int]:
    samples = json.loads((ROOT / "codecs" / "samples.json").read_text(encoding="utf-8"))
    return {role: len(encode_uplink(role, samples[role])) for role in INTERVALS_S}


def toa_ms(app_bytes: int, sf: int) -> float:
    return airtime.time_on_air_us(app_bytes + LORAWAN_OVERHEAD, sf, 125000) / 1000


def battery_days(role: str, app_bytes: int, sf: int) -> float | None:
    m = MODELS[role]
    if not m.capacity_mah:
        return None
    interval = INTERVALS_S[role]
    per_cycle_mas = (
        m.awake_s * m.awake_ma + toa_ms(app_bytes, sf) / 1000 * TX_MA + RX_WINDOWS_S * RX_MA + m.sensor_mas
    )
    status_mas = STATUS_PER_DAY * (toa_ms(15, sf) / 1000 * TX_MA + RX_WINDOWS_S * RX_MA) / 86400 * interval
    avg_ma = (per_cycle_mas + status_mas) / interval + m.sleep_ma + m.self_discharge_ma
    return m.capacity_mah * DERATING / avg_ma / 24


def _life(days: float) -> str:
    text = f"{days:.0f} d" if days < 365 else f"{days / 365:.1f} y"
    return text + ("*" if days > SERVICE_LIFE_DAYS else "")


def tables() -> str:
    sizes = payload_bytes()
    lines = ["### Time on air (ms) per uplink, EU868 125 kHz, CR 4/5, 8-symbol preamble", "",
             "| role | payload | " + " | ".join(f"SF{sf}" for sf in SFS) + " |",
             "|---|---:|" + "---:|" * len(SFS)]
    for role, n in sizes.items():
        lines.append(f"| {role} | {n} B + {LORAWAN_OVERHEAD} | "
                     + " | ".join(f"{toa_ms(n, sf):.1f}" for sf in SFS) + " |")
    lines += ["", "### Share of the 1 % duty-cycle budget used (868.0-868.6 MHz sub-band, 36 s per hour)", "",
              "| role | interval | uplinks/h | " + " | ".join(f"SF{sf}" for sf in SFS) + " |",
              "|---|---:|---:|" + "---:|" * len(SFS)]
    for role, n in sizes.items():
        per_hour = 3600 / INTERVALS_S[role]
        cells = [f"{toa_ms(n, sf) / 1000 * per_hour / (3600 * SUB_BAND_DUTY) * 100:.2f} %" for sf in SFS]
        lines.append(f"| {role} | {INTERVALS_S[role]} s | {per_hour:g} | " + " | ".join(cells) + " |")
    lines += ["", "### Estimated battery life (* = beyond the 10-year service life of cell and enclosure)", "",
              "| role | supply | " + " | ".join(f"SF{sf}" for sf in SFS) + " |",
              "|---|---|" + "---:|" * len(SFS)]
    for role, n in sizes.items():
        days = [battery_days(role, n, sf) for sf in SFS]
        cells = ["–" if d is None else _life(d) for d in days]
        lines.append(f"| {role} | {MODELS[role].supply} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_text() -> str:
    rows = ["| role | sleep (mA) | self-discharge (mA) | awake per cycle | sensors per cycle | capacity |",
            "|---|---:|---:|---|---|---:|"]
    for role, m in MODELS.items():
        if m.capacity_mah:
            rows.append(f"| {role} | {m.sleep_ma:g} | {m.self_discharge_ma:.3f} | {m.awake_s:g} s at {m.awake_ma:g} mA | "
                        f"{m.sensor_mas:g} mA·s | {m.capacity_mah:g} mAh |")
        else:
            rows.append(f"| {role} | {m.sleep_ma:g} (always on) | – | – | – | {m.supply} |")
    return (
        "Model: average current = board sleep current + the cell's self-discharge + (MCU awake + radio TX for the time on air at "
        f"{TX_MA:g} mA + two empty receive windows of 50 ms at {RX_MA:g} mA + sensor charge) per interval, "
        "plus one device_status uplink a day; life = capacity x "
        f"{DERATING:g} / average current. Typical datasheet currents (SX1276, ESP32, SDS011, JSN-SR04T, BME680), "
        "not measurements of a citynode board:\n\n" + "\n".join(rows)
    )


def main() -> None:
    body = (
        "## Time on air, duty cycle and battery life per role\n\n"
        f"Each role's typical payload (codecs/samples.json) at its default interval; {machine()}.\n"
        "Time on air from the firmware's airtime module (Semtech's formula, SX1276 datasheet §4.1.1.7).\n\n"
        + tables() + "\n\n" + model_text() + "\n\n"
        "The particulate sensor's 30 s warm-up dominates the air-quality node's budget: a longer interval or\n"
        "a shorter `pm_warmup` (downlink-settable) extends its life more than any data-rate choice.\n"
    )
    write_section("airtime_budget", body)
    print(body)


if __name__ == "__main__":
    main()
