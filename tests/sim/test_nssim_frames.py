"""`ns-sim --log-frames`: every PHYPayload heard or sent as hex with its direction and DevEUI, and the
frames decode with `citynode lorawan decode` (a real node: the ClassA MAC on the MicroPython unix port)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nssim_harness import KEYS, SimNode, compile_firmware

from gateway.cli import main
from gateway.contract import codec
from gateway.sim.nssim import NetworkServerSim, SimHandle

EUI = KEYS.dev_eui
LINE = re.compile(r"^frame (up|down) dev_eui=([0-9a-f]{16}|-) ([0-9a-f]+)$")


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_firmware(tmp_path_factory.mktemp("nssim-frames"))


@pytest.fixture
def logged() -> list[str]:
    return []


@pytest.fixture
def sim(logged: list[str]) -> Iterator[NetworkServerSim]:
    s = NetworkServerSim([KEYS], port=0, frame_log=logged.append)
    handle: SimHandle = s.run_in_thread()
    yield s
    handle.stop()


def _decode(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    capsys.readouterr()
    assert main(["lorawan", "decode", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_frame_is_logged_with_direction_and_deveui_and_decodes(
    lib: Path, sim: NetworkServerSim, logged: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    payload = codec.encode_uplink("air_quality", {"temperature": 21.5, "relative_humidity": 48.0})
    with SimNode(lib, sim.port) as node:
        assert node.join()["ok"]
        node.send(10, payload)
    sim.wait_for(lambda: len(logged) >= 3, timeout_s=10)
    frames = [LINE.match(line) for line in logged]
    assert all(frames), logged
    kinds = [(m.group(1), m.group(2)) for m in frames]
    assert kinds[:3] == [("up", EUI), ("down", EUI), ("up", EUI)], logged
    join_request, join_accept, uplink = (bytes.fromhex(m.group(3)) for m in frames[:3])

    app_key = KEYS.app_key.hex() if isinstance(KEYS.app_key, bytes) else KEYS.app_key
    jr = _decode(capsys, join_request.hex(), "--appkey", app_key)
    assert jr["mic_valid"] is True and jr["dev_eui"] == EUI
    ja = _decode(capsys, join_accept.hex(), "--appkey", app_key)
    assert ja["mic_valid"] is True
    session = sim.devices[EUI].session
    up = _decode(capsys, uplink.hex(), "--nwkskey", session.nwk_skey.hex(), "--appskey", session.app_skey.hex())
    assert up["mic_valid"] is True and up["fport"] == 10
    assert bytes.fromhex(up["payload"]) == payload
    assert "reading_error" not in up and up["reading"]["readings"][0]["temperature"] == 21.5, up
    assert "payload" not in " ".join(logged) and app_key not in " ".join(logged)  # frames only, never keys


def test_the_command_has_the_option() -> None:
    from gateway.cli import build_parser, walk_parsers

    parser = next(p for p in walk_parsers(build_parser()) if p.prog == "citynode ns-sim")
    args = parser.parse_args(["--devices", "x", "--log-frames"])
    assert args.log_frames == "-"
    assert parser.parse_args(["--devices", "x", "--log-frames", "f.log"]).log_frames == "f.log"
