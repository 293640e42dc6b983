"""The virtual board's watchdog and resets behave like a board's, so the node's reports can be tested."""

from __future__ import annotations

from typing import Any


def test_a_cycle_that_outlives_the_watchdog_ends_the_run_with_status_65(micropython: Any) -> None:
    out = micropython.run(
        "from citynode_sim.simio import SimClock, SimWDT\n"
        "clock = SimClock(); wdt = SimWDT(1000, clock)\n"
        "clock.sleep_ms(600); wdt.feed(); clock.sleep_ms(600); wdt.feed(); print('fed in time')\n"
        "try:\n"
        "    clock.sleep_ms(1500)\n"
        "except SystemExit as e:\n"
        "    print('exit', e.args[0])\n"
    )
    assert out.splitlines() == ["fed in time", "watchdog: no feed for 1000 ms, resetting", "exit 65"]


def test_deep_sleep_pauses_the_watchdog_and_reset_ends_with_status_64(micropython: Any) -> None:
    out = micropython.run(
        "from citynode_sim.sim import SimHal\n"
        "hal = SimHal({'name': 'sim'}); wdt = hal.wdt(1000)\n"
        "hal.deep_sleep(3600000); wdt.feed(); print('slept', hal.reset_cause())\n"
        "try:\n"
        "    hal.reset()\n"
        "except SystemExit as e:\n"
        "    print('exit', e.args[0])\n"
    )
    assert out.splitlines() == ["slept deep_sleep", "exit 64"]


def test_the_reset_cause_comes_from_the_virtual_device(micropython: Any, monkeypatch) -> None:
    monkeypatch.setenv("CITYNODE_RESET_CAUSE", "watchdog")
    out = micropython.run("from citynode_sim.sim import SimHal\nprint(SimHal({'name': 'sim'}).reset_cause())\n")
    assert out.strip() == "watchdog"
