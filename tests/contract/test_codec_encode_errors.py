"""A bad reading is an encode error that names the field, on the node and in the gateway alike.

Never a silent wrap-around: each row is a value a buggy driver or a bad config could produce.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.contract import codec
from gateway.errors import EncodeError

AIR = {"temperature": 21.5, "relative_humidity": 55.4, "pressure": 1013.2, "gas_resistance": 120000,
       "pm1_0": 5.2, "pm2_5": 8.1, "pm10": 14.3, "battery": 3.7}
BIN = {"distance": 850, "fill_level": 62, "temperature": 18.5, "tilt": False, "battery": 3.61}
BUS = {"interval": 300, "doors": [{"door": 0, "boardings": 12, "alightings": 9}], "occupancy": 45, "battery": 3.9}
STATUS = {"firmware": "0.1.0", "uptime": 10, "reset_cause": "power_on", "battery": 3.8, "faults": []}

# (case, message type, reading, text the error must contain)
CASES: list[tuple[str, str, Any, str]] = [
    ("temperature above 85 °C", "air_quality", {**AIR, "temperature": 85.01}, "air_quality.temperature"),
    ("temperature below -40 °C", "air_quality", {**AIR, "temperature": -40.5}, "air_quality.temperature"),
    ("humidity above 100 %", "air_quality", {**AIR, "relative_humidity": 100.2}, "air_quality.relative_humidity"),
    ("pressure in Pa instead of hPa", "air_quality", {**AIR, "pressure": 101320}, "air_quality.pressure"),
    ("negative gas resistance", "air_quality", {**AIR, "gas_resistance": -1}, "air_quality.gas_resistance"),
    ("PM2.5 above 1000 µg/m³", "air_quality", {**AIR, "pm2_5": 1000.1}, "air_quality.pm2_5"),
    ("NaN temperature", "air_quality", {**AIR, "temperature": float("nan")}, "air_quality.temperature"),
    ("battery above 5 V", "air_quality", {**AIR, "battery": 5.01}, "air_quality.battery"),
    ("temperature as text", "air_quality", {**AIR, "temperature": "21.5"}, "air_quality.temperature"),
    ("bool as a number", "air_quality", {**AIR, "pm10": True}, "air_quality.pm10"),
    ("unknown field", "air_quality", {**AIR, "co2": 400}, "co2"),
    ("fault naming an unknown field", "air_quality", {**AIR, "faults": ["ozone"]}, "ozone"),
    ("a value that is also a fault", "air_quality", {**AIR, "faults": ["pm10"]}, "air_quality.pm10"),
    ("distance beyond 10 m", "bin_fill", {**BIN, "distance": 10001}, "bin_fill.distance"),
    ("fill level 101 %", "bin_fill", {**BIN, "fill_level": 101}, "bin_fill.fill_level"),
    ("tilt as 0/1", "bin_fill", {**BIN, "tilt": 1}, "bin_fill.tilt"),
    ("interval of zero", "passenger_count", {**BUS, "interval": 0}, "passenger_count.interval"),
    ("door 16", "passenger_count", {**BUS, "doors": [{"door": 16, "boardings": 1, "alightings": 1}]}, "door"),
    ("boardings beyond 16 bits", "passenger_count",
     {**BUS, "doors": [{"door": 0, "boardings": 65536, "alightings": 1}]}, "boardings"),
    ("door without alightings", "passenger_count", {**BUS, "doors": [{"door": 0, "boardings": 1}]}, "alightings"),
    ("five doors", "passenger_count",
     {**BUS, "doors": [{"door": d, "boardings": 1, "alightings": 1} for d in range(5)]}, "passenger_count.doors"),
    ("latitude beyond 90°", "passenger_count", {**BUS, "latitude": 91.0, "longitude": 7.1}, "latitude"),
    ("occupancy above 1000", "passenger_count", {**BUS, "occupancy": 1001}, "passenger_count.occupancy"),
    ("wifi count beyond 16 bits", "crowd_count",
     {"interval": 900, "wifi_devices": 65536, "ble_devices": 1, "battery": 3.7}, "crowd_count.wifi_devices"),
    ("unknown reset cause", "device_status", {**STATUS, "reset_cause": "cosmic_ray"}, "device_status.reset_cause"),
    ("firmware version with two parts", "device_status", {**STATUS, "firmware": "1.2"}, "device_status.firmware"),
    ("firmware version part above 255", "device_status", {**STATUS, "firmware": "1.256.0"}, "device_status.firmware"),
    ("unknown fault flag", "device_status", {**STATUS, "faults": ["dragons"]}, "dragons"),
    ("unknown message type", "weather", {"temperature": 1}, "weather"),
    ("batch not newest first", "crowd_count",
     [{"interval": 900, "wifi_devices": 1, "ble_devices": 1, "battery": 3.7, "offset_s": 900},
      {"interval": 900, "wifi_devices": 1, "ble_devices": 1, "battery": 3.7, "offset_s": 0}], "newest first"),
    ("negative offset", "crowd_count",
     [{"interval": 900, "wifi_devices": 1, "ble_devices": 1, "battery": 3.7, "offset_s": -5}], "offset_s"),
    ("batch beyond DR0", "air_quality", [{**AIR, "offset_s": 900 * i} for i in range(3)], "exceeds"),
]


@pytest.mark.parametrize(("case", "msg_type", "reading", "names"), CASES, ids=[c[0] for c in CASES])
def test_gateway_encoder_names_the_field(case: str, msg_type: str, reading: Any, names: str) -> None:
    with pytest.raises(EncodeError, match=names.replace(".", r"\.")):
        codec.encode_uplink(msg_type, reading)


# JSON cannot carry NaN to the MicroPython worker: test_firmware_rejects_nan covers that case.
FIRMWARE_CASES = [c for c in CASES if c[0] != "NaN temperature"]


@pytest.mark.parametrize(("case", "msg_type", "reading", "names"), FIRMWARE_CASES, ids=[c[0] for c in FIRMWARE_CASES])
def test_firmware_encoder_names_the_field(
    case: str, msg_type: str, reading: Any, names: str, firmware_codec: Any
) -> None:
    result = firmware_codec.encode(msg_type, reading)
    assert "error" in result, f"encoded {result}"
    assert result["error"].startswith("EncodeError") and names in result["error"]


def test_firmware_rejects_nan(micropython: Any) -> None:
    out = micropython.run(
        "from citynode import codec\n"
        "try:\n"
        "    codec.encode('bin_fill', {'distance': 850, 'fill_level': 62, 'temperature': float('nan'),"
        " 'tilt': False, 'battery': 3.6})\n"
        "except codec.EncodeError as e:\n"
        "    print('EncodeError', e)\n"
    )
    assert out.startswith("EncodeError bin_fill.temperature")


# Settings a network engineer could mistype: (settings, text the error must contain)
DOWNLINK_CASES = [
    ({"interval": 30}, "config.interval"),
    ({"interval": 900.5 * 100}, "config.interval"),
    ({"adr": "yes"}, "config.adr"),
    ({"rssi_floor": -20}, "config.rssi_floor"),
    ({"colour": "red"}, "colour"),
    ({}, "at least one setting"),
]


@pytest.mark.parametrize(("settings", "names"), DOWNLINK_CASES, ids=[n for _, n in DOWNLINK_CASES])
def test_config_encoder_names_the_setting(settings: dict[str, Any], names: str, chirpstack_codec: Any) -> None:
    with pytest.raises(EncodeError, match=names):
        codec.encode_downlink(settings)
    result = chirpstack_codec.encode_downlink(settings)
    assert set(result) == {"errors"} and names.split(".")[-1] in result["errors"][0]
