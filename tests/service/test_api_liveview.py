"""The live terminal view: a frame rendered from a filled store, its summary, run/arun, the watch command."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from gateway.cli import main as cli
from gateway.errors import ConfigError
from gateway.service.api import device_history, liveview
from gateway.service.store import Store
from gateway.sim.sample import SAMPLE_DEVICES, SampleDevice, fill_sample_fleet

NOW = datetime(2026, 5, 4, 18, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Store]:
    """One filled store for the module's read-only tests (filling takes about a second)."""
    with Store.open(tmp_path_factory.mktemp("fleet") / "gateway.sqlite") as store:
        fill_sample_fleet(store, now=NOW)
        yield store


def text_of(renderable, width: int = 140) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def view(store, seconds_later: int = 10) -> liveview.LiveView:
    return liveview.LiveView(store, clock=lambda: NOW + timedelta(seconds=seconds_later))


def row(text: str, name: str) -> str:
    [line] = [line for line in text.splitlines() if name in line]
    return line


def test_the_header_counts_devices_uplinks_per_minute_losses_and_dead_letters(fleet):
    text = text_of(view(fleet).render())
    # 6 devices x 24 + a status uplink + an undecodable one; 8 of them in the minute before NOW+10 s.
    assert "6 devices · 146 uplinks · 8 uplinks/min · 2 lost (FCnt gaps) · 1 dead letters" in text


# (device name, what its row shows): last reading with units, battery, RSSI, lost uplinks, uplinks.
ROWS = [
    ("aq-hauptbahnhof", ["air", "12 s", "°C · RH", "% · PM2.5", "µg/m³", "3.91 V", "-92 dBm", " 0 ", "25"]),
    ("bin-nordsternpark", ["bin", "fill 81% · 208 mm · tipped no", "3.27 V", "-116 dBm", " 2 ", "24"]),
    ("bus-383-door-counter", ["passengers", "on board", " · in ", " · out ", "4.03 V", "-100 dBm"]),
    ("crowd-musiktheater", ["crowd", "Wi-Fi ", " · BLE ", "3.79 V", "-88 dBm"]),
]


@pytest.mark.parametrize(("name", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_each_device_row_shows_role_reading_battery_link_and_losses(fleet, name, expected):
    line = row(text_of(view(fleet).render()), name)
    for part in expected:
        assert part in line, f"{part!r} not in {line!r}"


def test_the_second_line_of_a_row_holds_the_deveui_and_snr(fleet):
    lines = text_of(view(fleet).render()).splitlines()
    index = next(i for i, line in enumerate(lines) if "bin-nordsternpark" in line)
    assert "70b3d57ed0060012" in lines[index + 1] and "-10.9 dB" in lines[index + 1]


def test_the_reading_summary_adds_up_the_doors_of_a_bus(fleet):
    history = device_history(fleet, "70b3d57ed0060021", points=1)
    boardings = sum(history.field(f"doors.{i}.boardings").last for i in (0, 1))
    occupancy = history.field("occupancy").last
    assert liveview.reading_summary(history).startswith(f"on board {occupancy} · in {boardings} · out ")


def test_last_seen_follows_the_clock(fleet):
    text = text_of(view(fleet, seconds_later=3 * 3600).render())
    assert "3 h" in row(text, "aq-hauptbahnhof")
    assert "0 uplinks/min" in text


def test_an_80_column_terminal_keeps_the_reading_and_drops_role_and_uplinks(fleet):
    text = text_of(view(fleet).render(), width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    header = row(text, "Last reading")
    assert "Role" not in header and "Uplinks" not in header
    assert "fill 81%" in row(text, "bin-nordsternpark")


def test_markup_in_a_device_name_is_printed_as_is(store):
    evil = SampleDevice("70b3d57ed00600ee", "[bold red]bin[/] [link=x]", "bin_fill", "x", -99, 5.0, 7)
    fill_sample_fleet(store, now=NOW, uplinks=2, devices=(evil,), dead_letter=False)
    assert "[bold red]bin[/] [link=x]" in text_of(view(store).render())


def test_an_empty_store_says_so(store):
    text = text_of(view(store).render())
    assert "0 devices · 0 uplinks" in text and "no device has sent an uplink yet" in text


def test_summary_names_losses_roles_the_weakest_link_and_the_lowest_battery(fleet):
    assert liveview.summary(fleet).splitlines() == [
        "6 devices, 146 uplinks, 988 readings stored, 1 dead letters",
        "lost uplinks (FCnt gaps): 2 (bin-nordsternpark 2); counter resets: 0",
        "by role: air_quality 2, bin_fill 2, crowd_count 1, passenger_count 1",
        "weakest link: bin-nordsternpark -116 dBm / -10.9 dB",
        "lowest battery: bin-nordsternpark 3.27 V",
    ]


def test_run_redraws_until_the_stop_event_and_returns(fleet):
    out = io.StringIO()
    stop = threading.Event()
    console = Console(file=out, width=140)
    thread = threading.Thread(
        target=liveview.run, args=(fleet, stop), kwargs={"interval": 0.05, "console": console}
    )
    thread.start()
    stop.set()
    thread.join(timeout=30)  # a hang guard
    assert not thread.is_alive()
    assert "bin-nordsternpark" in out.getvalue()


def test_arun_stops_on_an_asyncio_event(fleet):
    out = io.StringIO()

    async def main():
        stop = asyncio.Event()
        console = Console(file=out, width=140)
        task = asyncio.create_task(liveview.arun(fleet, stop, interval=0.05, console=console))
        await asyncio.sleep(0)
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert "crowd-musiktheater" in out.getvalue()


def test_watch_once_prints_a_frame_and_the_summary(fleet, capsys):
    assert cli(["gateway", "watch", "--store", fleet.path, "--once"]) == 0
    out = capsys.readouterr().out
    for device in SAMPLE_DEVICES:
        assert device.name[:15] in out
    assert "lowest battery: bin-nordsternpark 3.27 V" in out


def test_watch_rejects_a_missing_store_and_a_silly_interval(fleet, tmp_path, capsys):
    assert cli(["gateway", "watch", "--store", str(tmp_path / "nope.sqlite"), "--once"]) == 2
    assert "nope.sqlite: no such file" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--interval"):
        from gateway.cli.gateway import cmd_watch

        class Args:
            store, config, interval, once = fleet.path, None, 0.0, False

        cmd_watch(Args())  # type: ignore[arg-type]
