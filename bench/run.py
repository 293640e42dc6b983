"""`make bench`: run every benchmark and rewrite its section of bench/RESULTS.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Each module has main() that measures and writes its own RESULTS.md section.
BENCHMARKS = ["payload_sizes", "airtime_budget", "firmware_heap", "gateway_throughput"]


def main() -> int:
    sys.path.insert(0, str(HERE))
    for name in BENCHMARKS:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"== {name}")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
