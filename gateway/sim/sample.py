"""A sample fleet for the status page and the live view: two hours of realistic uplinks of all four roles.

Each uplink is built the way it reaches a real gateway: the node's payload from :mod:`gateway.contract.codec`,
wrapped in a ChirpStack v4 ``UplinkEvent`` (``chirpstack-api`` message, serialised as ChirpStack's JSON
integration does), and processed by the real :class:`gateway.service.pipeline.Pipeline` into the store. The
values follow plausible city patterns (a daily temperature curve, a bin filling up and being emptied,
a bus's boardings, a crowd counter's evening peak), are deterministic (no randomness), and include the
things the page must show: lost uplinks (an FCnt gap), a ``device_status`` message, a dead letter.

Used by the page and live-view tests and handy for trying the page: ``fill_sample_fleet(store)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.contract import codec
from gateway.service.pipeline import Pipeline
from gateway.service.store import Store

__all__ = [
    "CITY_DISTRICTS",
    "SAMPLE_DEVICES",
    "SampleDevice",
    "city_device",
    "fill_city_fleet",
    "fill_sample_fleet",
    "uplink_event_json",
]

_APP = "3f1c1a34-5d6c-4b61-8c4e-2f9a3c1b7d20"
_GATEWAYS = ("0016c001ff10a235", "0016c001ff10a236")


@dataclass(frozen=True)
class SampleDevice:
    dev_eui: str
    name: str
    role: str  # message type
    district: str
    rssi: int  # dBm, typical for its distance to the gateway
    snr: float  # dB
    sf: int  # spreading factor (EU868 DR5..DR0 = SF7..SF12)


SAMPLE_DEVICES: tuple[SampleDevice, ...] = (
    SampleDevice("70b3d57ed0060001", "aq-hauptbahnhof", "air_quality", "altstadt", -92, 6.5, 7),
    SampleDevice("70b3d57ed0060002", "aq-buer-rathaus", "air_quality", "buer", -113, -4.0, 10),
    SampleDevice("70b3d57ed0060011", "bin-heinrich-koenig-platz", "bin_fill", "altstadt", -101, 3.0, 8),
    SampleDevice("70b3d57ed0060012", "bin-nordsternpark", "bin_fill", "horst", -118, -9.5, 12),
    SampleDevice("70b3d57ed0060021", "bus-383-door-counter", "passenger_count", "route-383", -97, 4.5, 7),
    SampleDevice("70b3d57ed0060031", "crowd-musiktheater", "crowd_count", "altstadt", -88, 9.0, 7),
)


def _reading(device: SampleDevice, i: int, t: datetime) -> dict[str, Any]:
    """The node's measurement at uplink ``i`` (time ``t``): smooth, plausible, deterministic."""
    hour = t.hour + t.minute / 60
    phase = math.sin((hour - 9) / 24 * 2 * math.pi)  # warmest mid-afternoon
    wiggle = math.sin(i * 0.9 + int(device.dev_eui[-2:], 16)) * 0.4
    # Li-ion cells, slowly draining; the far bin's cell is nearly flat (the page flags < 3.3 V).
    start = 3.34 if device.name.startswith("bin-nord") else 4.02 - 0.04 * (int(device.dev_eui[-2:], 16) % 5)
    battery = round(start - i * 0.003, 2)
    if device.role == "air_quality":
        pm25 = max(0.5, 8 + 4 * math.sin(i / 4) + 1.5 * wiggle)
        return {
            "temperature": round(14 + 5 * phase + 0.3 * wiggle, 2),
            "relative_humidity": round(62 - 12 * phase + wiggle, 1),
            "pressure": round(1012.4 - i * 0.05, 1),
            "gas_resistance": int(95000 + 20000 * math.sin(i / 5)),
            "pm1_0": round(pm25 * 0.6, 1),
            "pm2_5": round(pm25, 1),
            "pm10": round(pm25 * 1.7, 1),
            "battery": battery,
        }
    if device.role == "bin_fill":
        depth = 1100  # mm, empty bin
        fill = (i * 4 + 20) % 100 if device.name.startswith("bin-heinrich") else min(95, 35 + i * 2)
        return {
            "distance": int(depth * (1 - fill / 100)),
            "fill_level": fill,
            "temperature": round(13 + 4 * phase, 1),
            "tilt": False,
            "battery": battery,
        }
    if device.role == "passenger_count":
        rush = 1 + math.sin(i / 3) ** 2
        board = [int(6 * rush + 3 * abs(wiggle)), int(3 * rush)]
        alight = [int(5 * rush + 2 * abs(math.cos(i))), int(2 * rush + 1)]
        return {
            "interval": 300,
            "doors": [
                {"door": 1, "boardings": board[0], "alightings": alight[0]},
                {"door": 2, "boardings": board[1], "alightings": alight[1]},
            ],
            "occupancy": int(18 + 14 * math.sin(i / 5) ** 2),
            "battery": round(4.05 - i * 0.001, 2),  # powered by the bus, buffered
            "latitude": round(51.50507 + 0.004 * math.sin(i / 6), 5),
            "longitude": round(7.10234 + 0.006 * math.cos(i / 6), 5),
        }
    wifi = int(40 + 160 * max(0.0, math.sin(i / 8)) + 10 * abs(wiggle))  # crowd_count
    return {"interval": 300, "wifi_devices": wifi, "ble_devices": int(wifi * 1.4), "battery": battery}


def uplink_event_json(
    device: SampleDevice,
    f_cnt: int,
    f_port: int,
    data: bytes,
    time: datetime,
    rssi: int,
    snr: float,
    interval_s: int = 300,
) -> bytes:
    """A ChirpStack v4 ``up`` event as its JSON integration sends it (``chirpstack-api`` message)."""
    from chirpstack_api import gw, integration
    from google.protobuf import json_format

    dev = device.dev_eui
    info = integration.DeviceInfo(
        tenant_id="52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
        tenant_name="Gelsenkirchen",
        application_id=_APP,
        application_name="citynode",
        device_profile_id="0b8a9d0e-5a4f-4c8f-a1b2-33c4d5e6f708",
        device_profile_name="citynode-eu868",
        device_name=device.name,
        dev_eui=device.dev_eui,
    )
    # uplink_interval_s: what `citynode provision` puts in the device profile's tags and ChirpStack
    # merges into every event's tags; the status page's "silent" flag counts from it.
    info.tags.update({"district": device.district, "programme": device.role, "uplink_interval_s": str(interval_s)})
    event = integration.UplinkEvent(
        # Unique per device and FCnt (the whole DevEUI in it: the gateway drops a repeated id as a duplicate).
        deduplication_id=f"7d4a0c2e-{dev[:4]}-4{dev[4:7]}-8{dev[7:10]}-{dev[10:]}{f_cnt % 10**6:06d}",
        device_info=info,
        dev_addr="26" + device.dev_eui[-6:],
        adr=True,
        dr=12 - device.sf,
        f_cnt=f_cnt,
        f_port=f_port,
        data=data,
    )
    event.time.FromDatetime(time)
    event.rx_info.append(gw.UplinkRxInfo(gateway_id=_GATEWAYS[0], uplink_id=f_cnt, rssi=rssi, snr=snr))
    if rssi > -110:  # a nearer device is heard by the second gateway too, weaker
        event.rx_info.append(
            gw.UplinkRxInfo(gateway_id=_GATEWAYS[1], uplink_id=f_cnt, rssi=rssi - 14, snr=snr - 8)
        )
    event.tx_info.frequency = (868100000, 868300000, 868500000)[f_cnt % 3]
    event.tx_info.modulation.lora.bandwidth = 125000
    event.tx_info.modulation.lora.spreading_factor = device.sf
    event.tx_info.modulation.lora.code_rate = gw.CodeRate.CR_4_5
    return json_format.MessageToJson(event).encode()


def fill_sample_fleet(
    store: Store,
    *,
    now: datetime | None = None,
    uplinks: int = 24,
    interval: timedelta = timedelta(minutes=5),
    devices: tuple[SampleDevice, ...] = SAMPLE_DEVICES,
    dead_letter: bool = True,
    configured_interval_s: int | None = None,
) -> int:
    """Store ``uplinks`` uplinks per device ending at ``now`` through the real pipeline.

    The devices' ``uplink_interval_s`` tag (their configured interval) is ``configured_interval_s``,
    by default the pace of the uplinks (``interval``); a sped-up demo sends faster than configured.

    The second bin loses FCnt 5 and 6 (2 lost uplinks), the first air-quality node sends a
    ``device_status`` message, and (``dead_letter``) one truncated payload of the last device ends in
    the dead-letter store.
    Returns the number of events processed.
    """
    now = now or datetime.now(UTC)
    with store.batch():  # one commit, as the MQTT ingest groups what the broker has already sent
        tag = configured_interval_s or int(interval.total_seconds())
        return _fill(Pipeline(store), now, uplinks, interval, devices, dead_letter, tag)


def _fill(
    pipeline: Pipeline,
    now: datetime,
    uplinks: int,
    interval: timedelta,
    devices: tuple[SampleDevice, ...],
    dead_letter: bool,
    interval_tag: int,
) -> int:
    count = 0
    for device in devices:
        f_cnt = 0
        for i in range(uplinks):
            t = now - interval * (uplinks - 1 - i) - timedelta(seconds=7 * devices.index(device))
            f_cnt += 1
            if device.name == "bin-nordsternpark" and f_cnt == 5:
                f_cnt += 2  # FCnt 5 and 6 never arrive
            # Slow fading plus the odd dip (a passing lorry, rain): a few dB either way.
            dip = i % 7 == 3
            rssi = device.rssi + int(round(3 * math.sin(i * 0.45 + len(device.name)) - (4 if dip else 0)))
            snr = round(device.snr + 1.5 * math.sin(i * 0.3 + len(device.name)) - (2.5 if dip else 0), 1)
            data = codec.encode_uplink(device.role, _reading(device, i, t))
            f_port = codec_fport(device.role)
            body = uplink_event_json(device, f_cnt, f_port, data, t, rssi, snr, interval_tag)
            pipeline.handle("up", body, "json", "sample")
            count += 1
        if device.role == "air_quality" and device is devices[0]:
            f_cnt += 1
            status = codec.encode_uplink(
                "device_status",
                {
                    "firmware": "1.2.0",
                    "uptime": 86400 * 3 + 4521,
                    "reset_cause": "deep_sleep",
                    "battery": 3.91,
                },
            )
            t = now - timedelta(seconds=2)
            body = uplink_event_json(device, f_cnt, 1, status, t, device.rssi, device.snr, interval_tag)
            pipeline.handle("up", body, "json", "sample")
            count += 1
    if not dead_letter:
        return count
    # A truncated payload: the gateway keeps it as a dead letter with the reason.
    bad = devices[min(1, len(devices) - 1)]
    t = now - timedelta(seconds=30)
    body = uplink_event_json(bad, uplinks + 1, 10, b"\x01\x19", t, bad.rssi, bad.snr)
    pipeline.handle("up", body, "json", "sample")
    return count + 1


def codec_fport(message_type: str) -> int:
    """The uplink fPort of ``message_type`` (payload contract, codecs/schema.json)."""
    from gateway.contract.schema import load_schema

    return load_schema().messages[message_type].fport


CITY_DISTRICTS = ("altstadt", "buer", "horst", "schalke", "erle", "hassel", "bismarck", "ueckendorf")
_CITY_ROLES = ("air_quality", "bin_fill", "passenger_count", "crowd_count")
_CITY_PREFIX = {"air_quality": "aq", "bin_fill": "bin", "passenger_count": "bus", "crowd_count": "crowd"}


def city_device(n: int) -> SampleDevice:
    """Device number ``n`` (0-based) of a city fleet: roles and districts in turn, DevEUI 70b3d57ed1xxxxxx."""
    role = _CITY_ROLES[n % len(_CITY_ROLES)]
    district = CITY_DISTRICTS[(n // len(_CITY_ROLES)) % len(CITY_DISTRICTS)]
    return SampleDevice(
        dev_eui=f"70b3d57ed1{n:06x}",
        name=f"{_CITY_PREFIX[role]}-{district}-{n:05d}",
        role=role,
        district=district,
        rssi=-85 - n % 35,
        snr=round(9.0 - (n % 35) * 0.5, 1),
        sf=7 + n % 6,
    )


def fill_city_fleet(
    store: Store,
    devices: int = 20_000,
    *,
    now: datetime | None = None,
    uplinks: int = 3,
    interval: timedelta = timedelta(minutes=15),
    chunk: int = 2_000,
) -> int:
    """A city-sized fleet: ``devices`` nodes of all four roles in :data:`CITY_DISTRICTS`, ``uplinks`` each,
    through the real pipeline in transactions of ``chunk`` events (about 10 s for 60,000 events).

    Every 97th device stopped an hour ago (silent), every 101st reports a low battery, and every 1000th
    sent a truncated payload (a dead letter with a long reason). Returns the number of events processed.
    """
    now = now or datetime.now(UTC)
    pipeline = Pipeline(store)
    items: list[tuple[str, bytes | str, Any, str, str | None]] = []
    count = 0

    def flush() -> None:
        nonlocal count
        if items:
            pipeline.handle_many(items)
            count += len(items)
            items.clear()

    for n in range(devices):
        device = city_device(n)
        end = now - timedelta(hours=1) if n % 97 == 5 else now - timedelta(seconds=n % 600)
        for i in range(uplinks):
            t = end - interval * (uplinks - 1 - i)
            reading = _reading(device, i, t)
            if "battery" in reading and n % 101 == 7:
                reading["battery"] = 3.12
            data = codec.encode_uplink(device.role, reading)
            body = uplink_event_json(
                device, i + 1, codec_fport(device.role), data, t, device.rssi, device.snr, int(interval.total_seconds())
            )
            items.append(("up", body, "json", "sample", device.dev_eui))
        if n % 1000 == 999:
            t = end + timedelta(seconds=1)
            body = uplink_event_json(device, uplinks + 1, 10, b"\x01\x19" + b"\xff" * 40, t, device.rssi, device.snr)
            items.append(("up", body, "json", "sample", device.dev_eui))
        if len(items) >= chunk:
            flush()
    flush()
    return count
