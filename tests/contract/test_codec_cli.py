"""``citynode codec``: hex out for encode, JSON out for decode, a one-line reason and exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CITYNODE = [str(Path(sys.executable).parent / "citynode")]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CITYNODE, *args], capture_output=True, text=True, timeout=60)


def test_encode_prints_hex() -> None:
    out = run("codec", "encode", "bin_fill",
              '{"distance": 850, "fill_level": 62, "temperature": 18.5, "tilt": false, "battery": 3.61}')
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "8601190352183e1855f4183d"


def test_decode_prints_json() -> None:
    out = run("codec", "decode", "--fport", "11", "86 01 19 03 52 18 3e 18 55 f4 18 3d")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "type": "bin_fill", "version": 1,
        "readings": [{"distance": 850, "fill_level": 62, "temperature": 18.5, "tilt": False, "battery": 3.61}],
    }


def test_config_round_trip() -> None:
    enc = run("codec", "encode", "config", '{"interval": 900, "adr": true}')
    assert enc.returncode == 0, enc.stderr
    dec = run("codec", "decode", "--downlink", "--fport", "2", enc.stdout.strip())
    assert json.loads(dec.stdout) == {"interval": 900, "adr": True}


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("codec", "encode", "air_quality", '{"temperature": 99}'), "air_quality.temperature"),
        (("codec", "encode", "air_quality", "{not json"), "not valid JSON"),
        (("codec", "encode", "weather", "{}"), "unknown uplink message type"),
        (("codec", "decode", "--fport", "10", "zz"), "not a hex string"),
        (("codec", "decode", "--fport", "10", "ffff"), "not valid CBOR"),
        (("codec", "decode", "--fport", "77", "8101"), "no citynode uplink message on fPort 77"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args: tuple[str, ...], reason: str) -> None:
    out = run(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], out.stderr
