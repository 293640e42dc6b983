"""Compactness targets of the foundation issue, measured on typical city readings (codecs/samples.json)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gateway.contract import codec
from gateway.contract.schema import load_schema

BENCH = Path(__file__).resolve().parents[2] / "bench" / "payload_sizes.py"
_spec = importlib.util.spec_from_file_location("payload_sizes", BENCH)
assert _spec and _spec.loader
payload_sizes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(payload_sizes)

SAMPLES = payload_sizes.samples()


@pytest.fixture(scope="module")
def firmware_payloads() -> dict[str, bytes]:
    return payload_sizes.citynode_sizes()


@pytest.mark.parametrize("msg_type", sorted(payload_sizes.TARGETS))
def test_meets_size_target(msg_type: str, firmware_payloads: dict[str, bytes]) -> None:
    assert len(firmware_payloads[msg_type]) <= payload_sizes.TARGETS[msg_type]


@pytest.mark.parametrize("msg_type", sorted(SAMPLES))
def test_no_larger_than_cayenne_lpp(msg_type: str, firmware_payloads: dict[str, bytes]) -> None:
    assert len(firmware_payloads[msg_type]) <= len(payload_sizes.cayenne_lpp(msg_type, SAMPLES[msg_type]))


@pytest.mark.parametrize("msg_type", sorted(SAMPLES))
def test_firmware_and_gateway_encode_samples_alike(msg_type: str, firmware_payloads: dict[str, bytes]) -> None:
    assert firmware_payloads[msg_type] == codec.encode_uplink(msg_type, SAMPLES[msg_type])


def test_samples_cover_every_uplink_type() -> None:
    uplinks = {name for name, msg in load_schema().messages.items() if msg.direction == "uplink"}
    assert set(SAMPLES) == uplinks


def test_worst_case_single_readings_fit_dr0() -> None:
    """The largest value of every field still fits the 51 bytes of EU868 DR0 (4 doors: exactly 51)."""
    schema = load_schema()
    for name, msg in schema.messages.items():
        if msg.direction != "uplink":
            continue
        reading = {}
        for spec in msg.fields:
            if spec.type == "number":
                reading[spec.name] = spec.max
            elif spec.type == "bool":
                reading[spec.name] = True
            elif spec.type == "enum":
                reading[spec.name] = spec.values[-1]
            elif spec.type == "flags":
                reading[spec.name] = list(spec.values)
            elif spec.type == "semver":
                reading[spec.name] = "255.255.255"
            elif spec.type == "list":
                reading[spec.name] = [{s.name: s.max for s in spec.items}] * spec.max_items
        assert len(codec.encode_uplink(name, reading)) <= codec.DR0_MAX_PAYLOAD, name
