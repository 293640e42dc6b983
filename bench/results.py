"""Write one benchmark's section of bench/RESULTS.md, leaving the other sections as they are.

Each section sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->`` markers, so the
benchmarks can run one at a time and still leave a whole report.
"""

from __future__ import annotations

import platform
import re
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = (
    "# citynode benchmark results\n\n"
    "Regenerate with `make bench`; each section says how it was measured. Numbers are from the machine\n"
    "named in the section (the project's CI machine kind: 2 cores, 24 GiB).\n"
)


def machine() -> str:
    return f"{platform.machine()}, Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}"


def write_section(name: str, body: str) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    block = f"<!-- begin {name} -->\n{body.rstrip()}\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")
