"""`make bench`: every figure of issue 9 in one run on the local broker, one table, and a JSON
result file (bench-results.json).

Same broker, same input (dev/loadgen.py: 70% ordinary events with user-property
operations, 20% exposures, 10% assignments, 100k Zipf-skewed users, envelopes of 1–50 events,
a fixed seed; BENCH_EVENTS events, default 1,000,000), each system on a raw topic of its own
holding the same messages:
  copy          a plain confluent-kafka transactional consume→produce copy (the Python ceiling)
  Quix Streams  the worker's job in Quix, exactly-once, RocksDB state (benchmarks/quix.py)
  worker        one process, exactly-once (stores on disk, the default), then without the by-user
                shortcut (every event through the by-user topic), with memory stores,
                at-least-once; then two processes (scaling)
  process-file  the same records without Kafka: in this process, and as the real command beside a
                bare read/decode/re-encode/write baseline (benchmarks/process_file.py) on the same file
then latency at half the worker's measured maximum, and the restore rate, memory, disk and restart of
a BENCH_STATE_USERS-user state topic (× 10 properties; default 1,000,000 users, or 200,000 when
BENCH_EVENTS is under 1,000,000: the quick form `BENCH_EVENTS=200000 make bench`).

Per worker run, CPU over the timed window (benchmarks/cpu.py): each worker process's, the broker
JVM's, and the machine's idle cores; the load generator's CPU for each raw topic it fills. After
the exactly-once 1-process run, the committed records of each output topic per input event.
Figures are printed as ratios against the baselines run here, never compared with constants; the
targets of the issues are printed beside them (disk/memory ≥ 0.85, events per worker CPU-second
of 2 processes within 10% of 1, process-file ≤ 4× its baseline).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks import cpu, e2e, latency, quix, state
from benchmarks import process_file as pf
from dev.kafka import recorded_broker

QUIX_SETUP_HINT = "`make bench-setup` (quixstreams in .venv-bench) did not succeed"
QUICK_STATE_USERS = 200_000  # the state size when BENCH_EVENTS asks for a quick run


def main() -> int:
    events = int(os.environ.get("BENCH_EVENTS", "1000000"))
    state_users = int(os.environ.get("BENCH_STATE_USERS") or (1_000_000 if events >= 1_000_000 else QUICK_STATE_USERS))
    recorded = recorded_broker()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (recorded.bootstrap if recorded else None)
    if not bootstrap:
        print("make bench: no broker (`make kafka-up` starts one)", file=sys.stderr)
        return 2
    cores, memory = os.cpu_count(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"make bench: {events:,} events, {state_users:,} state users, {cores} cores, {memory:.0f} GiB, "
          f"Python {platform.python_version()}, broker {bootstrap}", flush=True)
    work = e2e.workdir()
    started = time.monotonic()
    workload = e2e.Workload.generate(events, 100_000, work)
    print(f"  workload: {len(workload.messages):,} raw messages, {workload.events:,} events "
          f"({time.monotonic() - started:.0f} s)", flush=True)
    run = Run(bootstrap, workload, work)
    if run.broker_pid is None:
        print("  broker CPU not measured: no single local kafka.Kafka process found")
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cores": cores, "memory_gib": round(memory),
                               "events": workload.events, "raw_messages": len(workload.messages)}
    offline(run, results)
    baselines(run, results)
    workers(run, results)
    latency_run(run, results)
    results["state"] = state.measure(run.settings("state"), state_users)
    st = results["state"]
    print(f"  restore: {st['records']:,} records in {st['seconds']:.1f} s (memory), {st['disk']['seconds']:.1f} s "
          f"(disk); restart from disk ready in {st['restart_ready_s']:.1f} s", flush=True)
    results["loadgen_cpu_s"] = run.loadgen_cpu_s
    table = render(results)
    print("\n" + table)
    Path("bench-results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("results written to bench-results.json")
    return 0


class Run:
    def __init__(self, bootstrap: str, workload: e2e.Workload, work: Path) -> None:
        self.bootstrap, self.workload, self.work = bootstrap, workload, work
        self.tag = uuid.uuid4().hex[:6]
        self.broker_pid = cpu.broker_pid(bootstrap)
        self.loadgen_cpu_s: dict[str, float] = {}  # per raw topic filled
        self.timeout_s = 600 + workload.events / 1000

    def settings(self, name: str, **overrides: Any) -> Any:
        return e2e.settings_for(self.bootstrap, f"bench{self.tag}-{name}", **overrides)

    def fresh(self, name: str, **overrides: Any) -> Any:
        """Settings on new topics whose raw topic holds the workload."""
        settings = self.settings(name, **overrides)
        self.loadgen_cpu_s[name] = e2e.new_raw_topic(settings, self.workload)
        return settings

    def worker(self, name: str, processes: int, what: str, **overrides: Any) -> tuple[Any, dict[str, Any]]:
        """A worker run on fresh topics: its settings, and its seconds and CPU figures."""
        settings = self.fresh(name, **overrides)
        try:
            done = e2e.worker_processes_run(settings, processes, self.timeout_s, self.work, self.broker_pid)
        finally:
            shutil.rmtree(settings.state_dir, ignore_errors=True)  # the stores on disk (dev.workers.STATE_ROOT)
        figures = done.figures()
        cpu_s = figures["worker_cpu_s"]
        self.say(what, figures["seconds"], f"; {self.workload.events / cpu_s:,.0f} events/worker CPU-s, "
                 f"{figures['idle_cores']:.2f} cores idle")
        return settings, figures

    def say(self, what: str, seconds: float, more: str = "") -> None:
        print(f"  {what:<36} {self.workload.events / seconds:>10,.0f} events/s ({seconds:.1f} s){more}", flush=True)


def offline(run: Run, results: dict[str, Any]) -> None:
    """process-file in this process; then the real command and its bare baseline on the same file."""
    results["process_file_s"], counts = e2e.process_file_run(run.workload, run.settings("pf"), run.work)
    results["users_in_process_file_state"] = counts["users"]
    run.say("process-file", results["process_file_s"])
    source, command_out, baseline_out = run.workload.path, run.work / "pf-command", run.work / "pf-baseline"
    results["process_file_command_s"], results["process_file_command_peak_rss"], _ = pf.run_child(
        pf.process_file_command(source, command_out))
    results["process_file_baseline_s"], _, _ = pf.run_child(pf.baseline_command(source, baseline_out))
    results["process_file_over_baseline"] = results["process_file_command_s"] / results["process_file_baseline_s"]
    shutil.rmtree(command_out, ignore_errors=True)
    baseline_out.unlink(missing_ok=True)
    run.say("process-file command", results["process_file_command_s"],
            f"; {results['process_file_over_baseline']:.2f}× its baseline's time")


def baselines(run: Run, results: dict[str, Any]) -> None:
    copy = run.fresh("copy")
    # The first transactional client of a fresh broker waits for its transaction coordinator to
    # load, on a JVM not warmed up yet (one run: 147,877 events/s against 275,397 in the next run):
    # an untimed copy of the same topic first, so the timed runs all meet a warm broker.
    warm_up_s = e2e.copy_baseline(copy, len(run.workload.messages), ".warm-up")
    print(f"  (warm-up copy, not counted: {run.workload.events / warm_up_s:,.0f} events/s)", flush=True)
    results["copy_s"] = e2e.copy_baseline(copy, len(run.workload.messages))
    run.say("transactional copy", results["copy_s"])
    if quix.quix_available():
        qs = run.fresh("quix")
        expected = quix_expected(run.workload)
        results["quix_s"] = quix.quix_run(run.bootstrap, qs.topics.raw, qs.partitions, expected, run.work,
                                           compression=e2e.COMPRESSION)
        run.say("Quix Streams, exactly-once", results["quix_s"])
    else:
        print(f"  Quix Streams skipped: {QUIX_SETUP_HINT}")


def workers(run: Run, results: dict[str, Any]) -> None:
    """The worker runs; the records each output topic got per input event in the first."""
    events, figures = run.workload.events, {}
    settings, figures["eos"] = run.worker("eos", 1, "worker, exactly-once, 1 process")
    results["records_per_event"] = records_per_event(settings, events)
    # Every event through the by-user topic, as Quix Streams' job repartitions every event: the
    # by-user shortcut's share (runtime/shortcut.py), and the like-for-like comparison.
    settings, figures["hop"] = run.worker("hop", 1, "worker, exactly-once, no by-user shortcut",
                                          by_user_shortcut=False)
    results["records_per_event_hop"] = records_per_event(settings, events)
    _, figures["mem"] = run.worker("mem", 1, "worker, exactly-once, memory stores", state_store="memory")
    _, figures["alo"] = run.worker("alo", 1, "worker, at-least-once, 1 process", guarantee="at-least-once")
    settings, figures["eos2"] = run.worker("eos2", 2, "worker, exactly-once, 2 processes")
    through = records_per_event(settings, events)["by-user"]  # each process owns half the by-user partitions
    for name, key in (("eos", "worker_eos_s"), ("hop", "worker_hop_s"), ("mem", "worker_mem_s"),
                      ("alo", "worker_alo_s"), ("eos2", "worker_eos_2_s")):
        results[key] = figures[name]["seconds"]
    results["cpu"] = figures
    one, two, hop = (events / figures[name]["worker_cpu_s"] for name in ("eos", "eos2", "hop"))
    # Two processes send about half their events through the by-user topic, one process none: the
    # same mix done by one process costs, per event, its share of each 1-process run's CPU.
    mix = 1 / ((1 - through) / one + through / hop)
    results["events_per_worker_cpu_s"] = {"1_process": one, "2_processes": two, "ratio_2_over_1": two / one,
                                          "2_processes_through_by_user": through, "1_process_same_mix": mix,
                                          "ratio_2_over_same_mix": two / mix}
    results["disk_over_memory"] = results["worker_mem_s"] / results["worker_eos_s"]


def records_per_event(settings: Any, events: int) -> dict[str, float]:
    """The committed records of each output topic of a worker run, per input event."""
    return {topic: count / events for topic, count in e2e.committed_records(settings).items()}


def latency_run(run: Run, results: dict[str, Any]) -> None:
    """Latency at half the worker's maximum, with the bench process's CPU meanwhile (the offering
    producer and the read_committed reader together: latency.py runs both here)."""
    half = run.workload.events / results["worker_eos_s"] / 2
    settings = run.settings("lat")
    try:
        results["latency"] = lat = latency.measure(settings, half, 30.0, run.work)
    except latency.WorkerStuck as exc:  # the rest of the bench still runs; the table says so
        results["latency_failed"] = str(exc)
        print(f"  latency at {half:,.0f} events/s: FAILED: {exc}", flush=True)
        return
    finally:
        shutil.rmtree(settings.state_dir, ignore_errors=True)
    print(f"  latency at {half:,.0f} events/s: p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms "
          f"({lat['events']:,} events; the worker was ready {lat['ready_s']:.1f} s after its start)", flush=True)


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
    lines = [f"{results['date']}, {results['cores']} cores, {results['memory_gib']} GiB; {events:,} events in "
             f"{results['raw_messages']:,} raw messages, 100k users", "",
             "| run | events/s | events/worker CPU-s | broker CPU-s | idle cores | note |",
             "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {name} | {'–' if math.isnan(value) else f'{value:,.0f}'} | {' | '.join(cpu_cells)} | {note} |"
              for name, value, cpu_cells, note in table_rows(results)]
    return "\n".join([*lines, "", *summary_lines(results)])


def table_rows(results: dict[str, Any]) -> list[tuple[str, float, list[str], str]]:
    events, figures = results["events"], results["cpu"]

    def rate(key: str) -> float:
        return float(events / results[key]) if key in results else float("nan")

    def cells(name: str) -> list[str]:
        run = figures[name]
        broker = "" if run["broker_cpu_s"] is None else f"{run['broker_cpu_s']:.1f}"
        return [f"{events / run['worker_cpu_s']:,.0f}", broker, f"{run['idle_cores']:.2f}"]

    eos, none = rate("worker_eos_s"), ["", "", ""]
    per_cpu = results["events_per_worker_cpu_s"]["ratio_2_over_1"]
    return [
        ("transactional copy (ceiling)", rate("copy_s"), none, ""),
        ("Quix Streams, exactly-once", rate("quix_s"), none, ""),
        ("worker, exactly-once (disk stores)", eos, cells("eos"), ""),
        ("worker, exactly-once, every event through the by-user topic", rate("worker_hop_s"), cells("hop"),
         f"the shortcut gives {eos / rate('worker_hop_s'):.2f}×"),
        ("worker, exactly-once, memory stores", rate("worker_mem_s"), cells("mem"),
         f"disk / memory = {results['disk_over_memory']:.2f} (target ≥ 0.85)"),
        ("worker, at-least-once", rate("worker_alo_s"), cells("alo"),
         f"{rate('worker_alo_s') / eos:.2f}× exactly-once"),
        ("worker, exactly-once, 2 processes", rate("worker_eos_2_s"), cells("eos2"),
         f"{rate('worker_eos_2_s') / eos:.2f}× 1 process; per CPU-s {per_cpu:.2f}× 1 process (target 0.90–1.10), "
         f"{results['events_per_worker_cpu_s']['ratio_2_over_same_mix']:.2f}× one process doing the same mix "
         f"({results['events_per_worker_cpu_s']['2_processes_through_by_user']:.0%} of events through the topic)"),
        ("process-file (in process, no Kafka)", rate("process_file_s"), none, ""),
        ("process-file command", rate("process_file_command_s"), none,
         f"{results['process_file_over_baseline']:.2f}× the baseline's time (target ≤ 4)"),
        ("read/decode/re-encode/write baseline", rate("process_file_baseline_s"), none, ""),
    ]


def summary_lines(results: dict[str, Any]) -> list[str]:
    events, lat, st = results["events"], results.get("latency"), results["state"]
    eos, loadgen = events / results["worker_eos_s"], results["loadgen_cpu_s"]
    hop = events / results["worker_hop_s"]
    quix = (f"{eos * results['quix_s'] / events:.2f} ({hop * results['quix_s'] / events:.2f} without the by-user "
            "shortcut)") if "quix_s" in results else "n/a"
    return [
        f"worker / copy = {eos * results['copy_s'] / events:.3f}; worker / Quix = {quix}; "
        f"worker / process-file = {eos * results['process_file_s'] / events:.2f}",
        *(f"records written per input event (exactly-once, 1 process{what}): "
          + ", ".join(f"{topic} {share:.4f}" for topic, share in results[key].items())
          + f"; total {sum(results[key].values()):.4f}"
          for key, what in (("records_per_event", ""), ("records_per_event_hop", ", no by-user shortcut"))),
        f"load generator: {events * len(loadgen) / sum(loadgen.values()):,.0f} events/CPU-s producing the raw topics",
        *latency_lines(lat, results.get("latency_failed", "")),
        *state_lines(st),
    ]


def latency_lines(lat: dict[str, Any] | None, failed: str) -> list[str]:
    if lat is None:
        return [f"latency: FAILED ({failed})"]
    return [f"latency bench process (offer + reader): {lat['bench_cpu_s']:.1f} CPU-s in {lat['bench_wall_s']:.0f} s",
            f"latency at {lat['offered_events_per_s']:,.0f} events/s (half the maximum): p50 {lat['p50_ms']:.0f} ms, "
            f"p99 {lat['p99_ms']:.0f} ms"]


def state_lines(st: dict[str, Any]) -> list[str]:
    disk, restart = st["disk"], st["restart"]
    return [
        f"state of {st['users']:,} users × 10 properties ({st['topic_bytes_per_user']:,.0f} bytes/user on the topic): "
        f"memory stores restore {st['records_per_s']:,.0f} records/s ({st['seconds']:.1f} s), "
        f"{st['state_bytes_per_user']:,.0f} bytes/user in memory, peak RSS {st['peak_rss'] / 2**20:,.0f} MiB",
        f"  disk stores restore {disk['records_per_s']:,.0f} records/s ({disk['seconds']:.1f} s), "
        f"{st['disk_bytes_per_user']:,.0f} bytes/user on disk, {disk['state_bytes_per_user']:,.0f} bytes/user "
        f"in memory, peak RSS {disk['peak_rss'] / 2**20:,.0f} MiB; restart from the disk stores ready in "
        f"{st['restart_ready_s']:.2f} s ({restart['records']:,} records read, from checkpoint: "
        f"{restart['from_checkpoint']})",
    ]


if __name__ == "__main__":
    sys.exit(main())
