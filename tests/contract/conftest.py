"""Fixtures for the codec tests: the firmware codec on MicroPython, the ChirpStack codec in QuickJS."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import quickjs

from gateway.field.micropython import ESP32_HEAP, MicroPythonNotFound, find_micropython, micropython_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHIRPSTACK_JS = ROOT / "codecs" / "chirpstack" / "citynode.js"
# ChirpStack v4 stops a codec script after 100 ms; the tests hold the JS codec to the same limit.
CHIRPSTACK_TIME_LIMIT_S = 0.1


class FirmwareCodec:
    """The firmware codec running in one long-lived MicroPython process (ESP32-sized heap)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [find_micropython(), "-X", f"heapsize={ESP32_HEAP}", str(HERE / "mp_codec_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=micropython_env(),
        )

    def call(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"MicroPython codec worker died on {request!r}:\n{err}")
        return json.loads(line)

    def encode(self, msg_type: str, reading: Any) -> dict[str, Any]:
        return self.call(op="encode", type=msg_type, reading=reading)

    def encode_batch(self, msg_type: str, readings: list[Any], max_len: int) -> dict[str, Any]:
        return self.call(op="batch", type=msg_type, readings=readings, max_len=max_len)

    def decode_downlink(self, fport: int, data: bytes) -> dict[str, Any]:
        return self.call(op="downlink", fport=fport, hex=data.hex())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def firmware_codec() -> Iterator[FirmwareCodec]:
    try:
        find_micropython()
    except MicroPythonNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    worker = FirmwareCodec()
    yield worker
    worker.close()


class ChirpStackCodec:
    """The generated ChirpStack codec in QuickJS, called the way ChirpStack calls it."""

    def __init__(self) -> None:
        self.ctx = quickjs.Context()
        self.ctx.set_time_limit(CHIRPSTACK_TIME_LIMIT_S)
        self.ctx.eval(CHIRPSTACK_JS.read_text(encoding="utf-8"))

    def _call(self, function: str, argument: dict[str, Any]) -> dict[str, Any]:
        return json.loads(self.ctx.eval(f"JSON.stringify({function}({json.dumps(argument)}))"))

    def decode_uplink(self, fport: int, data: bytes | list[int]) -> dict[str, Any]:
        return self._call("decodeUplink", {"fPort": fport, "bytes": list(data), "variables": {}})

    def decode_downlink(self, fport: int, data: bytes | list[int]) -> dict[str, Any]:
        return self._call("decodeDownlink", {"fPort": fport, "bytes": list(data), "variables": {}})

    def encode_downlink(self, data: dict[str, Any]) -> dict[str, Any]:
        return self._call("encodeDownlink", {"data": data, "variables": {}})


@pytest.fixture(scope="session")
def chirpstack_codec() -> ChirpStackCodec:
    return ChirpStackCodec()
