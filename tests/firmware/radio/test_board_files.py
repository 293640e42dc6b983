"""Every board file in boards/ is valid, carries the facts the issue lists, and builds its radio.

citynode.boards runs under CPython here (it is plain firmware code) and on MicroPython below.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BOARDS = ROOT / "boards"
sys.path.insert(0, str(ROOT / "firmware" / "lib"))

from citynode.boards import BoardError, load_board, validate_board  # noqa: E402

BOARD_FILES = sorted(BOARDS.glob("*.json"))


def test_the_required_boards_exist():
    names = {p.stem for p in BOARD_FILES}
    assert {"heltec_wifi_lora_32_v3", "lilygo_t_beam", "ttgo_lora32_v21", "sim"} <= names


@pytest.mark.parametrize("path", BOARD_FILES, ids=[p.stem for p in BOARD_FILES])
def test_every_board_file_is_valid(path):
    board = load_board(path.stem, dirs=(str(BOARDS),))
    assert board["name"] == path.stem
    assert board["roles"], "a board must carry at least one role"


def test_every_board_loads_on_micropython(micropython, repo_root):
    names = [p.stem for p in BOARD_FILES]
    got = micropython.eval_json(
        "import json\nfrom citynode.boards import load_board\n"
        f"out = {{}}\nfor n in {names!r}:\n    b = load_board(n, dirs=({str(BOARDS)!r},))\n    out[n] = [b['radio']['chip'], b['roles']]\n"
        "print(json.dumps(out))"
    )
    assert got["heltec_wifi_lora_32_v3"][0] == "sx1262"
    assert got["lilygo_t_beam"] == ["sx1276", ["air_quality", "bin_fill", "passenger_count", "crowd_count"]]
    assert got["sim"][0] == "virtual"


# Facts from the issue and the vendors' pinouts
@pytest.mark.parametrize(
    ("board", "path", "value"),
    [
        ("heltec_wifi_lora_32_v3", "mcu", "esp32s3"),
        ("heltec_wifi_lora_32_v3", "radio.chip", "sx1262"),
        ("heltec_wifi_lora_32_v3", "radio.pins", {"nss": 8, "reset": 12, "busy": 13, "dio1": 14}),
        ("heltec_wifi_lora_32_v3", "radio.spi.sck", 9),
        ("heltec_wifi_lora_32_v3", "radio.spi.mosi", 10),
        ("heltec_wifi_lora_32_v3", "radio.spi.miso", 11),
        ("heltec_wifi_lora_32_v3", "radio.tcxo_mv", 1800),
        ("heltec_wifi_lora_32_v3", "radio.rf_switch", "dio2"),
        ("heltec_wifi_lora_32_v3", "power.vext_pin", 36),
        ("heltec_wifi_lora_32_v3", "battery.adc_pin", 1),
        ("heltec_wifi_lora_32_v3", "battery.enable_pin", 37),
        ("lilygo_t_beam", "mcu", "esp32"),
        ("lilygo_t_beam", "radio.pins.nss", 18),
        ("lilygo_t_beam", "radio.pins.reset", 23),
        ("lilygo_t_beam", "radio.pins.dio0", 26),
        ("lilygo_t_beam", "radio.spi", {"id": 1, "sck": 5, "mosi": 27, "miso": 19, "baudrate": 8000000}),
        ("lilygo_t_beam", "gps", {"uart_id": 1, "rx": 34, "tx": 12, "baudrate": 9600}),
        ("lilygo_t_beam", "pmu.chip", "axp192"),
        ("lilygo_t_beam", "pmu.sda", 21),
        ("lilygo_t_beam", "pmu.scl", 22),
        ("ttgo_lora32_v21", "radio.chip", "sx1276"),
        ("ttgo_lora32_v21", "radio.pins.nss", 18),
        ("ttgo_lora32_v21", "radio.pins.dio0", 26),
        ("ttgo_lora32_v21", "battery", {"method": "adc", "adc_pin": 35, "divider": 2.0}),
        ("sim", "mcu", "unix"),
    ],
)
def test_board_facts(board, path, value):
    data = json.loads((BOARDS / f"{board}.json").read_text())
    for key in path.split("."):
        data = data[key]
    assert data == value


def _heltec():
    return json.loads((BOARDS / "heltec_wifi_lora_32_v3.json").read_text())


def _tbeam():
    return json.loads((BOARDS / "lilygo_t_beam.json").read_text())


def _set(data, path, value):
    keys = path.split(".")
    for k in keys[:-1]:
        data = data[k]
    if value is KeyError:
        del data[keys[-1]]
    else:
        data[keys[-1]] = value


@pytest.mark.parametrize(
    ("base", "path", "value", "field", "reason"),
    [
        (_heltec, "radio.pins.busy", KeyError, "radio.pins.busy", "required for an sx1262"),
        (_heltec, "radio.tcxo_mv", 1900, "radio.tcxo_mv", "must be null or one of"),
        (_heltec, "radio.chip", "sx1280", "radio.chip", "must be one of sx1276, sx1262, virtual"),
        (_heltec, "radio.pins.nss", 23, "radio.pins.nss", "not a GPIO of the esp32s3"),
        (_heltec, "radio.pins.nss", 14, "radio.pins.dio1", "GPIO14 is already used by radio.pins.nss"),
        (_heltec, "battery.adc_pin", 20, "battery.adc_pin", "not an ADC1 pin"),
        (_heltec, "battery.divider", 0.5, "battery.divider", "divider ratio"),
        (_heltec, "roles", ["air_quality", "parking"], "roles", "unknown role 'parking'"),
        (_heltec, "roles", ["passenger_count"], "roles", "passenger_count needs a gps UART"),
        (_heltec, "roles", [], "roles", "non-empty"),
        (_heltec, "name", "heltec_v2", "name", "does not match the file name"),
        (_heltec, "mcu", "esp8266", "mcu", "must be one of"),
        (_heltec, "radio.spi.baudrate", 20_000_000, "radio.spi.baudrate", "must be an integer"),
        (_heltec, "battery", KeyError, "battery", "missing"),
        (_tbeam, "radio.pins.nss", 35, "radio.pins.nss", "input-only"),
        (_tbeam, "gps.tx", 36, "gps.tx", "input-only"),
        (_tbeam, "battery.pmu", "axp2101", "battery.pmu", "must name the board's pmu.chip"),
        (_tbeam, "radio.tcxo_mv", 1800, "radio.tcxo_mv", "must be null"),
        (_tbeam, "uart.id", 1, "gps.uart_id", "already the sensor UART"),
        (_tbeam, "radio.chip", "virtual", "radio.chip", "unix port only"),
    ],
)
def test_bad_board_names_the_field(base, path, value, field, reason):
    data = copy.deepcopy(base())
    name = data["name"]
    _set(data, path, value)
    with pytest.raises(BoardError) as info:
        validate_board(data, name)
    assert info.value.field == field
    assert reason in str(info.value)
    assert str(info.value).startswith(name + ": " + field + ": ")


def test_missing_board_file_lists_where_it_looked(tmp_path):
    with pytest.raises(BoardError) as info:
        load_board("no_such_board", dirs=(str(tmp_path),))
    assert str(info.value) == f"no_such_board: board: no no_such_board.json in {tmp_path}"


def test_broken_json_is_reported(tmp_path):
    (tmp_path / "broken.json").write_text("{ not json")
    with pytest.raises(BoardError) as info:
        load_board("broken", dirs=(str(tmp_path),))
    assert info.value.field == "(file)" and "is not valid JSON" in str(info.value)


@pytest.mark.parametrize("bad", ["../etc/passwd", "", "a.b"])
def test_board_name_cannot_escape_the_directory(bad):
    with pytest.raises(BoardError):
        load_board(bad)


OPEN_RADIO = """
import json
from citynode.boards import load_board, open_radio
from radiosim_hw import FakeClock
{imports}
chip = {sim}
made = []
def make_spi(id, sck, mosi, miso, baudrate):
    made.append(['spi', id, sck, mosi, miso, baudrate])
    return chip.spi
def make_pin(gpio, output):
    made.append(['pin', gpio, output])
    return {{{pins}}}[gpio]
b = load_board({name!r}, dirs=({dir!r},))
r = open_radio(b, make_spi, make_pin, clock=chip.clock)
r.configure(868100000, 7, 125000)
r.send(b'hi')
print(json.dumps([type(r).__name__, made, len(chip.sent)]))
"""


def test_open_radio_builds_the_heltec_sx1262_with_its_tcxo(mpy):
    got = mpy.json(
        OPEN_RADIO.format(
            imports="from radiosim_sx1262 import SX1262Sim",
            sim="SX1262Sim(tcxo=True)",  # fails with SequenceError if the board's TCXO were not configured
            pins="8: chip.nss, 12: chip.reset_pin, 13: chip.busy, 14: chip.dio1",
            name="heltec_wifi_lora_32_v3",
            dir=str(BOARDS),
        )
    )
    assert got == [
        "SX1262",
        [["spi", 1, 9, 10, 11, 8000000], ["pin", 8, True], ["pin", 12, True], ["pin", 14, False], ["pin", 13, False]],
        1,
    ]


def test_open_radio_builds_the_t_beam_sx1276(mpy):
    got = mpy.json(
        OPEN_RADIO.format(
            imports="from radiosim_sx1276 import SX1276Sim",
            sim="SX1276Sim()",
            pins="18: chip.nss, 23: chip.reset_pin, 26: chip.dio0",
            name="lilygo_t_beam",
            dir=str(BOARDS),
        )
    )
    assert got == ["SX1276", [["spi", 1, 5, 27, 19, 8000000], ["pin", 18, True], ["pin", 23, True], ["pin", 26, False]], 1]


def test_open_radio_gives_the_sim_board_a_virtual_radio(mpy):
    got = mpy.json(
        "import json\nfrom citynode.boards import load_board, open_radio\n"
        f"r = open_radio(load_board('sim', dirs=({str(BOARDS)!r},)), None, None)\n"
        "print(json.dumps([type(r).__name__, r._addr == __import__('socket').getaddrinfo('127.0.0.1', 1700)[0][-1]]))"
    )
    assert got == ["UdpRadio", True]  # the network-server simulator's radio (citynode ns-sim, port 1700)
