"""A live terminal view of the gateway's store: devices, their last readings, battery, link and FCnt health.

Read-only: it only queries the store (SQLite readers never block the gateway's writer in WAL mode), so it
can watch a store that a running gateway is filling, in the same process (``make demo``) or another one
(``citynode gateway watch --store gateway.sqlite``).

From code::

    view = LiveView(store)
    console.print(view.render())          # one frame (a rich renderable)
    run(store, stop_event)                # redraw every second until stop_event (threading.Event) is set
    await arun(store, stop_event)         # the same from asyncio (asyncio.Event)
    print(summary(store))                 # a plain-text summary, e.g. at the end of the demo
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gateway.service.api.history import DeviceHistory, device_history, uplinks_since
from gateway.service.store import Device, Store

__all__ = ["DeviceLine", "LiveView", "Snapshot", "arun", "reading_summary", "run", "summary"]

LOW_BATTERY_V = 3.3  # a Li-ion cell under load below this is nearly flat
# Link margins for LoRa at 125 kHz: SF12 demodulates down to about -137 dBm and -20 dB SNR (SX1276
# datasheet 4.1.1.1, table 13); below -115 dBm or -7.5 dB (SF7's SNR limit) a node lives on high SFs.
_RSSI_WEAK, _RSSI_POOR = -100, -115
_SNR_WEAK, _SNR_POOR = 0.0, -7.5

# The fields that summarise each role's last reading, in this order (all others are on the page).
_SUMMARY_FIELDS: dict[str, tuple[str, ...]] = {
    "air_quality": ("temperature", "relative_humidity", "pm2_5", "pm10"),
    "bin_fill": ("fill_level", "distance", "tilt"),
    "passenger_count": ("occupancy", "boardings", "alightings"),
    "crowd_count": ("wifi_devices", "ble_devices"),
    "device_status": ("firmware", "reset_cause", "uptime"),
}
_SHORT = {
    "temperature": "",
    "relative_humidity": "RH",
    "pm2_5": "PM2.5",
    "pm10": "PM10",
    "fill_level": "fill",
    "distance": "",
    "tilt": "tipped",
    "occupancy": "on board",
    "boardings": "in",
    "alightings": "out",
    "wifi_devices": "Wi-Fi",
    "ble_devices": "BLE",
    "firmware": "fw",
    "reset_cause": "reset",
    "uptime": "up",
}


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _with_unit(value: Any, unit: str | None) -> str:
    text = _number(value)
    if not unit or isinstance(value, bool):
        return text
    return f"{text}{unit}" if unit in ("%", "°") else f"{text} {unit}"


def reading_summary(history: DeviceHistory) -> str:
    """The device's last reading in a few words with units, e.g. ``9.13 °C · RH 73.9% · PM2.5 6.1 µg/m³``.

    Passenger counts add up the doors (``in 14 · out 11``). Falls back to the first four fields of an
    unknown message type; empty when the device has no readings.
    """
    role = history.role or ""
    wanted = _SUMMARY_FIELDS.get(role)
    parts: list[str] = []
    if wanted is None:
        wanted = tuple(f.field for f in history.fields if f.field != "battery")[:4]
    for name in wanted:
        if name in ("boardings", "alightings"):
            suffix = "." + name
            doors = [f for f in history.fields if f.field.startswith("doors.") and f.field.endswith(suffix)]
            if not doors:
                continue
            value: Any = sum(f.last for f in doors if isinstance(f.last, int | float))
            unit = None
        else:
            series = history.field(name)
            if series is None or not series.points:
                continue
            value, unit = series.last, series.unit
            if name == "uptime" and isinstance(value, int | float):
                value, unit = round(value / 86400, 1), "d"
        label = _SHORT.get(name, name)
        text = _with_unit(value, unit)
        parts.append(f"{label} {text}" if label else text)
    return " · ".join(parts)


_ROLES = {
    "air_quality": "air",
    "bin_fill": "bin",
    "passenger_count": "passengers",
    "crowd_count": "crowd",
    "device_status": "status",
}


def _ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


@dataclass(frozen=True)
class DeviceLine:
    """One device as the view shows it."""

    device: Device
    role: str | None  # its main message type (not device_status when it sends another)
    reading: str  # reading_summary()


@dataclass(frozen=True)
class Snapshot:
    """Everything one frame shows, read from the store at ``time``."""

    time: datetime
    devices: tuple[DeviceLine, ...]
    counts: dict[str, int]  # Store.counts()
    uplinks_per_minute: int  # uplinks received in the minute before ``time``


class LiveView:
    """Renders the store as a rich table. ``clock`` gives "now" (UTC), for "last seen" and uplinks/min."""

    def __init__(
        self,
        store: Store,
        *,
        title: str = "citynode gateway",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.title = title
        self.clock = clock

    def snapshot(self) -> Snapshot:
        """Read the store. Raises :class:`gateway.service.store.StoreError` when it cannot be read."""
        now = self.clock()
        lines = []
        for device in self.store.devices():
            history = device_history(self.store, device.dev_eui, points=1)
            lines.append(DeviceLine(device, history.role or device.role, reading_summary(history)))
        counts = self.store.counts()
        per_minute = uplinks_since(self.store, now - timedelta(minutes=1))
        return Snapshot(now, tuple(lines), counts, per_minute)

    def render(self, snapshot: Snapshot | None = None) -> RenderableType:
        """One frame (a rich renderable): a header line of totals and the device table.

        The table fits the console it is printed on: below 110 columns it drops the role and uplink
        columns and the DevEUI line, so the last reading keeps room on an 80-column terminal.
        """
        return _Frame(self.title, snapshot or self.snapshot())


_WIDE = 110  # columns from which every column is shown


@dataclass(frozen=True)
class _Frame:
    title: str
    snap: Snapshot

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        snap, c = self.snap, self.snap.counts
        wide = options.max_width >= _WIDE
        yield Text.assemble(
            (self.title, "bold"),
            f"  {c['devices']} devices · {c['uplinks']} uplinks · ",
            (f"{snap.uplinks_per_minute} uplinks/min", "bold"),
            " · ",
            (f"{c['fcnt_gaps']} lost (FCnt gaps)", "bold red" if c["fcnt_gaps"] else ""),
            " · ",
            (f"{c['dead_letters']} dead letters", "bold red" if c["dead_letters"] else ""),
            f" · {c['readings']} readings",
        )
        table = Table(expand=True, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        table.add_column("Device", max_width=26 if wide else 18, overflow="ellipsis", no_wrap=True)
        if wide:
            table.add_column("Role", no_wrap=True)
        table.add_column("Seen", justify="right", no_wrap=True)
        table.add_column("Last reading", ratio=1)
        table.add_column("Battery", justify="right", no_wrap=True)
        table.add_column("RSSI/SNR", justify="right", no_wrap=True)
        table.add_column("Lost", justify="right", no_wrap=True)
        if wide:
            table.add_column("Uplinks", justify="right", no_wrap=True)
        for line in snap.devices:
            d = line.device
            name = Text(d.name or d.dev_eui, style="bold")  # Text: names are never parsed as markup
            if d.name and wide:
                name.append(f"\n{d.dev_eui}", style="dim")
            battery = Text("–" if d.battery is None else f"{d.battery:.2f} V")
            if d.battery is not None and d.battery < LOW_BATTERY_V:
                battery.stylize("bold red")
            gaps = Text(str(d.fcnt_gaps), style="bold red" if d.fcnt_gaps else "")
            if d.resets:
                gaps.append(f"\n{d.resets} resets", style="yellow")
            cells: list[RenderableType] = [name]
            if wide:
                cells.append(Text(_ROLES.get(line.role or "", line.role or "–")))
            cells += [Text(_ago(d.last_seen, snap.time)), Text(line.reading), battery, _link(d), gaps]
            if wide:
                cells.append(Text(str(d.uplinks)))
            table.add_row(*cells)
        yield table
        if not snap.devices:
            yield Text("no device has sent an uplink yet", style="dim")


def _link(d: Device) -> Text:
    rssi = "–" if d.last_rssi is None else f"{d.last_rssi} dBm"
    snr = "–" if d.last_snr is None else f"{_number(d.last_snr)} dB"
    text = Text(f"{rssi}\n{snr}")
    if d.last_rssi is not None and d.last_snr is not None:
        if d.last_rssi < _RSSI_POOR or d.last_snr < _SNR_POOR:
            text.stylize("red")
        elif d.last_rssi < _RSSI_WEAK or d.last_snr < _SNR_WEAK:
            text.stylize("yellow")
        else:
            text.stylize("green")
    return text


def run(
    store: Store,
    stop_event: threading.Event,
    *,
    interval: float = 1.0,
    console: Console | None = None,
    title: str = "citynode gateway",
) -> None:
    """Redraw the view every ``interval`` seconds until ``stop_event`` is set (blocks the calling thread)."""
    view = LiveView(store, title=title)
    with Live(view.render(), console=console, auto_refresh=False, transient=False) as live:
        while not stop_event.wait(interval):
            live.update(view.render(), refresh=True)
        live.update(view.render(), refresh=True)


async def arun(
    store: Store,
    stop_event: asyncio.Event,
    *,
    interval: float = 1.0,
    console: Console | None = None,
    title: str = "citynode gateway",
) -> None:
    """:func:`run` for asyncio code: the store is read in a worker thread so the loop keeps running."""
    view = LiveView(store, title=title)
    first = await asyncio.to_thread(view.render)
    with Live(first, console=console, auto_refresh=False, transient=False) as live:
        while not stop_event.is_set():
            try:
                await asyncio.wait_for(stop_event.wait(), interval)
            except TimeoutError:
                pass
            live.update(await asyncio.to_thread(view.render), refresh=True)


def summary(store: Store) -> str:
    """A few plain lines about the store: totals, losses, per-role counts, weakest link, lowest battery."""
    c = store.counts()
    devices = store.devices()
    lines = [
        f"{c['devices']} devices, {c['uplinks']} uplinks, {c['readings']} readings stored, "
        f"{c['dead_letters']} dead letters",
    ]
    lost = [d for d in devices if d.fcnt_gaps]
    lost_text = ", ".join(f"{d.name or d.dev_eui} {d.fcnt_gaps}" for d in lost)
    lines.append(
        f"lost uplinks (FCnt gaps): {c['fcnt_gaps']}" + (f" ({lost_text})" if lost_text else "")
        + f"; counter resets: {c['fcnt_resets']}"
    )
    roles: dict[str, int] = {}
    for d in devices:
        role = device_history(store, d.dev_eui, points=1).role or d.role or "unknown"
        roles[role] = roles.get(role, 0) + 1
    if roles:
        lines.append("by role: " + ", ".join(f"{r} {n}" for r, n in sorted(roles.items())))
    heard = [d for d in devices if d.last_rssi is not None]
    if heard:
        weakest = min(heard, key=lambda d: (d.last_rssi, d.last_snr if d.last_snr is not None else 0.0))
        snr = "" if weakest.last_snr is None else f" / {_number(weakest.last_snr)} dB"
        lines.append(f"weakest link: {weakest.name or weakest.dev_eui} {weakest.last_rssi} dBm{snr}")
    powered = [d for d in devices if d.battery is not None]
    if powered:
        low = min(powered, key=lambda d: d.battery or 0.0)
        lines.append(f"lowest battery: {low.name or low.dev_eui} {low.battery:.2f} V")
    return "\n".join(lines)
