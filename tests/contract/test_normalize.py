"""Decoded payloads to unit-labelled readings (units from codecs/schema.json, offset_s, list flattening)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.contract import codec
from gateway.contract.normalize import normalize
from gateway.errors import DecodeError


def test_air_quality_fields_carry_schema_units(make_uplink, aq_payload):
    up = make_uplink(5, data=aq_payload())
    readings = normalize(codec.decode(10, up.data), up)
    by_field = {r.field: r for r in readings}
    assert [r.field for r in readings] == [
        "temperature",
        "relative_humidity",
        "pressure",
        "gas_resistance",
        "pm1_0",
        "pm2_5",
        "pm10",
        "battery",
    ]
    # (field, value, unit, UN/CEFACT code) -- codecs/schema.json
    for field, value, unit, code in [
        ("temperature", 21.5, "°C", "CEL"),
        ("relative_humidity", 45.2, "%", "P1"),
        ("pressure", 1013.2, "hPa", "A97"),
        ("pm2_5", 5.4, "µg/m³", "GQ"),
        ("battery", 3.71, "V", "VLT"),
        ("gas_resistance", 120000, "Ω", "OHM"),
    ]:
        r = by_field[field]
        assert (r.value, r.unit, r.unit_code) == (value, unit, code), field
    r = readings[0]
    assert (r.dev_eui, r.message_type, r.time, r.f_cnt, r.deduplication_id, r.tags) == (
        up.dev_eui,
        "air_quality",
        up.received_at,
        5,
        up.deduplication_id,
        up.tags,
    )


def test_batch_time_is_receive_time_minus_offset(make_uplink):
    data, _ = codec.encode_batch(
        "bin_fill",
        [
            {"distance": 400, "fill_level": 60, "temperature": 12.5, "tilt": False, "battery": 3.6},
            {
                "distance": 450,
                "fill_level": 55,
                "temperature": 12.0,
                "tilt": False,
                "battery": 3.6,
                "offset_s": 900,
            },
        ],
    )
    up = make_uplink(data=data, f_port=11)
    readings = normalize(codec.decode(11, data), up)
    assert [(r.field, r.value, r.time) for r in readings if r.field in ("distance", "tilt")] == [
        ("distance", 400, up.received_at),
        ("tilt", False, up.received_at),  # bools are kept as values
        ("distance", 450, up.received_at - timedelta(seconds=900)),
        ("tilt", False, up.received_at - timedelta(seconds=900)),
    ]


def test_lists_are_flattened_by_position_and_faults_are_not_readings(make_uplink):
    data = codec.encode_uplink(
        "passenger_count",
        {
            "interval": 300,
            "occupancy": 31,
            "battery": 3.9,
            "doors": [
                {"door": 1, "boardings": 7, "alightings": 2},
                {"door": 2, "boardings": 0, "alightings": 5},
            ],
        },
    )
    up = make_uplink(data=data, f_port=12)
    values = {r.field: r.value for r in normalize(codec.decode(12, data), up)}
    assert values == {
        "interval": 300,
        "occupancy": 31,
        "battery": 3.9,
        "doors.0.door": 1,
        "doors.0.boardings": 7,
        "doors.0.alightings": 2,
        "doors.1.door": 2,
        "doors.1.boardings": 0,
        "doors.1.alightings": 5,
    }


def test_device_status_keeps_enum_and_semver_values_and_drops_faults(make_uplink):
    data = codec.encode_uplink(
        "device_status",
        {
            "firmware": "1.4.2",
            "uptime": 86400,
            "reset_cause": "brownout",
            "battery": 3.3,
            "faults": ["gps", "low_battery"],
        },
    )
    up = make_uplink(data=data, f_port=1)
    readings = normalize(codec.decode(1, data), up)
    values = {r.field: (r.value, r.unit) for r in readings}
    assert values == {
        "firmware": ("1.4.2", None),
        "uptime": (86400, "s"),
        "reset_cause": ("brownout", None),
        "battery": (3.3, "V"),
    }


def test_unmeasured_fields_are_absent(make_uplink):
    data = codec.encode_uplink("air_quality", {"temperature": 20.0, "battery": 3.7})
    fields = [r.field for r in normalize(codec.decode(10, data), make_uplink(data=data))]
    assert fields == ["temperature", "battery"]


@pytest.mark.parametrize(
    ("decoded", "reason"),
    [
        ({"readings": []}, "string 'type'"),
        ({"type": "air_quality", "readings": [1]}, "reading 0 is not an object"),
        ({"type": "air_quality", "readings": [{"offset_s": -5}]}, "invalid offset_s"),
        (
            {"type": "air_quality", "readings": [{"temperature": {"a": 1}}]},
            "temperature has a value of type dict",
        ),
        ({"type": "air_quality", "readings": [{"temperature": None}]}, "temperature is null"),
    ],
)
def test_malformed_decoded_forms_raise_decode_error(make_uplink, decoded, reason):
    with pytest.raises(DecodeError, match=reason):
        normalize(decoded, make_uplink())
