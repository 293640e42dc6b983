"""The node on its real budget with the AT-modem link: every role on the sim boards with a RAK3172 or a
Wio-E5 (`citynode device run --board sim_rak3172|sim_wio_e5 --lorawan`): the app talks AT commands to the
host's modem simulator, which does the LoRaWAN with the network-server simulator. 1000 cycles, no heap
growth, at the budgets of tests/firmware/test_heap_lorawan.py (issue 13): 64 KB on the 32-bit build with
citynode frozen in, 108 KB on the 32-bit build running the .mpy files `citynode flash` copies.

The node holds citynode.lorawan_at (a UART line reader and the modem's answers) instead of citynode's
MAC, AES and session store, and no UDP radio: every role fits both budgets, crowd_count included (which
needs 68 KB frozen and 151 KB stock with the MAC). The smallest heaps are in bench/RESULTS.md (firmware
heap, AT rows). Heap sizes are deterministic; no timing is asserted.
"""

from __future__ import annotations

import importlib.util
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.contract import codec
from gateway.paths import repo_root
from gateway.sim.device_run import prepare_fs, stream_lorawan_device

# The same checks as the MAC's budget test (joined before the first uplink, a heap line per cycle, no
# growth from cycle 10 to 1000, one reading per cycle, the config downlink applied, one join).
_spec = importlib.util.spec_from_file_location("heap_lorawan", Path(__file__).with_name("test_heap_lorawan.py"))
_heap_lorawan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_heap_lorawan)
CYCLES, ROLES, TIME_SCALE, check_run = (_heap_lorawan.CYCLES, _heap_lorawan.ROLES, _heap_lorawan.TIME_SCALE,
                                        _heap_lorawan.check_run)

FROZEN = repo_root() / "build" / "micropython-unix32" / "micropython"
STOCK = repo_root() / "build" / "micropython-unix32-stock" / "micropython"
BOARDS = ("sim_rak3172", "sim_wio_e5")
BUDGETS = {"frozen": (FROZEN, "64k"), "stock": (STOCK, "108k")}


def run_at_node(interpreter: Path, board: str, role: str, heapsize: str, cycles: int) -> list[str]:
    """The node's output lines; the interpreter is named in the child's environment only, so that several
    nodes can run at once."""
    if not interpreter.exists():
        pytest.skip(f"{interpreter} is missing: run `make firmware-unix`")
    config = {"interval": 60} if role in ("passenger_count", "crowd_count") else None
    with tempfile.TemporaryDirectory(prefix="citynode-heap-at-") as tmp:
        prepare_fs(Path(tmp), role, board=board, cycles=cycles, heap_report=True, lorawan=True, config=config)
        return list(stream_lorawan_device(Path(tmp), heapsize=heapsize, time_scale=TIME_SCALE, timeout=1200,
                                          downlinks=[codec.encode_downlink({"adr": True})],
                                          interpreter=interpreter))


@pytest.mark.slow
@pytest.mark.parametrize("build", BUDGETS)
@pytest.mark.parametrize("board", BOARDS)
def test_every_role_runs_1000_cycles_on_the_at_link_within_the_budget(board: str, build: str) -> None:
    """The four roles run side by side (each node mostly waits for its receive windows), each checked
    on its own."""
    interpreter, heapsize = BUDGETS[build]
    if not interpreter.exists():
        pytest.skip(f"{interpreter} is missing: run `make firmware-unix`")
    with ThreadPoolExecutor(len(ROLES)) as pool:
        runs = dict(zip(ROLES, pool.map(lambda role: run_at_node(interpreter, board, role, heapsize, CYCLES), ROLES)))
    for role, lines in runs.items():
        try:
            check_run(lines, role, CYCLES)
        except AssertionError as exc:
            raise AssertionError(f"{role} on {board}, {build} build at {heapsize}: {exc}") from None
