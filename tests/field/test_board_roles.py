"""A board carries only the roles its board file lists (boards/<board>.json "roles"): provision, flash
and device run refuse anything else with one line naming the board and the role."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.errors import CitynodeError
from gateway.field.flash import WrongBoardError, board_roles, check_board_role, config_from_bundle
from gateway.field.inventory import InventoryError, parse_csv

HEADER = "dev_eui,name,role,board\n"


def _roles() -> dict[str, list[str]]:
    return {b: list(board_roles(b)) for b in ("heltec_wifi_lora_32_v3", "ttgo_lora32_v21", "lilygo_t_beam", "sim")}


@pytest.mark.parametrize(("board", "role"), [
    ("heltec_wifi_lora_32_v3", "passenger_count"),
    ("ttgo_lora32_v21", "passenger_count"),
])
def test_provision_refuses_a_role_the_board_does_not_carry(board: str, role: str) -> None:
    text = HEADER + f"70B3D57ED0000009,bus-1,{role},{board}\n"
    with pytest.raises(InventoryError) as raised:
        parse_csv(text, "nodes.csv", known_boards=_roles())
    message = str(raised.value)
    assert "\n" not in message
    assert board in message and role in message and "line 2" in message


def test_provision_accepts_the_roles_a_board_lists() -> None:
    text = HEADER + "70B3D57ED0000009,bus-1,passenger_count,lilygo_t_beam\n"
    assert parse_csv(text, "nodes.csv", known_boards=_roles())[0].role == "passenger_count"


def test_the_provision_command_says_it_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "nodes.csv"
    inventory.write_text(HEADER + "70B3D57ED0000009,bus-1,passenger_count,ttgo_lora32_v21\n")
    assert main(["provision", str(inventory), "--tenant-id", "t", "--dry-run"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "ttgo_lora32_v21" in lines[0] and "passenger_count" in lines[0]


def test_flash_refuses_a_bundle_whose_role_the_board_does_not_carry() -> None:
    bundle = {"dev_eui": "70b3d57ed0000009", "role": "passenger_count", "board": "ttgo_lora32_v21",
              "join_eui": "70b3d57ed0001000", "app_key": "2b7e151628aed2a6abf7158809cf4f3c", "region": "EU868"}
    with pytest.raises(WrongBoardError, match="board ttgo_lora32_v21 cannot carry role passenger_count"):
        config_from_bundle(bundle, "ttgo_lora32_v21")


def test_every_board_file_lists_its_roles() -> None:
    for board, roles in _roles().items():
        assert roles, f"boards/{board}.json lists no roles"


def test_check_board_role_names_both_and_is_a_citynode_error() -> None:
    with pytest.raises(CitynodeError, match="board heltec_wifi_lora_32_v3 cannot carry role passenger_count"):
        check_board_role("heltec_wifi_lora_32_v3", "passenger_count")
    check_board_role("lilygo_t_beam", "passenger_count")
