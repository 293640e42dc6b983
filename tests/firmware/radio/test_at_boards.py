"""Boards whose LoRa module runs its own LoRaWAN stack (radio.chip "rak3172" or "wio_e5"): the board file
names the modem's UART, bad entries stop the node with the field named, and boot gives such a board the
AT-modem link (citynode.lorawan_at) instead of citynode's MAC."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BOARDS = ROOT / "boards"
sys.path.insert(0, str(ROOT / "firmware" / "lib"))

from citynode.boards import BoardError, validate_board  # noqa: E402

AT_BOARDS = {"esp32_devkitc_rak3272s": "rak3172", "xiao_esp32s3_wio_e5": "wio_e5", "sim_rak3172": "rak3172",
             "sim_wio_e5": "wio_e5"}


def board(name: str) -> dict:
    return json.loads((BOARDS / f"{name}.json").read_text())


@pytest.mark.parametrize(("name", "chip"), AT_BOARDS.items())
def test_the_at_modem_boards_name_their_modem_and_its_uart(name: str, chip: str) -> None:
    b = validate_board(board(name), name)
    assert b["radio"]["chip"] == chip
    assert set(b["radio"]["uart"]) == {"id", "tx", "rx", "baudrate"}
    # the vendors' default UART settings: RUI3 115200 8N1, LoRa-E5 AT firmware 9600 8N1
    assert b["radio"]["uart"]["baudrate"] == (115200 if chip == "rak3172" else 9600)


def _broken(name: str, edit) -> dict:
    b = copy.deepcopy(board(name))
    edit(b)
    return b


@pytest.mark.parametrize(("name", "edit", "message"), [
    ("esp32_devkitc_rak3272s", lambda b: b["radio"].pop("uart"), "radio.uart: missing"),
    ("esp32_devkitc_rak3272s", lambda b: b["radio"]["uart"].update(id=0), "radio.uart.id: must be an integer 1..2"),
    ("esp32_devkitc_rak3272s", lambda b: b["radio"]["uart"].update(id=1), "radio.uart.id: UART 1 is already the sensor UART"),
    ("esp32_devkitc_rak3272s", lambda b: b["radio"]["uart"].update(rx=21), "i2c.sda: GPIO21 is already used by radio.uart.rx"),
    ("xiao_esp32s3_wio_e5", lambda b: b["radio"]["uart"].update(baudrate=300), "radio.uart.baudrate"),
    ("sim_rak3172", lambda b: b.pop("sim"), 'sim: an AT modem on the unix port is the host\'s simulator'),
])
def test_a_bad_modem_entry_names_the_field(name: str, edit, message: str) -> None:
    with pytest.raises(BoardError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate_board(_broken(name, edit), name)


def test_boot_gives_an_at_board_the_at_link_and_writes_nothing_to_the_modem_before_join(micropython) -> None:
    got = micropython.eval_json(
        "import json\nfrom citynode import links\n"
        "class Uart:\n    written = []\n    def write(self, b):\n        self.written.append(b)\n"
        "    def any(self):\n        return 0\n"
        "class Hal:\n    clock = None\n    def uart(self, name):\n        self.name = name\n        return Uart()\n"
        "hal = Hal()\n"
        f"b = {board('sim_wio_e5')!r}\n".replace("true", "True")
        + "cfg = {'dev_eui': '0000000000000001', 'join_eui': '70b3d57ed0001000', 'app_key': '00' * 16}\n"
        "link = links.lorawan_link(cfg, b, hal, {})\n"
        "print(json.dumps([type(link).__name__, hal.name, link.joined, Uart.written]))"
    )
    assert got == ["WioE5", "modem", False, []]


def test_boot_refuses_an_at_board_without_keys(micropython) -> None:
    got = micropython.eval_json(
        "import json\nfrom citynode import links\n"
        "class Hal:\n    clock = None\n    def uart(self, name):\n        return None\n"
        f"b = {board('sim_rak3172')!r}\n".replace("true", "True")
        + "try:\n    links.lorawan_link({'dev_eui': '0000000000000001'}, b, Hal(), {})\n"
        "except ValueError as e:\n    print(json.dumps(str(e)))\n"
    )
    assert got == "config join_eui: required for OTAA (from the provisioning bundle)"
