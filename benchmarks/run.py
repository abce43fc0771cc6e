"""`make bench`: every figure of issue 9 in one run on the local broker, one table, and a JSON
result file (bench-results.json).

Same broker, same input (dev/loadgen.py: 70% ordinary events with user-property
operations, 20% exposures, 10% assignments, 100k Zipf-skewed users, envelopes of 1–50 events,
a fixed seed; BENCH_EVENTS events, default 1,000,000), each system on a raw topic of its own
holding the same messages:
  copy          a plain confluent-kafka transactional consume→produce copy (the Python ceiling)
  Quix Streams  the worker's job in Quix, exactly-once, RocksDB state (benchmarks/quix.py)
  worker        one process, exactly-once and at-least-once; then two processes (scaling)
  process-file  the same records without Kafka
then latency at half the worker's measured maximum, and the restore rate and memory of a
BENCH_STATE_USERS-user state topic (default 1,000,000 users × 10 properties).
Figures are printed as ratios against the baselines run here, never compared with constants.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks import e2e, latency, quix, state
from dev.kafka import recorded_broker

QUIX_SETUP_HINT = "`make bench-setup` (quixstreams in .venv-bench) did not succeed"


def main() -> int:
    events = int(os.environ.get("BENCH_EVENTS", "1000000"))
    state_users = int(os.environ.get("BENCH_STATE_USERS", "1000000"))
    recorded = recorded_broker()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (recorded.bootstrap if recorded else None)
    if not bootstrap:
        print("make bench: no broker (`make kafka-up` starts one)", file=sys.stderr)
        return 2
    cores, memory = os.cpu_count(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"make bench: {events:,} events, {cores} cores, {memory:.0f} GiB, Python {platform.python_version()}, "
          f"broker {bootstrap}", flush=True)
    work = e2e.workdir()
    started = time.monotonic()
    workload = e2e.Workload.generate(events, 100_000, work)
    print(f"  workload: {len(workload.messages):,} raw messages, {workload.events:,} events "
          f"({time.monotonic() - started:.0f} s)", flush=True)
    run = Run(bootstrap, workload, work)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cores": cores, "memory_gib": round(memory),
                               "events": workload.events, "raw_messages": len(workload.messages)}
    results["process_file_s"], counts = e2e.process_file_run(workload, run.settings("pf"), work)
    run.say("process-file", results["process_file_s"])
    copy = run.fresh("copy")
    results["copy_s"] = e2e.copy_baseline(copy, len(workload.messages))
    run.say("transactional copy", results["copy_s"])
    if quix.quix_available():
        qs = run.fresh("quix")
        expected = quix_expected(workload)
        results["quix_s"] = quix.quix_run(bootstrap, qs.topics.raw, qs.partitions, expected, work)
        run.say("Quix Streams, exactly-once", results["quix_s"])
    else:
        print(f"  Quix Streams skipped: {QUIX_SETUP_HINT}")
    timeout = 600 + workload.events / 1000
    results["worker_eos_s"] = e2e.worker_processes_run(run.fresh("eos"), 1, timeout, work)
    run.say("worker, exactly-once, 1 process", results["worker_eos_s"])
    results["worker_alo_s"] = e2e.worker_processes_run(run.fresh("alo", guarantee="at-least-once"), 1, timeout, work)
    run.say("worker, at-least-once, 1 process", results["worker_alo_s"])
    results["worker_eos_2_s"] = e2e.worker_processes_run(run.fresh("eos2"), 2, timeout, work)
    run.say("worker, exactly-once, 2 processes", results["worker_eos_2_s"])
    half = workload.events / results["worker_eos_s"] / 2
    results["latency"] = latency.measure(run.settings("lat"), half, 30.0, work)
    lat = results["latency"]
    print(f"  latency at {half:,.0f} events/s: p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms "
          f"({lat['events']:,} events)", flush=True)
    results["state"] = state.measure(run.settings("state"), state_users)
    st = results["state"]
    print(f"  restore: {st['records']:,} records in {st['seconds']:.1f} s; "
          f"{st['state_bytes_per_user']:.0f} B/user", flush=True)
    results["users_in_process_file_state"] = counts["users"]
    table = render(results)
    print("\n" + table)
    Path("bench-results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("results written to bench-results.json")
    return 0


class Run:
    def __init__(self, bootstrap: str, workload: e2e.Workload, work: Path) -> None:
        self.bootstrap, self.workload, self.work = bootstrap, workload, work
        self.tag = uuid.uuid4().hex[:6]

    def settings(self, name: str, **overrides: Any) -> Any:
        return e2e.settings_for(self.bootstrap, f"bench{self.tag}-{name}", **overrides)

    def fresh(self, name: str, **overrides: Any) -> Any:
        """Settings on new topics whose raw topic holds the workload."""
        settings = self.settings(name, **overrides)
        e2e.new_raw_topic(settings, self.workload)
        return settings

    def say(self, what: str, seconds: float) -> None:
        print(f"  {what:<36} {self.workload.events / seconds:>10,.0f} events/s ({seconds:.1f} s)", flush=True)


def quix_expected(workload: e2e.Workload) -> int:
    """The enriched events Quix's version of the job emits for the workload's messages."""
    from dev.loadgen import RawRecord

    records = []
    for value, _, _ in workload.messages:
        try:
            records.append(RawRecord(None, value=json.loads(value)))
        except ValueError:
            records.append(RawRecord(None, value_raw=value.decode("utf-8", "replace")))
    return quix.count_expected(records)


def render(results: dict[str, Any]) -> str:
    events = results["events"]

    def rate(key: str) -> float:
        return float(events / results[key]) if key in results else float("nan")

    eos = rate("worker_eos_s")
    rows = [
        ("transactional copy (ceiling)", rate("copy_s"), ""),
        ("Quix Streams, exactly-once", rate("quix_s"), ""),
        ("worker, exactly-once", eos, ""),
        ("worker, at-least-once", rate("worker_alo_s"), f"{rate('worker_alo_s') / eos:.2f}× exactly-once"),
        ("worker, exactly-once, 2 processes", rate("worker_eos_2_s"), f"{rate('worker_eos_2_s') / eos:.2f}× 1 process"),
        ("process-file (no Kafka)", rate("process_file_s"), ""),
    ]
    lines = [f"{results['date']}, {results['cores']} cores, {results['memory_gib']} GiB; {events:,} events in "
             f"{results['raw_messages']:,} raw messages, 100k users", "",
             "| run | events/s | note |", "|---|---:|---|"]
    lines += [f"| {name} | {value:,.0f} | {note} |" for name, value, note in rows]
    lat, st = results["latency"], results["state"]
    lines += [
        "",
        f"worker / copy = {eos / rate('copy_s'):.3f}; worker / Quix = {eos / rate('quix_s'):.2f}; "
        f"worker / process-file = {eos / rate('process_file_s'):.2f}",
        f"latency at {lat['offered_events_per_s']:,.0f} events/s (half the maximum): p50 {lat['p50_ms']:.0f} ms, "
        f"p99 {lat['p99_ms']:.0f} ms",
        f"state of {st['users']:,} users × 10 properties: restore {st['records_per_s']:,.0f} records/s "
        f"({st['seconds']:.1f} s); {st['state_bytes_per_user']:,.0f} bytes/user in memory "
        f"({st['topic_bytes_per_user']:,.0f} on the topic); peak RSS {st['peak_rss'] / 2**20:,.0f} MiB",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
