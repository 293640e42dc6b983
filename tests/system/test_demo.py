"""`make demo`: the whole chain runs with real parts, and the codec demo shows the contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CITYNODE = str(Path(sys.executable).parent / "citynode")


def test_codec_demo_encodes_on_micropython_and_decodes_every_type() -> None:
    out = subprocess.run([CITYNODE, "demo", "--codec"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for msg_type in ("air_quality", "bin_fill", "passenger_count", "crowd_count", "device_status"):
        assert msg_type in out.stdout
    assert "89 01 19 08 66" in out.stdout  # the air_quality sample's first bytes
    assert "rejected with a reason" in out.stdout


@pytest.mark.slow
def test_chain_demo_delivers_every_uplink_from_a_virtual_fleet_to_the_gateway(tmp_path: Path) -> None:
    """Four nodes (one per role) join through the LoRaWAN MAC and the network-server simulator; every
    uplink the network delivers lands decoded in the gateway's store, nothing is dead-lettered."""
    out = subprocess.run(
        [CITYNODE, "demo", "--minutes", "0.4", "--nodes", "4", "--no-live", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "nothing lost" in out.stdout
    from gateway.service.store import Store

    store = Store.open(tmp_path / "gateway.sqlite")
    try:
        roles = {d.role for d in store.devices()}
        assert roles == {"air_quality", "bin_fill", "passenger_count", "crowd_count"}
        assert all(d.joins >= 1 and d.uplinks >= 1 for d in store.devices())
    finally:
        store.close()
