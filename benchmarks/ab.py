"""Pair two builds of the worker on the same broker and the same input, interleaved:
`python -m benchmarks.ab --base DIR [--events N] [--pairs K] [--processes P] [--set name=value ...]`.

DIR is another checkout of the project (say `git worktree add /tmp/base HEAD~1`, then
`make -C /tmp/base build`); the worker runs from it with its own compiled modules, the other side
from this checkout. Each round runs both once, the order alternating, each on fresh topics that
hold the same bench stream (dev/loadgen.py via benchmarks/e2e.py); a run is timed as `make bench`
times it (from subscribing until its group has committed everything). Prints each pair and the
median ratio of this checkout to the base: events/s, and events per worker CPU-second.
Settings given with `--set` apply to both sides; `--set-new` only to this checkout's side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

from benchmarks import cpu, e2e
from worker.runtime.topics import admin_client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", type=Path, required=True, help="the other checkout (built)")
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1, help="worker processes of each run")
    parser.add_argument("--set", dest="both", action="append", default=[], help="name=value for both sides")
    parser.add_argument("--set-new", dest="new", action="append", default=[], help="name=value for this side")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (the workers' logs)")
    parser.add_argument("--show", help="print each run's worker log lines that start with this")
    parser.add_argument("--threads", action="store_true", help="print the broker's busiest threads of each run")
    args = parser.parse_args()
    bootstrap = e2e.running_broker()
    work = e2e.workdir()
    workload = e2e.Workload.generate(args.events, 100_000, work)
    print(f"{workload.events:,} events in {len(workload.messages):,} messages; base {args.base}", flush=True)
    here = Path(__file__).resolve().parent.parent
    sides = {"base": (args.base.resolve(), parse(args.both)), "new": (here, {**parse(args.both), **parse(args.new)})}
    figures: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
    broker_pid = cpu.broker_pid(bootstrap)
    for round_ in range(args.pairs):
        order = ["base", "new"] if round_ % 2 == 0 else ["new", "base"]
        for side in order:
            checkout, overrides = sides[side]
            before = threads_cpu_s(broker_pid) if args.threads and broker_pid else {}
            figures[side].append(one_run(bootstrap, workload, work, checkout, overrides, broker_pid, side,
                                         args.processes))
            if before and broker_pid:
                after = threads_cpu_s(broker_pid)
                busiest = sorted(((after[name] - before.get(name, 0.0), name) for name in after), reverse=True)[:8]
                print("       broker threads: " + ", ".join(f"{name} {seconds:.1f}" for seconds, name in busiest))
            if args.show:
                show_log_lines(work, args.show)
    report(figures)
    if args.keep:
        print(f"workers' logs in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def parse(pairs: list[str]) -> dict[str, Any]:
    """name=value pairs; a value that reads as a JSON object is one (the `kafka` pass-through)."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        name, value = pair.split("=", 1)
        parsed[name] = json.loads(value) if value.startswith("{") else value
    return parsed


def one_run(bootstrap: str, workload: e2e.Workload, work: Path, checkout: Path, overrides: dict[str, Any],
            broker_pid: int | None, side: str, processes: int = 1) -> dict[str, float]:
    settings = e2e.settings_for(bootstrap, f"ab{os.urandom(3).hex()}", **overrides)
    e2e.new_raw_topic(settings, workload)
    cwd = Path.cwd()
    os.chdir(checkout)  # `python -m worker.cli` takes the package of its working directory
    try:
        done = e2e.worker_processes_run(settings, processes, 600 + workload.events / 1000, work, broker_pid)
    finally:
        os.chdir(cwd)
        shutil.rmtree(settings.state_dir, ignore_errors=True)
        delete_topics(settings)  # the broker would compact their changelogs during the next runs
    figures = done.figures()
    result = {"events_s": workload.events / figures["seconds"],
              "per_cpu_s": workload.events / figures["worker_cpu_s"],
              "broker_cpu_s": figures["broker_cpu_s"] or 0.0, "idle": figures["idle_cores"]}
    print(f"  {side:<4} {result['events_s']:>9,.0f} events/s  {result['per_cpu_s']:>9,.0f} events/worker CPU-s  "
          f"broker {result['broker_cpu_s']:5.1f} CPU-s  idle {result['idle']:.2f} cores", flush=True)
    return result


def show_log_lines(work: Path, prefix: str) -> None:
    """The lines of the last run's worker log that start with `prefix`."""
    for log in sorted(work.glob("*.log"), key=lambda path: path.stat().st_mtime)[-1:]:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                print(f"       {line}")


def threads_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of the broker JVM's threads (jstack's cpu=), summed by name without numbers."""
    try:
        dump = subprocess.run(["jstack", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict[str, float] = {}
    for match in re.finditer(r'^"([^"]*)".*? cpu=([0-9.]+)ms', dump, re.MULTILINE):
        name = re.sub(r"[0-9]+", "N", match.group(1))
        found[name] = found.get(name, 0.0) + float(match.group(2)) / 1000
    return found


def delete_topics(settings: Any) -> None:
    admin = admin_client(settings)
    names = list(settings.topics.model_dump().values())
    for future in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):
            future.result()


def report(figures: dict[str, list[dict[str, float]]]) -> None:
    for name in ("events_s", "per_cpu_s"):
        ratios = [new[name] / base[name] for base, new in zip(figures["base"], figures["new"], strict=True)]
        shown = ", ".join(f"{ratio:.3f}" for ratio in ratios)
        print(f"new / base, {name}: median {statistics.median(ratios):.3f} ({shown})")


if __name__ == "__main__":
    main()
