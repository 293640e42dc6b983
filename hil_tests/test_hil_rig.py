"""The rig itself: what a failing expectation shows, and the log every test leaves behind."""

from __future__ import annotations

import pytest


def test_a_failed_expectation_shows_the_last_output_and_the_full_log(dut) -> None:
    dut.expect(r"citynode .* role=")
    with pytest.raises(pytest.fail.Exception) as failure:
        dut.expect(r"this line never comes", timeout=1)
    message = str(failure.value)
    assert "expected /this line never comes/ within 1 s; last output received:" in message
    assert f"full log: {dut.log_path}" in message
    assert "role=bin_fill" in dut.log_path.read_text()


def test_write_types_on_the_console(dut) -> None:
    dut.expect(r">>> ", timeout=30)
    dut.write("print('rig', 6 * 7)\n")
    dut.expect(r"rig 42")
