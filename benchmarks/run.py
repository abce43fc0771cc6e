"""`make bench`: the benchmarks in one run, one table, and a JSON result file (bench-results.json).

So far: end-to-end throughput against a transactional copy and process-file (benchmarks/e2e.py).
Latency at a fixed load, Quix Streams, memory per user, restore rate and scaling are issue 9.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks import e2e


def main() -> int:
    events = os.environ.get("BENCH_EVENTS", "1000000")
    print(f"make bench: {events} events, {os.cpu_count()} cores, Python {platform.python_version()}")
    results = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "e2e": e2e.main(["--events", events])}
    Path("bench-results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("results written to bench-results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
