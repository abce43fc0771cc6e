"""Restore rate and memory per user: a compacted user-state topic of N users × 10 properties is
restored, partition by partition in parallel threads as the worker does on assignment, by a fresh
child process (`python -m benchmarks.state --child ...`), which reports records/s, its RSS before
and after (bytes of state per user) and its peak RSS."""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from dev.loadgen import CITIES, PLANS
from worker.core.limit import ExperimentRegistry
from worker.core.records import state_record
from worker.core.stores import PartitionStores
from worker.runtime.restore import restore_partition
from worker.runtime.settings import WorkerSettings
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


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def child(settings: WorkerSettings) -> dict[str, Any]:
    """In a fresh process: restore every partition in parallel threads; figures as JSON."""
    import gc

    gc.collect()
    before = rss_bytes()
    admin = admin_client(settings)
    codec = codec_for("state", settings.formats.get("state", "json"))
    stores = {p: PartitionStores() for p in range(settings.partitions)}
    registry = ExperimentRegistry(1000)
    results: dict[int, Any] = {}
    started = time.monotonic()
    threads = [threading.Thread(target=lambda p=p: results.__setitem__(
        p, restore_partition(settings, admin, p, stores[p], registry, codec))) for p in range(settings.partitions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    gc.collect()
    after = rss_bytes()
    users = sum(len(s.state) for s in stores.values())
    records = sum(r.state_records + r.dedupe_records for r in results.values())
    return {"users": users, "records": records, "seconds": seconds, "records_per_s": records / seconds,
            "rss_before": before, "rss_after": after, "state_bytes_per_user": (after - before) / max(users, 1),
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def measure(settings: WorkerSettings, users: int) -> dict[str, Any]:
    from worker.runtime.topics import create_topics

    create_topics(admin_client(settings), settings)
    started = time.monotonic()
    topic_bytes = produce_state(settings, users)
    produce_s = time.monotonic() - started
    command = [sys.executable, "-m", "benchmarks.state", "--child", "--settings", settings.model_dump_json()]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1800).stdout
    figures: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    figures.update({"topic_bytes_per_user": topic_bytes / users, "produce_s": produce_s})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--settings", required=True)
    args = parser.parse_args()
    settings = WorkerSettings.model_validate_json(args.settings)
    print(json.dumps(child(settings)))


if __name__ == "__main__":
    main()
