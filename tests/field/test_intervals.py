"""One source for a role's uplink interval: the firmware's own defaults (citynode.config.ROLE_INTERVALS).
Bundles, ChirpStack device profiles and the lorawan-device-profiles tree all say what a node does."""

from __future__ import annotations

import pytest

from gateway.field.profiles import profile_tree
from gateway.field.provision import ROLE_SETTINGS
from gateway.paths import firmware_module

FIRMWARE = firmware_module("citynode.config")


def test_role_settings_take_the_firmware_intervals() -> None:
    assert {r: s.uplink_interval_s for r, s in ROLE_SETTINGS.items()} == dict(FIRMWARE.ROLE_INTERVALS)
    assert ROLE_SETTINGS["bin_fill"].uplink_interval_s == 3600
    assert all(s.status_interval_h == FIRMWARE.DEFAULTS["status_interval"] for s in ROLE_SETTINGS.values())


@pytest.mark.parametrize(("role", "file", "seconds"), [
    ("air_quality", "citynode-air-quality.toml", 600),
    ("bin_fill", "citynode-bin-fill.toml", 3600),
    ("passenger_count", "citynode-passenger-count.toml", 300),
    ("crowd_count", "citynode-crowd-count.toml", 900),
])
def test_the_profile_tree_names_files_by_role_and_says_the_firmware_interval(role: str, file: str,
                                                                           seconds: int) -> None:
    tree = profile_tree("// codec\n", [])
    text = tree[f"vendors/citynode/devices/{file}"]
    assert f"every {seconds} s" in text
    assert f'uplink_interval_s = "{seconds}"' in text
    assert f'role = "{role}"' in text
