"""`experiment-worker process-file` throughput and memory on a generated stream.

Not a test: `python -m benchmarks.process_file [--records N]`. Writes a deterministic JSON Lines
input (dev/loadgen.py; 1,000,000 records by default, 100k users) into a temporary
directory, runs the real command on it as a subprocess, and prints records/s, events/s and the
child's peak RSS. For scale it also runs, in the same way, a baseline that only reads every line,
decodes it and writes the value back (the JSON floor under any pipeline in Python), and prints
process-file's time as a ratio of it. `--profile` adds a cProfile run and prints the hot spots.
"""

from __future__ import annotations

import argparse
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dev.loadgen import START_MS, generate

# The floor: read, decode and re-encode every line, write it out; no product rules at all.
BASELINE = """
import json, sys, orjson
with open(sys.argv[1], "rb") as lines, open(sys.argv[2], "wb") as out:
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:  # a value_raw with a lone surrogate
            record = json.loads(line)
        out.write(orjson.dumps(record.get("value")) + b"\\n")
"""


def run_child(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) and stderr of one command.

    RUSAGE_CHILDREN's ru_maxrss is the largest peak among all children waited for so far, so each
    command is started by a small probe process of its own, whose RUSAGE_CHILDREN is that command's."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "started = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
        "seconds = time.perf_counter() - started\n"
        "peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(f'{seconds} {peak_kib} {done.returncode}')\n"
        "sys.stderr.write(done.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True)
    seconds, peak_kib, returncode = done.stdout.split()
    if returncode != "0":
        raise SystemExit(f"{' '.join(command[:3])} … exited {returncode}:\n{done.stderr}")
    return float(seconds), int(peak_kib) * 1024, done.stderr.strip()


def worker_command() -> list[str]:
    script = Path(sys.executable).with_name("experiment-worker")
    return [str(script)] if script.exists() else [shutil.which("experiment-worker") or "experiment-worker"]


def process_file_command(source: Path, out: Path) -> list[str]:
    """The real `experiment-worker process-file` on `source`, its outputs in `out`."""
    return [*worker_command(), "process-file", str(source), "--out", str(out), "--now", str(START_MS)]


def baseline_command(source: Path, out: Path) -> list[str]:
    """BASELINE on `source`, writing `out`."""
    return [sys.executable, "-c", BASELINE, str(source), str(out)]


def count_lines(path: Path) -> int:
    with path.open("rb") as lines:
        return sum(1 for _ in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="input lines (default 1,000,000)")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20_261_124)
    parser.add_argument("--dir", type=Path, help="work directory (kept); default: a temporary one, removed")
    parser.add_argument("--no-baseline", action="store_true", help="skip the read/decode/write baseline")
    parser.add_argument("--profile", action="store_true", help="also run under cProfile and print hot spots")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-process-file-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        measure(args, work)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> None:
    source = work / "raw.jsonl"
    started = time.perf_counter()
    written = generate(source, args.records, args.seed, args.users)
    print(f"input: {written.records:,} records, {written.events:,} events, {args.users:,} users, "
          f"{written.bytes / 1e6:,.0f} MB (generated in {time.perf_counter() - started:.1f} s)")
    out = work / "out"
    command = process_file_command(source, out)
    seconds, peak, summary = run_child(command)
    outputs = {name: count_lines(out / f"{name}.jsonl") for name in ("events", "deltas", "dlq", "state")}
    print(f"process-file: {seconds:.1f} s   {written.records / seconds:>9,.0f} records/s   "
          f"{written.events / seconds:>9,.0f} events/s   peak RSS {peak / 2**20:,.0f} MiB")
    print(f"  outputs: {outputs['events']:,} events, {outputs['deltas']:,} deltas, {outputs['dlq']:,} DLQ records, "
          f"{outputs['state']:,} users in state")
    print(f"  {summary.splitlines()[-1] if summary else '(no summary line)'}")
    if not args.no_baseline:
        base_seconds, base_peak, _ = run_child(baseline_command(source, work / "base"))
        print(f"baseline (read, decode, re-encode, write): {base_seconds:.1f} s   "
              f"{written.records / base_seconds:>9,.0f} records/s   peak RSS {base_peak / 2**20:,.0f} MiB")
        print(f"  process-file / baseline time = {seconds / base_seconds:.1f}")
    if args.profile:
        profile(command, work)


def profile(command: list[str], work: Path) -> None:
    stats_path = work / "process-file.prof"
    profiled = [sys.executable, "-m", "cProfile", "-o", str(stats_path), "-m", "worker.cli", *command[1:]]
    seconds, _, _ = run_child(profiled)
    print(f"\ncProfile run: {seconds:.1f} s (profiler overhead included); top functions by own time:")
    stats = pstats.Stats(str(stats_path))
    stats.sort_stats(pstats.SortKey.TIME).print_stats(15)
    print("by cumulative time:")
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(25)


if __name__ == "__main__":
    main()
