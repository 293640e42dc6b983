"""A node whose LoRa module runs its own LoRaWAN stack: the app on the AT-modem link (citynode.lorawan_at)
of the sim boards with a RAK3172 (RUI3) or a Wio-E5 (LoRa-E5 AT firmware). The node talks AT commands
over its modem UART to the host's modem simulator (gateway/sim/modems), which does the LoRaWAN with the
network-server simulator: `joined` only after the modem reported a real join, the same
`uplink fport=N len=L hex=H` lines as through citynode's MAC, config downlinks applied; the modem's
error answers (busy, no network, bad parameter) become one clear line and a retry."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gateway.contract import codec
from gateway.field.micropython import node_heap
from gateway.sim.device_run import prepare_fs, stream_lorawan_device

BOARDS = {"sim_rak3172": "RAK3172", "sim_wio_e5": "Wio-E5"}
TIME_SCALE = 100
ADR_ON = codec.encode_downlink({"adr": True})


def run_at_node(board: str, role: str = "bin_fill", cycles: int = 3, **faults: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="citynode-at-") as tmp:
        fs = Path(tmp)
        prepare_fs(fs, role, board=board, cycles=cycles, lorawan=True, modem_faults=faults or None)
        return list(stream_lorawan_device(fs, heapsize=node_heap(role), time_scale=TIME_SCALE, downlinks=[ADR_ON],
                                          timeout=240))


def readings(lines: list[str], fport: int = 11) -> list[str]:
    return [line for line in lines if line.startswith(f"uplink fport={fport} ")]


@pytest.mark.parametrize("board", BOARDS)
def test_the_node_joins_through_the_modem_sends_and_applies_a_config_downlink(board: str) -> None:
    lines = run_at_node(board)
    tail = "\n".join(lines[-12:])
    assert not any(line.startswith(("exit status", "Traceback")) for line in lines), tail
    assert lines.count("joined") == 1, tail
    first = next(i for i, line in enumerate(lines) if line.startswith("uplink fport="))
    assert lines.index("joined") < first, "joined only once the modem reported the join"
    assert lines[first].startswith("uplink fport=1 "), "the device status goes first, as through the MAC"
    assert len(readings(lines)) == 3
    assert "downlink applied: adr" in lines, "the config downlink came back through the modem"
    assert lines[-1].startswith("network joins=1 uplinks=4 downlinks="), lines[-1]


def test_the_cli_runs_an_at_board_with_lorawan() -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "device", "run", "--board", "sim_wio_e5", "--role",
                           "air_quality", "--lorawan", "--cycles", "2", "--heapsize", node_heap("air_quality"),
                           "--decode"], capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "joined" in lines and "downlink applied: adr" in lines
    assert len(readings(lines, 10)) == 2
    assert any(line.startswith('  {"') for line in lines), "--decode decodes the uplinks"


@pytest.mark.parametrize("board", BOARDS)
def test_a_busy_modem_is_asked_again_and_the_uplinks_still_go(board: str) -> None:
    # Two "busy" answers: the driver backs off and repeats the command (5 attempts), the node never notices.
    lines = run_at_node(board, busy=2)
    assert lines.count("joined") == 1
    assert len(readings(lines)) == 3 and not any("failed" in line for line in lines)
    assert lines[-1].startswith("network joins=1 uplinks=4 ")


@pytest.mark.parametrize("board", BOARDS)
def test_a_modem_that_stays_busy_is_one_line_and_a_retry_at_the_next_cycle(board: str) -> None:
    lines = run_at_node(board, busy=5)  # every attempt of the first join gets "busy"
    modem = BOARDS[board]
    failed = [line for line in lines if line.startswith("join failed: ")]
    assert failed == [f"join failed: {modem}: still {'AT_BUSY_ERROR' if modem == 'RAK3172' else 'busy'} after 5 "
                      f"attempts ({'AT+JOIN' if modem == 'RAK3172' else 'AT+JOIN'})"], failed
    assert lines.count("joined") == 1 and lines.index(failed[0]) < lines.index("joined")
    assert lines[-1].startswith("network joins=1 ")


@pytest.mark.parametrize("board", BOARDS)
def test_no_network_is_a_join_failure_then_a_join_at_the_next_cycle(board: str) -> None:
    lines = run_at_node(board, no_network=1)
    why = f"{BOARDS[board]}: no Join Accept ({'+EVT:JOIN_FAILED_RX_TIMEOUT' if board == 'sim_rak3172' else '+JOIN: Join failed'})"
    assert lines.index(why) + 1 == lines.index("join failed") < lines.index("joined"), lines[:8]
    assert "uplink fport=1 " not in "\n".join(lines[: lines.index("joined")])
    assert len(readings(lines)) >= 2, "the readings of the cycle without network go out with the next ones"
    assert lines[-1].startswith("network joins=1 ")


@pytest.mark.parametrize(("board", "error"), [
    ("sim_rak3172", "uplink failed fport=1: RAK3172: AT+SEND answered AT_PARAM_ERROR"),
    ("sim_wio_e5", "uplink failed fport=1: Wio-E5: AT+MSGHEX answered ERROR(-1)"),
])
def test_a_refused_uplink_is_one_line_and_is_sent_again(board: str, error: str) -> None:
    lines = run_at_node(board, param_error=1)
    assert error in lines, lines[:8]
    status = [line for line in lines if line.startswith("uplink fport=1 ")]
    assert len(status) == 1 and lines.index(error) < lines.index(status[0]), "the status uplink is sent again"
    assert len(readings(lines)) == 3
