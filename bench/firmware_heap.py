"""Firmware RAM and flash: heap per role on the MicroPython unix port, and .mpy size per module.

Per role, on the virtual device (`citynode device run`: mpy-cross output, sim board, console link):

* smallest heap: the smallest ``-X heapsize`` (1 KB steps) with which the role boots and runs
  20 cycles: the boot's peak plus fragmentation, i.e. what the node really needs;
* resident: ``gc.mem_alloc()`` after a collection at the end of cycles 10 and 100 (the app's
  ``heap cycle=N alloc=..`` line), run in that smallest heap plus 8 KB; equal figures mean no growth;
* garbage per cycle: bytes allocated during one cycle (sleep + wake), ``gc.mem_alloc()`` before the
  collection minus after the previous one, run with a 512 KB heap so no automatic collection
  interferes (light sleepers count here their whole interval of idling: beams, GPS, sniffing);
* at 96k: whether the role runs 20 cycles with the ESP32-like default heap of `device run`.

Then the size of every compiled module (``gateway.field.firmware_build.build_firmware``).

Section ``firmware_heap_builds``: per role, the smallest heap (1 KB steps, 20 cycles) for the console
link and for the real LoRaWAN link (the MAC over the UDP virtual radio to the network-server
simulator, `citynode device run --lorawan`), on three interpreters: the 64-bit unix port from PyPI,
the 32-bit build without citynode frozen (`make firmware-unix`: build/micropython-unix32-stock, the
.mpy tree in the heap) and the 32-bit build with citynode frozen in (build/micropython-unix32); and
on the stock 32-bit build with the device package in a ROMFS image (mapped outside the heap, as an
ESP32's romfs partition is: the .mpy files run in place).

Section ``firmware_heap_census``: what the LoRaWAN node's heap holds on the 32-bit builds, per module
and per boot step (bench/heap_census.py runs the node in place of main.py and measures each import
and step with gc.mem_alloc() around it).
The AT rows are the same node on the sim boards with an AT modem (boards/sim_rak3172.json,
boards/sim_wio_e5.json): the app talks AT commands to a simulated RAK3172 or Wio-E5 on the host
(gateway/sim/modems), which does the LoRaWAN to the network-server simulator.

    python bench/firmware_heap.py                      # everything (long)
    python bench/firmware_heap.py --builds --links "AT RAK3172" "AT Wio-E5"
        # only those rows of the builds section; the other rows are kept from bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results import RESULTS, machine, write_section

from gateway.contract import codec
from gateway.field.firmware_build import build_firmware, build_romfs, built_firmware
from gateway.paths import repo_root
from gateway.sim.device_run import ROLES, prepare_fs, run_device, stream_lorawan_device

HEAP_LINE = re.compile(r"heap cycle=(\d+) alloc=(\d+) free=(\d+) garbage=(\d+)")
LIGHT = ("passenger_count", "crowd_count")


def _heap(role: str, cycles: int, heap_kb: int) -> dict[int, tuple[int, int]] | None:
    run = run_device(role, cycles=cycles, heapsize=f"{heap_kb}k", heap_report=True)
    if run.returncode != 0 or any("MemoryError" in line for line in run.lines):
        return None
    out = {}
    for line in run.lines:
        m = HEAP_LINE.match(line)
        if m:
            out[int(m.group(1))] = (int(m.group(2)), int(m.group(4)))
    return out if len(out) == cycles else None


def smallest_heap_kb(role: str, cycles: int = 20, lo: int = 48, hi: int = 256) -> int:
    """Bisection on the heap size: lo fails, hi works."""
    if _heap(role, cycles, hi) is None:
        raise RuntimeError(f"{role} does not run in {hi}k")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _heap(role, cycles, mid) is None:
            lo = mid
        else:
            hi = mid
    return hi


def measure_role(role: str) -> dict[str, object]:
    smallest = smallest_heap_kb(role)
    resident = _heap(role, 100, smallest + 8)
    assert resident is not None
    roomy = _heap(role, 3, 512)
    assert roomy is not None
    return {
        "smallest_kb": smallest,
        "resident_10": resident[10][0],
        "resident_100": resident[100][0],
        "garbage": max(g for _, g in roomy.values()),
        "fits_96k": _heap(role, 20, 96) is not None,
    }


def module_sizes() -> list[tuple[str, int, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        built = build_firmware(Path(tmp) / "fw")
    return [(m.path, m.size, m.source_size) for m in built if m.path.endswith(".mpy")]


def report(roles: dict[str, dict[str, object]], modules: list[tuple[str, int, int]]) -> str:
    lines = [
        "## Firmware: heap per role and .mpy size per module",
        "",
        f"Measured on {machine()} with `bench/firmware_heap.py` (the MicroPython unix port, 64-bit, running",
        "the mpy-cross-compiled tree on the sim board with the console link, as `citynode device run` does).",
        "",
        "| role | smallest heap (boot peak) | resident after cycle 10 | after cycle 100 | garbage per cycle | runs at 96k |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for role, r in roles.items():
        lines.append(
            f"| {role} | {r['smallest_kb']} KB | {r['resident_10'] / 1024:.1f} KB | {r['resident_100'] / 1024:.1f} KB"
            f" | {r['garbage'] / 1024:.1f} KB | {'yes' if r['fits_96k'] else 'no'} |"
        )
    total = sum(size for _, size, _ in modules)
    lines += [
        "",
        "Smallest heap: the smallest `-X heapsize` that boots and runs 20 cycles (1 KB steps). Resident:",
        "`gc.mem_alloc()` after a collection at the end of a cycle; the same figure at cycles 10 and 100 means",
        "no growth (tests/firmware/test_heap_roles.py checks 1000 cycles). Garbage per cycle: bytes allocated",
        "during one cycle before the collection (512 KB heap, so no automatic collection); passenger_count and",
        "crowd_count idle a whole interval (300 s / 900 s) polling beams, GPS and radios in 50-100 ms steps.",
        "",
        "How to read this for an ESP32: the unix port is 64-bit, so every object (tuple slot, dict entry, small",
        "int box, function) takes about twice the bytes it takes on the 32-bit ESP32, and it keeps every imported",
        "module's bytecode and interned names in the heap, which an ESP32 build freezes into flash with",
        "`firmware/manifest.py` (frozen bytecode costs no heap). The sim board's peripheral simulators",
        "(citynode_sim.sim*: register maps, sensor frames, passengers, GPS, WiFi and BLE populations) run in",
        "the host process (gateway/sim/simhost.py); the firmware keeps only the virtual clock, pins and watchdog",
        "(citynode_sim.simio) and the link to the host (citynode_sim.simlink, ~11 KB together), and its drivers",
        "parse the bytes the simulators send. A frozen ESP32 build therefore needs a fraction of these figures:",
        "the role's data (crowd_count: 5.3 KB of anonymiser sets, 512 devices per kind), the backlog and the",
        "drivers' buffers. Of the resident figures, about 14 KB are the interned names (qstr pool,",
        "`micropython.qstr_info()`, 550-610 names): the pools double in size, so staying under ~618 names rather",
        "than crossing into a sixth pool of 640 entries is worth about 7 KB on the unix port.",
        "",
        f"### .mpy size per module (total {total} bytes, {total / 1024:.1f} KB)",
        "",
        "| module | .mpy bytes | source bytes |",
        "|---|---:|---:|",
    ]
    for path, size, source in sorted(modules):
        lines.append(f"| {path} | {size} | {source} |")
    return "\n".join(lines) + "\n"


STOCK = repo_root() / "build" / "micropython-unix32-stock" / "micropython"
FROZEN = repo_root() / "build" / "micropython-unix32" / "micropython"
BUILDS = (  # (label, CITYNODE_MICROPYTHON or None for the PyPI interpreter, device package in ROMFS)
    ("64-bit (PyPI)", None, False),
    ("32-bit", STOCK, False),
    ("32-bit + ROMFS", STOCK, True),
    ("32-bit frozen", FROZEN, False),
)
LINKS = ("console", "LoRaWAN", "AT RAK3172", "AT Wio-E5")
LINK_BOARD = {"console": "sim", "LoRaWAN": "sim", "AT RAK3172": "sim_rak3172", "AT Wio-E5": "sim_wio_e5"}
# issue 13: an ESP32 without PSRAM starts with 64 KB of heap that may grow to about 108 KB
BUDGETS = {"32-bit frozen": 64, "32-bit": 108, "32-bit + ROMFS": 108}
CENSUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "heap_census.py")


def _runs(role: str, heap_kb: int, link: str, cycles: int = 20, romfs: Path | None = None) -> bool:
    """Whether the role boots (joins, for a LoRaWAN or AT link) and sends ``cycles`` readings in ``heap_kb``."""
    lorawan = link != "console"
    with tempfile.TemporaryDirectory(prefix="citynode-bench-") as tmp:
        fs = Path(tmp)
        config = {"interval": 60} if role in LIGHT else None
        prepare_fs(fs, role, board=LINK_BOARD[link], cycles=cycles, heap_report=True, lorawan=lorawan, config=config)
        if lorawan:
            lines = list(stream_lorawan_device(fs, heapsize=f"{heap_kb}k", time_scale=100, romfs=romfs,
                                               downlinks=[codec.encode_downlink({"adr": True})]))
        else:
            run = run_device(role, cycles=cycles, heapsize=f"{heap_kb}k", heap_report=True, config=config,
                             romfs=romfs)
            lines = run.lines + ([f"exit status {run.returncode}"] if run.returncode else [])
    sent = sum(1 for line in lines if line.startswith("uplink fport="))
    failed = any("MemoryError" in line or line.startswith("exit status") for line in lines)
    return not failed and sent >= cycles and (not lorawan or "joined" in lines)


def smallest_kb(role: str, link: str, lo: int = 16, hi: int = 384, romfs: Path | None = None) -> int | None:
    if not _runs(role, hi, link, romfs=romfs):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _runs(role, mid, link, romfs=romfs):
            hi = mid
        else:
            lo = mid
    return hi


class _Interpreter:
    """CITYNODE_MICROPYTHON set to ``path`` (None: the PyPI interpreter) while in the block."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.saved = os.environ.pop("CITYNODE_MICROPYTHON", None)
        if self.path is not None:
            os.environ["CITYNODE_MICROPYTHON"] = str(self.path)

    def __exit__(self, *exc: object) -> None:
        os.environ.pop("CITYNODE_MICROPYTHON", None)
        if self.saved is not None:
            os.environ["CITYNODE_MICROPYTHON"] = self.saved


def measure_builds(image: Path, links: tuple[str, ...] = LINKS) -> dict[tuple[str, str, str], int | None]:
    """{(role, build, link): smallest heap in KB} for every build that exists here; ``image``: the
    device package's ROMFS image."""
    out: dict[tuple[str, str, str], int | None] = {}
    for label, path, in_romfs in BUILDS:
        if path is not None and not path.exists():
            print(f"  {label}: {path} missing (make firmware-unix)", flush=True)
            continue
        with _Interpreter(path):
            for role in ROLES:
                for link in links:
                    out[(role, label, link)] = smallest_kb(role, link, romfs=image if in_romfs else None)
                    print(f"  {role} {label} {link}: {out[(role, label, link)]} KB", flush=True)
    return out


CENSUS_LINE = re.compile(r"census (module|part) (\S+) (\d+)(?: (kept|dropped))?")
QSTR_LINE = re.compile(r"qstr pool: n_pool=\d+, n_qstr=(\d+), n_str_data_bytes=(\d+), n_total_bytes=(\d+)")


def census(role: str, image: Path | None) -> dict[str, object]:
    """What the LoRaWAN node's heap holds after 3 cycles (bench/heap_census.py), in a roomy heap."""
    with tempfile.TemporaryDirectory(prefix="citynode-census-") as tmp:
        fs = Path(tmp)
        config = {"interval": 60} if role in LIGHT else None
        prepare_fs(fs, role, cycles=3, heap_report=True, lorawan=True, config=config)
        lines = list(stream_lorawan_device(fs, heapsize="400k", time_scale=100, romfs=image, main=Path(CENSUS),
                                           downlinks=[codec.encode_downlink({"adr": True})]))
    modules: dict[str, tuple[int, str]] = {}
    parts: dict[str, int] = {}
    out: dict[str, object] = {"modules": modules, "parts": parts}
    for line in lines:
        m = CENSUS_LINE.match(line)
        if m and m.group(1) == "module":
            modules[m.group(2)] = (int(m.group(3)), m.group(4))  # a module imported again: its last copy
        elif m:
            parts[m.group(2)] = int(m.group(3))
        q = QSTR_LINE.match(line)
        if q:
            out["qstr"] = (int(q.group(1)), int(q.group(2)), int(q.group(3)))
        h = HEAP_LINE.match(line)
        if h:
            out["resident"] = int(h.group(2))
    if "resident" not in out or not modules:
        raise RuntimeError(f"census of {role} failed: " + " | ".join(lines[-5:]))
    return out


CENSUS_GROUPS = (  # (row, module name prefixes)
    ("app: app, run, files, backlog, codec, codec_tables, codec_downlink, config, compat",
     ("citynode.app", "citynode.run", "citynode.files", "citynode.backlog", "citynode.codec",
      "citynode.config", "citynode.compat")),
    ("role: roles, the role's drivers, crowd", ("citynode.roles", "citynode.drivers", "citynode.crowd")),
    ("MAC: lorawan.*, links, maclink", ("citynode.lorawan", "citynode.links", "citynode.maclink")),
    ("sim board: citynode_sim (a real board: HAL, radio driver)", ("citynode_sim",)),
)


def census_report(censuses: dict[tuple[str, str], dict[str, object]]) -> str:
    builds = sorted({b for _, b in censuses}, key=[label for label, _, _ in BUILDS].index)
    roles = [r for r in ROLES if any((r, b) in censuses for b in builds)]
    lines = [
        "## Firmware: what the LoRaWAN node's heap holds (32-bit)",
        "",
        f"Measured on {machine()} with `bench/firmware_heap.py` and `bench/heap_census.py`: the node runs",
        "3 LoRaWAN cycles in a 400 KB heap; every import and boot step is measured with `gc.mem_alloc()`",
        "after a collection before and after it (its own imports not included), so garbage is not counted.",
        "A module's figure is what importing it keeps: on the stock build its bytecode, constants, function",
        "and class objects, module dict, and the names (qstrs) it was the first to intern (the qstr pools",
        "double in size, so a pool of up to 640 entries lands on whichever module crosses a boundary); frozen",
        "or in ROMFS, the bytecode and name text stay in flash and only the objects and pool entries remain.",
        "Boot-only modules (citynode.boot, hal, boards) are dropped after the boot (`citynode.run`); their",
        "names stay interned. In bytes; resident: `gc.mem_alloc()` after the collection ending cycle 3.",
    ]

    def row(label: str, values: list[object]) -> None:
        lines.append(f"| {label} | " + " | ".join(str(v) for v in values) + " |")

    for build in builds:
        cols = [(r, build) for r in roles if (r, build) in censuses]
        lines += ["", f"### {build}", "", "| what | " + " | ".join(r for r, _ in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for label, prefixes in CENSUS_GROUPS:
            vals = []
            for key in cols:
                mods = censuses[key]["modules"]
                vals.append(sum(size for name, (size, state) in mods.items()  # type: ignore[attr-defined]
                                if state == "kept" and name.startswith(prefixes)))
            row(f"modules, {label}", vals)
        row("modules dropped after the boot (their names stay)", [
            sum(size for size, state in censuses[key]["modules"].values() if state == "dropped")  # type: ignore[attr-defined]
            for key in cols])
        for key_name, label in (("hal", "board HAL objects (pins, clock, link to the sim host)"),
                                ("role", "role data: sensors, drivers' buffers, anonymiser sets"),
                                ("link", "MAC state: MAC, radio, session store"),
                                ("node", "app.Node: backlog, state"),
                                ("join", "first boot: join, session keys, status uplink, first downlink")):
            row(label, [censuses[key]["parts"].get(key_name, 0) for key in cols])  # type: ignore[attr-defined]
        row("names: qstrs interned in the heap (count)", [censuses[key]["qstr"][0] for key in cols])  # type: ignore[index]
        row("names: qstr pool bytes (inside the module rows)",
            [censuses[key]["qstr"][2] - censuses[key]["qstr"][1] for key in cols])  # type: ignore[index]
        row("names: their text, bytes (in the heap on the stock build, in flash with ROMFS)",
            [censuses[key]["qstr"][1] for key in cols])  # type: ignore[index]
        row("**resident after cycle 3** (with the census's own ~4 KB)", [censuses[key]["resident"] for key in cols])
    lines += [
        "",
        "Per module, stock build (bytes kept by the import, names included):",
        "",
    ]
    stock = [(r, "32-bit") for r in roles if (r, "32-bit") in censuses]
    if stock:
        names: list[str] = []
        for key in stock:
            for name in censuses[key]["modules"]:  # type: ignore[attr-defined]
                if name not in names:
                    names.append(name)
        lines += ["| module | " + " | ".join(r for r, _ in stock) + " |", "|---|" + "---:|" * len(stock)]
        for name in names:
            cells = []
            for key in stock:
                got = censuses[key]["modules"].get(name)  # type: ignore[attr-defined]
                cells.append("-" if got is None else f"{got[0]}" + (" (dropped)" if got[1] == "dropped" else ""))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def builds_report(figures: dict[tuple[str, str, str], int | None]) -> str:
    lines = [
        "## Firmware: smallest heap per role, link and interpreter",
        "",
        f"Measured on {machine()} with `bench/firmware_heap.py`: the smallest `-X heapsize` (1 KB steps)",
        "with which a role boots and sends 20 readings, on the sim board. Console: the offline stand-in",
        "link. LoRaWAN: the real citynode MAC over the UDP virtual radio to the network-server simulator",
        "(`citynode device run --lorawan`: OTAA join, uplinks, ADR, a config downlink). AT RAK3172 / AT",
        "Wio-E5: the same over a simulated AT modem that runs its own LoRaWAN stack (`--board sim_rak3172`,",
        "`--board sim_wio_e5`): the node holds citynode.lorawan_at instead of the MAC. Interpreters: the",
        "64-bit unix port from PyPI; `make firmware-unix`'s 32-bit build without citynode frozen (the .mpy",
        "files `citynode flash` copies, their bytecode and names in the heap, as on a stock ESP32 image) and",
        "with citynode frozen in (the image firmware/manifest.py describes); 32-bit + ROMFS: the stock build",
        "with the device package in a ROMFS image mapped outside the heap (tests/firmware/unix32/romfs_host,",
        "as an ESP32 maps its romfs partition), where the .mpy files run in place. Budget: an ESP32 without",
        "PSRAM starts MicroPython with 64 KB of heap (frozen image) that may grow to about 108 KB (stock image).",
        "",
    ]
    for role in ROLES:
        lines += [f"### {role}", "", "| link | " + " | ".join(label for label, _, _ in BUILDS) + " |",
                  "|---|" + "---:|" * len(BUILDS)]
        for link in LINKS:
            cells = []
            for label, _, _ in BUILDS:
                kb = figures.get((role, label, link))
                budget = BUDGETS.get(label) if link != "console" else None
                cell = "-" if kb is None else f"{kb} KB"
                if kb is not None and budget is not None:
                    cell += f" ({'within' if kb <= budget else 'over'} {budget} KB)"
                cells.append(cell)
            lines.append(f"| {link} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "The simulated board's own modules (citynode_sim: simlink, simio, udp, simrtc; crowd_count adds",
        "simble) are never frozen nor put in the ROMFS image: they load as .mpy and take 13-16 KB of the",
        "LoRaWAN node's heap (section below), where a real board's HAL and radio driver would be frozen or in",
        "ROMFS. tests/firmware/test_heap_lorawan.py runs every role 1000 LoRaWAN cycles in 64 KB on the frozen",
        "build and checks that the heap does not grow, and 20 cycles in 108 KB on the stock build with ROMFS;",
        "tests/firmware/test_heap_at_link.py does the same on the AT link (both modems, both budgets).",
    ]
    return "\n".join(lines) + "\n"


def recorded_builds() -> dict[tuple[str, str, str], int | None]:
    """The figures of the builds section now in bench/RESULTS.md (to keep rows not measured again)."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    m = re.search(r"<!-- begin firmware_heap_builds -->(.*?)<!-- end firmware_heap_builds -->", text, re.S)
    out: dict[tuple[str, str, str], int | None] = {}
    role = None
    for line in (m.group(1) if m else "").splitlines():
        if line.startswith("### "):
            role = line[4:].strip()
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if role is None or len(cells) != len(BUILDS) + 1 or cells[0] not in LINKS:
            continue
        for (label, _, _), cell in zip(BUILDS, cells[1:]):
            kb = re.match(r"(\d+) KB", cell)
            out[(role, label, cells[0])] = int(kb.group(1)) if kb else None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builds", action="store_true", help="only the section firmware_heap_builds")
    parser.add_argument("--links", nargs="+", choices=LINKS, default=list(LINKS),
                        help="links to measure (the others keep their recorded figures)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="citynode-romfs-") as tmp:
        image = build_romfs(built_firmware(), Path(tmp) / "citynode.romfs")
        figures = recorded_builds() if set(args.links) != set(LINKS) else {}
        figures.update(measure_builds(image, tuple(args.links)))
        write_section("firmware_heap_builds", builds_report(figures))
        if args.builds:
            return
        censuses = {}
        for label, path, in_romfs in BUILDS:
            if path is None or not path.exists():
                continue
            with _Interpreter(path):
                for role in ROLES:
                    censuses[(role, label)] = census(role, image if in_romfs else None)
                    print(f"  census {role} {label}: resident {censuses[(role, label)]['resident']}", flush=True)
        write_section("firmware_heap_census", census_report(censuses))
    roles = {}
    for role in ROLES:
        print(f"  {role} ...", flush=True)
        roles[role] = measure_role(role)
        print(f"  {role}: {roles[role]}", flush=True)
    write_section("firmware_heap", report(roles, module_sizes()))


if __name__ == "__main__":
    main()
