"""Restore rate, memory per user, and a restart from the stores on disk: a compacted user-state
topic of N users × 10 properties is restored, partition by partition in parallel threads as the
worker does on assignment (worker.runtime.partitions), by fresh child processes
(`python -m benchmarks.state --child ...`):

- `memory`: the whole topic into memory stores; records/s, RSS before and after (bytes/user);
- `disk`: the whole topic into RocksDB stores under a fresh state_dir; records/s, RSS;
- `restart`: the same state_dir again, as an instance restarted under its id finds it: stores
  opened, checkpoints checked against the changelogs, only the tail read; `restart_ready_s` is the
  time from the first store opened to every partition ready.

`python -m benchmarks.state --users 10000000 --bootstrap HOST:PORT` measures one size on its own
(the 10M-user RSS figure of the README; not part of the default `make bench`).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from dev.loadgen import CITIES, PLANS
from worker.core.limit import ExperimentRegistry
from worker.core.records import state_record
from worker.runtime.settings import StateStore, WorkerSettings
from worker.runtime.topics import admin_client
from worker.serde import codec_for


def properties(chance: random.Random, user: int) -> dict[str, Any]:
    """Ten properties of the kinds the bench stream writes: strings, numbers, a list, experiments."""
    return {
        "plan": chance.choice(PLANS), "city": chance.choice(CITIES), "purchases": chance.randint(0, 40),
        "revenue": round(chance.uniform(0, 500), 2), "level": chance.randint(1, 50),
        "first_seen": 1_763_978_400_000 - chance.randint(0, 10**9), "tags": [chance.choice(PLANS)],
        "visited": [chance.choice(CITIES), chance.choice(CITIES)],
        f"[Experiment] flag-{user % 30:02d}": chance.choice(("control", "treatment")),
        "[Experiment] flag-checkout": chance.choice(("on", "off")),
    }


def produce_state(settings: WorkerSettings, users: int) -> int:
    """Write `users` state records (keyed by user key, partitioned like the worker's) and return their bytes."""
    codec = codec_for("state", settings.formats.get("state", "json"))
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random",
                         "linger.ms": 20, "batch.size": 1 << 20, "compression.type": "lz4"})
    chance, written = random.Random(11), 0
    for user in range(users):
        key = f"default/u:user-{user:07d}"
        value = codec.encode(state_record("default", key, properties(chance, user), 1_763_978_400_000))
        written += len(value)
        while True:
            try:
                producer.produce(settings.topics.state, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0
    return written


def rss_bytes(field: str = "VmRSS") -> int:
    """This process's resident set (VmRSS), or its peak (VmHWM: unlike ru_maxrss, not inherited
    from the parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def child(settings: WorkerSettings) -> dict[str, Any]:
    """In a fresh process: restore every partition in parallel threads, the worker's way; figures as JSON."""
    import gc

    from prometheus_client import CollectorRegistry

    from worker.runtime.clients import KafkaClients, SharedAdmin
    from worker.runtime.metrics import Metrics
    from worker.runtime.partitions import PartitionManager, Restoring

    gc.collect()
    before = rss_bytes()
    manager = PartitionManager(settings, KafkaClients(settings), Metrics(CollectorRegistry()),
                               ExperimentRegistry(settings.experiment_property_limit))
    jobs = [Restoring(p, settings.experiment_property_limit) for p in range(settings.partitions)]
    started = time.monotonic()
    clients = SharedAdmin(manager.clients)  # as PartitionManager.assign shares one among its restores
    threads = [threading.Thread(target=manager.restore, args=(job, clients)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    errors = [str(job.error) for job in jobs if job.error is not None]
    if errors:
        raise RuntimeError("; ".join(errors))
    gc.collect()
    after = rss_bytes()
    users = sum(job.stores.users for job in jobs if job.stores is not None)
    records = sum(job.result.state_records + job.result.dedupe_records for job in jobs if job.result is not None)
    from_checkpoint = all(job.result is not None and job.result.from_checkpoint for job in jobs)
    for job in jobs:
        if job.stores is not None:
            job.stores.close()
    return {"users": users, "records": records, "seconds": seconds, "records_per_s": records / max(seconds, 1e-9),
            "from_checkpoint": from_checkpoint, "rss_before": before, "rss_after": after,
            "state_bytes_per_user": (after - before) / max(users, 1),
            "peak_rss": rss_bytes("VmHWM")}


def run_child(settings: WorkerSettings) -> dict[str, Any]:
    command = [sys.executable, "-X", "faulthandler", "-m", "benchmarks.state", "--child",
               "--settings", settings.model_dump_json()]
    child_run = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if child_run.returncode != 0:
        tail = "\n".join(line for line in child_run.stderr.splitlines() if not line.startswith("%"))[-4000:]
        raise RuntimeError(f"the restore child ({settings.state_store.value}) exited with {child_run.returncode}:\n"
                           f"{tail}")
    figures: dict[str, Any] = json.loads(child_run.stdout.strip().splitlines()[-1])
    return figures


def measure(settings: WorkerSettings, users: int) -> dict[str, Any]:
    """The memory restore (the headline figures), then the disk restore and the restart from it."""
    from worker.runtime.topics import create_topics

    create_topics(admin_client(settings), settings)
    started = time.monotonic()
    topic_bytes = produce_state(settings, users)
    produce_s = time.monotonic() - started
    figures = run_child(settings.model_copy(update={"state_store": StateStore.MEMORY}))
    state_dir = Path(tempfile.mkdtemp(prefix="bench-state-"))
    try:
        on_disk = settings.model_copy(update={"state_store": StateStore.DISK, "state_dir": state_dir})
        disk = run_child(on_disk)
        restart = run_child(on_disk)
        disk_bytes = sum(f.stat().st_size for f in state_dir.rglob("*") if f.is_file())
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    figures.update({"topic_bytes_per_user": topic_bytes / users, "produce_s": produce_s,
                    "disk": disk, "restart": restart, "restart_ready_s": restart["seconds"],
                    "disk_bytes_per_user": disk_bytes / max(users, 1)})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--settings", help="the child's settings (JSON)")
    parser.add_argument("--users", type=int, default=10_000_000, help="standalone: users to write and restore")
    parser.add_argument("--bootstrap", help="standalone: the broker")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--store", choices=["memory", "disk"], default="disk")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(WorkerSettings.model_validate_json(args.settings))))
        return
    from dev.workers import settings_for

    settings = settings_for(args.bootstrap, f"state{uuid.uuid4().hex[:6]}", partitions=args.partitions,
                            state_store=args.store)
    from worker.runtime.topics import create_topics

    create_topics(admin_client(settings), settings)
    started = time.monotonic()
    produce_state(settings, args.users)
    print(f"wrote {args.users:,} users in {time.monotonic() - started:.0f} s", flush=True)
    figures = run_child(settings)
    print(json.dumps(figures, indent=2))
    print(f"{args.store}: {figures['users']:,} users restored at {figures['records_per_s']:,.0f} records/s; "
          f"RSS {figures['rss_after'] / 2**30:.2f} GiB after, peak {figures['peak_rss'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
