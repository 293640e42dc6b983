"""`citynode device run`: bad --values files, boards it cannot simulate and roles a board does not carry
are one line and exit status 2; with the console link it never claims to have joined."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main


def _fail(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("citynode device run: error: ")
    return lines[0]


@pytest.mark.parametrize(("values", "names"), [
    ({"distance_mm": "far"}, ["distance_mm", "non-empty list", '"far"']),
    ({"distance_mm": ["far"]}, ["distance_mm[0]", "mm"]),
    ({"distanse_mm": [800]}, ["distanse_mm", "unknown key"]),
    ({"air": [{"temperature": 20, "relative_humidity": 40}]}, ["air[0].pressure", "missing"]),
    ({"air": [{"temperature": "warm", "pressure": 1000, "relative_humidity": 40}]}, ["air[0].temperature", "number"]),
    ({"pm_sensor": "sds011", "pm": [[1, 2, 3]]}, ["pm[0]", "[pm2_5, pm10]"]),
    ({"battery_v": "full"}, ["battery_v", "number"]),
    ({"fault": ["radio"]}, ["fault"]),
    ([800, 900], ["JSON object"]),
])
def test_a_bad_values_file_is_one_line_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      values: object, names: list[str]) -> None:
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    line = _fail(capsys, ["device", "run", "--role", "bin_fill", "--values", str(path)])
    for name in names:
        assert name in line, line


def test_a_values_file_that_is_not_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "values.json"
    path.write_text("{distance_mm: 800}")
    assert "not valid JSON" in _fail(capsys, ["device", "run", "--role", "bin_fill", "--values", str(path)])


def test_a_missing_values_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _fail(capsys, ["device", "run", "--role", "bin_fill", "--values", str(tmp_path / "nope.json")])
    assert "nope.json" in line


def test_a_role_the_board_does_not_carry_names_both(capsys: pytest.CaptureFixture[str]) -> None:
    line = _fail(capsys, ["device", "run", "--role", "passenger_count", "--board", "ttgo_lora32_v21"])
    assert "ttgo_lora32_v21" in line and "passenger_count" in line


def test_a_real_board_is_refused_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = _fail(capsys, ["device", "run", "--role", "bin_fill", "--board", "lilygo_t_beam"])
    assert "lilygo_t_beam" in line and "sim" in line


def test_with_the_console_link_it_does_not_say_joined(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "values.json"
    path.write_text(json.dumps({"distance_mm": [800], "battery_v": 3.7}))
    assert main(["device", "run", "--role", "bin_fill", "--cycles", "1", "--values", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "joined" not in out
    assert any(line.startswith("console link: no network") for line in out), out
    assert any(line.startswith("uplink fport=11 ") for line in out), out
