"""`make run`: the real worker, as a separate process, on the local broker with a demo stream.

Creates a fresh set of topics, starts `experiment-worker run`, feeds a generated stream with some
bad input, waits for the outputs, stops the worker with SIGTERM and prints what came out, checked
against `process-file` on the same raw records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from dev.children import free_ports
from dev.files import RUN_DIR
from dev.kafka import recorded_broker
from dev.loadgen import StreamGenerator
from dev.verify import (
    Outputs,
    count_records,
    expected_counts,
    kafka_outputs,
    offline_outputs,
    produce_raw,
    read_topic,
    wait_for_outputs,
)
from dev.workers import settings_for, worker_command
from worker.core.experiment_health import FlagReport
from worker.experiment_report import report_lines, state_reports
from worker.runtime.experiment_ops import experiment_states
from worker.runtime.settings import WorkerSettings
from worker.runtime.topics import admin_client, create_topics

DEMO_EVENTS = 5000
LOG = RUN_DIR / "demo-worker.log"
DEMO_FLAGS = Path(__file__).resolve().parents[1] / "examples" / "flags.json"  # issue 17: experiment health


def bootstrap_address() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    broker = recorded_broker()
    if broker is None:
        sys.exit("demo: no local broker is running: run `make kafka-up` first")
    return broker.bootstrap


def wait_ready(port: int, worker: subprocess.Popen[bytes], timeout_s: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if worker.poll() is not None:
            sys.exit(f"demo: the worker exited with status {worker.returncode}; see {LOG}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"demo: the worker did not become ready in time; see {LOG}")


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def main() -> int:
    bootstrap = bootstrap_address()
    run_id = f"demo-{int(time.time())}"
    port = free_ports(1)[0]
    settings = settings_for(bootstrap, run_id, instance_id="demo", partitions=3, metrics_port=port,
                            flags_file=str(DEMO_FLAGS))
    created = create_topics(admin_client(settings), settings)
    print(f"experiment-worker demo: broker {bootstrap}, {len(created)} topics {run_id}.*")
    LOG.parent.mkdir(exist_ok=True)
    with LOG.open("wb") as log:
        worker = subprocess.Popen(worker_command(settings), stdout=log, stderr=log)
    try:
        print(f"  worker started (pid {worker.pid}), ready after {wait_ready(port, worker):.1f} s "
              f"(metrics on http://127.0.0.1:{port}/metrics)")
        records = list(StreamGenerator(seed=1, users=300, bad_share=0.03).records(DEMO_EVENTS))
        started = time.monotonic()
        produce_raw(settings, records)
        raw = read_topic(bootstrap, settings.topics.raw)
        expected = offline_outputs(raw, Path(tempfile.mkdtemp(prefix="demo-")), settings.core_config())
        wait_for_outputs(settings, expected_counts(settings, expected))
        elapsed = time.monotonic() - started
        metrics = scrape(port)
    finally:
        worker.send_signal(signal.SIGTERM)
        status = worker.wait(60)
    got = kafka_outputs(settings)
    print_summary(raw, got, expected, metrics, elapsed, status)
    print("\n" + "\n".join(experiment_report(settings, metrics)))
    print("\nThe broker keeps running for the next command; `make kafka-down` stops it.")
    return 0 if same(got, expected) and status == 0 else 1


def same(got: Outputs, expected: Outputs) -> bool:
    return (got.events, got.deltas, got.dlq, got.state) == (expected.events, expected.deltas, expected.dlq,
                                                            expected.state)


def metric(metrics: dict[str, float], prefix: str) -> int:
    return int(sum(value for name, value in metrics.items() if name.startswith(prefix)))


def print_summary(raw: list[Any], got: Outputs, expected: Outputs, metrics: dict[str, float], elapsed: float,
                  status: int) -> None:
    counts = count_records(got)
    reasons = Counter(row[0] for row in got.dlq)
    print(f"  {len(raw):,} raw messages holding {DEMO_EVENTS:,} events, processed in {elapsed:.1f} s")
    print(f"  enriched events   {counts['events']:>7,}")
    print(f"  property deltas   {counts['deltas']:>7,}")
    print(f"  users in state    {len(got.state):>7,}  (compacted user-state topic)")
    print(f"  DLQ records       {counts['dlq']:>7,}  " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()))
    duplicates = metric(metrics, "experiment_worker_dedupe_dropped_total")
    unset = metric(metrics, "experiment_worker_unset_exposures_total")
    print(f"  dropped           {duplicates:>7,} duplicate insert_ids, {unset:,} unset exposures (not persisted)")
    committed = metric(metrics, 'experiment_worker_transactions_total{outcome="committed"')
    print(f"  transactions      {committed:>7,} committed (outputs + state + offsets, exactly-once)")
    verdict = "identical" if same(got, expected) else "DIFFERENT (a bug: please report it)"
    print(f"  Kafka path vs process-file on the same raw records: {verdict} (events, deltas, DLQ, state)")
    print(f"  worker stopped on SIGTERM with exit status {status}")
    print("\nA few enriched events:")
    wanted = ["[Experiment] Exposure", "[Experiment] Assignment", "ordinary"]
    for user_events in got.events.values():
        for event in user_events:
            kind = event["event_type"] if event["event_type"].startswith("[Experiment]") else "ordinary"
            if kind in wanted and len(event["user_properties"]) > 1:
                wanted.remove(kind)
                shown = {name: event[name] for name in ("event_type", "user_id", "insert_id", "event_properties",
                                                        "user_properties", "billable") if name in event}
                print("  " + orjson.dumps(shown).decode()[:220])


def experiment_report(settings: WorkerSettings, metrics: dict[str, float]) -> list[str]:
    """`experiments report` on the demo's user-state topic, with the event counts the worker's
    metrics hold (they are not in the state)."""
    flags = settings.flags()
    reports = state_reports(flags, experiment_states(settings, flags))

    def counted(name: str, report: FlagReport) -> int:
        labels = (f'project="{report.flag.project}"', f'flag="{report.flag.key}"')  # in any order
        prefix = f"experiment_worker_{name}_total{{"
        return int(sum(value for series, value in metrics.items()
                       if series.startswith(prefix) and all(label in series for label in labels)))

    return report_lines([replace(report, switches=counted("variant_switches", report),
                                 custom_exposures=counted("custom_exposures", report),
                                 early_exposures=counted("exposure_before_property", report))
                         for report in reports])


if __name__ == "__main__":
    sys.exit(main())
