"""The status page in a real browser: headless Chromium (Debian's ``chromium``) against a running gateway.

The gateway serves a store filled through the real pipeline with two hours of uplinks of all four roles
(:func:`gateway.sim.sample.fill_sample_fleet`) plus a device whose name and tags are HTML. Chromium
loads ``/`` with a virtual-time budget (timers and fetches run to completion before it dumps the DOM or
takes the screenshot) and the page marks ``<body data-state="ready">`` once its table is drawn, so the
assertions do not depend on how fast this machine is. The PNG is checked with a small stdlib decoder
(no Pillow): right size, not blank, many colours.

Needs the ``chromium`` binary (``make sysdeps`` installs it); the test installs nothing itself.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gateway.service.app import GatewayService
from gateway.service.config import parse_config
from gateway.service.store import Store
from gateway.sim.sample import SAMPLE_DEVICES, SampleDevice, fill_sample_fleet

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # needs chromium; a "browser" marker is proposed to the lead

EVIL = SampleDevice(
    dev_eui="70b3d57ed00600ee",
    name='<img src=x onerror="document.title=1">bin',
    role="bin_fill",
    district='<script>document.title="pwned"</script>',
    rssi=-99,
    snr=5.0,
    sf=7,
)

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",  # ms of page time: two refresh cycles
)


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed (make sysdeps installs Debian's chromium)", pytrace=False)


async def run_chromium(tmp_path: Path, url: str, *args: str) -> bytes:
    """Run a fresh headless Chromium (own profile directory) and return its stdout."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    proc = await asyncio.create_subprocess_exec(
        chromium_binary(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # A hang guard, not a timing assertion: headless Chromium finishes in a few seconds.
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}"
    return out


# --------------------------------------------------------------------------------------------- PNG


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the pixels (RGB bytes each) of an 8-bit, non-interlaced RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None, "PNG has no IHDR chunk"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):  # PNG spec 9.2: filter types 0..4
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    pixels = [bytes(row[x * bpp : x * bpp + 3]) for row in rows for x in range(0, width, 1)]
    return width, height, pixels


# ---------------------------------------------------------------------------------------------- DOM


class DomSummary(HTMLParser):
    """What the assertions need from the dumped DOM: rows by DevEUI, their sparklines and header texts."""

    def __init__(self) -> None:
        super().__init__()
        self.state = ""
        self.rows: dict[str, dict[str, int]] = {}
        self.row: str | None = None
        self.labels: list[str] = []  # aria-label of every sparkline
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag == "body":
            self.state = a.get("data-state") or ""
        if tag == "tr" and a.get("data-dev-eui"):
            self.row = a["data-dev-eui"]
            self.rows[self.row] = {"svg": 0, "readings": 0}
        if self.row and tag == "svg" and "spark" in (a.get("class") or ""):
            self.rows[self.row]["svg"] += 1
            assert a.get("role") == "img" and a.get("aria-label"), f"chart without text alternative: {a}"
            self.labels.append(a["aria-label"] or "")
        if self.row and tag == "li" and a.get("data-field"):
            self.rows[self.row]["readings"] += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def render(tmp_path: Path) -> tuple[DomSummary, str, dict[str, Path]]:
    path = tmp_path / "gateway.sqlite"
    now = datetime.now(UTC)
    with Store.open(path) as store:
        fill_sample_fleet(store, now=now)
        earlier = now - timedelta(minutes=20)  # silent for four of its 5-minute intervals
        fill_sample_fleet(store, now=earlier, uplinks=3, devices=(EVIL,), dead_letter=False)
    config = parse_config({"store": {"path": str(path)}, "http": {"host": "127.0.0.1", "port": 0}})
    shots = {"desktop": tmp_path / "page-1280x900.png", "phone": tmp_path / "page-390x844.png"}
    async with GatewayService(config) as svc:
        url = f"http://127.0.0.1:{svc.http_port}/"
        dom = (await run_chromium(tmp_path, url, "--window-size=1280,900", "--dump-dom")).decode()
        await run_chromium(tmp_path, url, "--window-size=1280,900", f"--screenshot={shots['desktop']}")
        await run_chromium(tmp_path, url, "--window-size=390,844", f"--screenshot={shots['phone']}")
    summary = DomSummary()
    summary.feed(dom)
    return summary, dom, shots


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[DomSummary, str, dict[str, Path]]:
    return asyncio.run(render(tmp_path_factory.mktemp("page")))


def test_the_table_lists_every_device_with_a_sparkline_per_device(rendered):
    dom, html, _ = rendered
    assert dom.state == "ready", f"the page did not finish drawing; DOM was:\n{html[:3000]}"
    expected = {d.dev_eui for d in SAMPLE_DEVICES} | {EVIL.dev_eui}
    assert set(dom.rows) == expected
    for dev_eui, row in dom.rows.items():
        assert row["svg"] >= 2, f"{dev_eui}: expected sparklines of readings and link quality, got {row}"
        assert row["readings"] >= 1, f"{dev_eui}: no reading listed"
    text = " ".join(dom.text)
    for device in SAMPLE_DEVICES:
        assert device.name in text


def test_readings_show_units_and_charts_say_what_they_show(rendered):
    dom, _, _ = rendered
    text = " ".join(dom.text)
    for unit in ("°C", "hPa", "µg/m³", "mm", "dBm", "dB", "V"):
        assert unit in text, f"no value in {unit} on the page"
    assert re.search(r"\b2 lost\b", text), "the far bin's two lost uplinks are not shown"
    # Values and units are joined by a narrow no-break space (U+202F), which \s matches.
    temperature = r"Temperature, last 24 values: lowest [\d.]+\s°C, highest [\d.]+\s°C, latest [\d.]+\s°C"
    assert any(re.fullmatch(temperature, label) for label in dom.labels), dom.labels[:5]
    assert any(label.startswith("RSSI, last 24 values") for label in dom.labels)
    assert any(label.startswith("SNR, last") for label in dom.labels)


def test_names_and_tags_from_data_are_text_never_markup(rendered):
    dom, html, _ = rendered
    text = " ".join(dom.text)
    assert EVIL.name in text and EVIL.district in text  # shown, as text
    assert not any(tag == "img" for tag, _ in dom.elements), "a device name became an <img> element"
    scripts = [a.get("src") for tag, a in dom.elements if tag == "script"]
    assert scripts == ["/static/app.js"], scripts
    assert "<title>citynode gateway status</title>" in html  # the injected handlers never ran


def test_a_device_silent_for_three_of_its_intervals_is_flagged(rendered):
    dom, html, _ = rendered
    text = " ".join(dom.text)
    assert text.count("silent (usually every 5 min)") == 1
    evil_row = html[html.index(f'data-dev-eui="{EVIL.dev_eui}"') :]
    assert evil_row.index("silent (usually every 5 min)") < evil_row.index("</tr>")


def test_the_newest_dead_letters_are_listed_with_their_reason(rendered):
    dom, _, _ = rendered
    text = " ".join(dom.text)
    assert "Newest dead letters" in text
    assert "unexpected byte(s) after the CBOR array" in text


def test_the_table_keeps_its_semantics(rendered):
    dom, _, _ = rendered
    headers = [a for tag, a in dom.elements if tag == "th" and a.get("role") == "columnheader"]
    assert len(headers) == 7
    row_headers = [a for tag, a in dom.elements if tag == "th" and a.get("scope") == "row"]
    assert len(row_headers) == len(dom.rows)
    cells = [a for tag, a in dom.elements if tag == "td" and a.get("role") == "cell"]
    assert len(cells) == 6 * len(dom.rows)
    assert all(a.get("data-label") for a in cells)  # the phone layout repeats the column name


@pytest.mark.parametrize(("shot", "size"), [("desktop", (1280, 900)), ("phone", (390, 844))])
def test_the_screenshot_shows_a_drawn_page(rendered, shot, size):
    _, _, shots = rendered
    png = shots[shot]
    assert png.exists(), f"chromium wrote no screenshot {png}"
    width, height, pixels = png_pixels(png.read_bytes())
    assert (width, height) == size
    counts = Counter(pixels)
    background, _ = counts.most_common(1)[0]
    ink = len(pixels) - counts[background]
    colours = len(counts)
    # A blank or error page is one or two colours; the table, text and charts give hundreds.
    assert colours > 100, f"only {colours} colours in {png}"
    assert ink > width * height // 10, f"only {ink} non-background pixels in {png}"


def test_status_fields_sit_under_the_name_apart_from_the_readings(rendered):
    dom, html, _ = rendered
    aq_row = html[html.index('data-dev-eui="70b3d57ed0060001"') :]
    aq_row = aq_row[: aq_row.index("</tr>")]
    status = re.search(r'<span class="status" data-status="device">([^<]*)</span>', aq_row)
    assert status, "no status line under the device's name"
    assert status.group(1) == "Firmware: 1.2.0 · Uptime: 3 d 1 h · Reset cause: deep_sleep"
    assert aq_row.index('data-status="device"') < aq_row.index('class="readings"')
    for field in ("firmware", "uptime", "reset_cause"):
        assert f'data-field="{field}"' not in html, f"{field} listed among the sensor readings"


def test_the_charts_have_a_legend(rendered):
    dom, html, _ = rendered
    keys = re.search(r'<ul class="keys" aria-label="Chart colours">(.*?)</ul>', html, re.S)
    assert keys, "no chart legend"
    text = re.sub(r"<[^>]+>", " ", keys.group(1))
    for label in ("a reading", "battery (V)", "RSSI (dBm)", "SNR (dB)"):
        assert label in text
