"""Where the worker's time goes: `python -m benchmarks.profile_worker [--events N]`.

Runs one `experiment-worker run` process under cProfile on the bench stream (on the local
broker), stops it when its group has committed everything, and prints the functions with the
most own time and the most cumulative time.
"""

from __future__ import annotations

import argparse
import pstats
import signal
import subprocess
import sys
import time
import uuid

from benchmarks import e2e
from dev.workers import worker_command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    bootstrap = e2e.running_broker()
    work = e2e.workdir()
    workload = e2e.Workload.generate(args.events, 100_000, work)
    settings = e2e.settings_for(bootstrap, f"prof{uuid.uuid4().hex[:6]}")
    e2e.new_raw_topic(settings, workload)
    stats = work / "worker.prof"
    command = worker_command(settings)
    command[1:3] = ["-m", "cProfile", "-o", str(stats), "-m", "worker.cli"]  # python -m cProfile ... run
    with (work / "worker.log").open("wb") as log:
        child = subprocess.Popen(command, stdout=log, stderr=log)
    started = time.monotonic()
    e2e.wait_caught_up(settings, 3600, lambda: child.poll() is None)
    seconds = time.monotonic() - started
    child.send_signal(signal.SIGTERM)
    child.wait(120)
    print(f"{workload.events:,} events in {seconds:.1f} s under cProfile ({workload.events / seconds:,.0f} events/s)")
    report = pstats.Stats(str(stats), stream=sys.stdout)
    report.sort_stats(pstats.SortKey.TIME).print_stats(args.top)
    report.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(args.top)


if __name__ == "__main__":
    main()
