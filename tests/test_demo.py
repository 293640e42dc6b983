"""`make demo` runs the main job: every message type goes from the node firmware to the gateway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_encodes_on_micropython_and_decodes_every_type() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "citynode"), "demo"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for msg_type in ("air_quality", "bin_fill", "passenger_count", "crowd_count", "device_status"):
        assert msg_type in out.stdout
    assert "89 01 19 08 66" in out.stdout  # the air_quality sample's first bytes
    assert "rejected with a reason" in out.stdout
