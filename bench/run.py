"""`make bench`: run every benchmark and rewrite its section of bench/RESULTS.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
# Each module has main() that measures and writes its own RESULTS.md section.
BENCHMARKS = [
    "payload_sizes", "airtime_budget", "firmware_heap", "gateway_throughput", "store_disk", "peers", "memory",
    "store_reads_export", "status_page", "fuota_node",
]


def load(name: str) -> ModuleType:
    """Import bench/<name>.py as module ``name`` (registered in sys.modules first, as an import would:
    dataclasses with postponed annotations look their module up there)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    for name in BENCHMARKS:
        module = load(name)
        print(f"== {name}", flush=True)
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
