"""Every shared vector in codecs/vectors/ holds in all three runtimes.

* gateway decoder (CPython, cbor2),
* ChirpStack codec (QuickJS, ChirpStack's 100 ms limit),
* firmware codec (the real MicroPython unix port, ESP32-sized heap): it must produce exactly the vector's
  bytes from the vector's decoded data, and decode every downlink vector.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.contract import codec
from gateway.contract.vectors import load_vectors
from gateway.errors import DecodeError

UPLINKS = load_vectors("uplink")
DOWNLINKS = load_vectors("downlink")
VALID_UPLINKS = [v for v in UPLINKS if "data" in v["expected"]]
VALID_DOWNLINKS = [v for v in DOWNLINKS if "data" in v["expected"]]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [f"{v['file'].removesuffix('.json')}: {v['name']}" for v in vectors]


def _readings_as_sent(data: dict[str, Any]) -> Any:
    """The firmware's input for a decoded vector: one reading, or the batch list."""
    readings = data["readings"]
    if any("offset_s" in r for r in readings):
        return readings
    assert len(readings) == 1
    return readings[0]


def test_vectors_cover_every_message_type() -> None:
    types = {v["expected"]["data"]["type"] for v in VALID_UPLINKS}
    assert types == {"air_quality", "bin_fill", "passenger_count", "crowd_count", "device_status"}
    assert any(len(v["expected"]["data"]["readings"]) > 1 for v in VALID_UPLINKS), "no batch vector"
    assert any("faults" in r for v in VALID_UPLINKS for r in v["expected"]["data"]["readings"])
    assert sum("errors" in v["expected"] for v in UPLINKS) >= 30
    assert sum("errors" in v["expected"] for v in DOWNLINKS) >= 5


@pytest.mark.parametrize("vector", UPLINKS, ids=_ids(UPLINKS))
def test_gateway_decodes_uplink_vector(vector: dict[str, Any]) -> None:
    fport, data = vector["input"]["fPort"], bytes(vector["input"]["bytes"])
    if "data" in vector["expected"]:
        assert codec.decode(fport, data) == vector["expected"]["data"]
    else:
        with pytest.raises(DecodeError):
            codec.decode(fport, data)


@pytest.mark.parametrize("vector", UPLINKS, ids=_ids(UPLINKS))
def test_chirpstack_codec_decodes_uplink_vector(vector: dict[str, Any], chirpstack_codec: Any) -> None:
    result = chirpstack_codec.decode_uplink(vector["input"]["fPort"], vector["input"]["bytes"])
    if "data" in vector["expected"]:
        assert result == {"data": vector["expected"]["data"]}
    else:
        assert set(result) == {"errors"}, f"expected only errors, got {result}"
        assert result["errors"] and all(isinstance(e, str) and e for e in result["errors"])


@pytest.mark.parametrize("vector", VALID_UPLINKS, ids=_ids(VALID_UPLINKS))
def test_firmware_encodes_uplink_vector(vector: dict[str, Any], firmware_codec: Any) -> None:
    data = vector["expected"]["data"]
    result = firmware_codec.encode(data["type"], _readings_as_sent(data))
    assert result == {"hex": bytes(vector["input"]["bytes"]).hex()}


@pytest.mark.parametrize("vector", VALID_UPLINKS, ids=_ids(VALID_UPLINKS))
def test_gateway_encodes_uplink_vector(vector: dict[str, Any]) -> None:
    data = vector["expected"]["data"]
    assert list(codec.encode_uplink(data["type"], _readings_as_sent(data))) == vector["input"]["bytes"]


@pytest.mark.parametrize("vector", DOWNLINKS, ids=_ids(DOWNLINKS))
def test_downlink_vector_decodes_alike_everywhere(
    vector: dict[str, Any], chirpstack_codec: Any, firmware_codec: Any
) -> None:
    fport, data = vector["input"]["fPort"], bytes(vector["input"]["bytes"])
    js = chirpstack_codec.decode_downlink(fport, list(data))
    node = firmware_codec.decode_downlink(fport, data)
    if "data" in vector["expected"]:
        expected = vector["expected"]["data"]
        assert codec.decode_downlink(fport, data) == expected
        assert js == {"data": expected}
        assert node == {"data": expected}
    else:
        with pytest.raises(DecodeError):
            codec.decode_downlink(fport, data)
        assert set(js) == {"errors"}
        assert "error" in node and node["error"].startswith("DecodeError")


@pytest.mark.parametrize("vector", VALID_DOWNLINKS, ids=_ids(VALID_DOWNLINKS))
def test_downlink_vector_encodes_alike_in_gateway_and_chirpstack(
    vector: dict[str, Any], chirpstack_codec: Any
) -> None:
    settings = vector["expected"]["data"]
    assert codec.encode_downlink(settings) == (vector["input"]["fPort"], bytes(vector["input"]["bytes"]))
    assert chirpstack_codec.encode_downlink(settings) == {
        "fPort": vector["input"]["fPort"],
        "bytes": vector["input"]["bytes"],
    }
