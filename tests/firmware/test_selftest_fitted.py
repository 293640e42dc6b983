"""The node self-test on the MicroPython unix port: a field the fitted sensor cannot measure is "not
fitted", not a failure; a real fault still fails; a board refuses at boot a role it does not carry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROLE = r'''
from citynode.selftest import role_checks

class Role:
    msg_type = "air_quality"
    def __init__(self, kind, faults):
        self.pm_kind = kind
        self.f = faults
    def measure(self):
        return {"temperature": 21.5, "pm2_5": 4.0, "pm10": 7.0, "faults": list(self.f)}

print(json.dumps(role_checks(Role(KIND, FAULTS))))
'''


def _checks(micropython: Any, tmp_path: Path, kind: str, faults: list[str]) -> list[dict[str, Any]]:
    code = f"import json\nKIND = {kind!r}\nFAULTS = {faults!r}\n" + ROLE
    return json.loads(micropython.run(code, cwd=tmp_path).strip().splitlines()[-1])


def test_sds011_without_pm1_0_passes_with_pm1_0_not_fitted(micropython: Any, tmp_path: Path) -> None:
    checks = _checks(micropython, tmp_path, "sds011", ["pm1_0"])
    assert all(c["ok"] for c in checks), checks
    assert {"name": "pm1_0", "ok": True, "not_fitted": True, "value": "not fitted (sds011)"} in checks


def test_pms5003_without_pm1_0_fails(micropython: Any, tmp_path: Path) -> None:
    checks = _checks(micropython, tmp_path, "pms5003", ["pm1_0"])
    assert {"name": "pm1_0", "ok": False, "error": "could not be measured"} in checks
    assert not checks[0]["ok"]


def test_sds011_with_a_dead_bme680_still_fails(micropython: Any, tmp_path: Path) -> None:
    checks = _checks(micropython, tmp_path, "sds011", ["temperature", "pm1_0"])
    assert {"name": "temperature", "ok": False, "error": "could not be measured"} in checks
    assert not checks[0]["ok"]


def test_boot_refuses_a_role_the_board_does_not_carry(micropython: Any, tmp_path: Path) -> None:
    board = {"name": "ttgo_lora32_v21", "roles": ["air_quality", "bin_fill", "crowd_count"]}
    (tmp_path / "board.json").write_text(json.dumps(board))
    code = (
        "from citynode import boot, config\n"
        "try:\n"
        "    boot.load_board({'role': 'passenger_count', 'board': 'ttgo_lora32_v21'})\n"
        "    print('accepted')\n"
        "except config.ConfigError as exc:\n"
        "    print('ConfigError', exc)\n"
    )
    out = micropython.run(code, cwd=tmp_path).strip().splitlines()[-1]
    assert out.startswith("ConfigError")
    assert "passenger_count" in out and "ttgo_lora32_v21" in out
