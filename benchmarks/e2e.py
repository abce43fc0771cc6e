"""End-to-end throughput on the real broker, as a ratio against a plain transactional copy.

Not a test: `python -m benchmarks.e2e [--events N]`. In one process, on one broker, on the same
raw topic: (1) a plain confluent-kafka transactional consume→produce copy of the raw topic (the
ceiling for Python on this transport), (2) the worker, exactly-once, (3) process-file without
Kafka. Prints events/s for each and the ratios.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from worker.loadgen import StreamGenerator
from worker.offline import process_file
from worker.runtime.local_broker import recorded_broker, start_broker
from worker.runtime.metrics import Metrics
from worker.runtime.runner import Worker
from worker.runtime.settings import WorkerSettings, load_settings
from worker.runtime.topics import admin_client, create_topics
from worker.verify import produce_raw


def settings_for(bootstrap: str, prefix: str, **overrides: object) -> WorkerSettings:
    topics = {name: f"{prefix}.{name}" for name in
              ("raw", "by_user", "enriched", "deltas", "state", "dlq", "registry", "dedupe")}
    return load_settings(bootstrap_servers=bootstrap, group_id=f"{prefix}.worker", instance_id="bench",
                         topics=topics, partitions=3, metrics_port=0, dlq_max_ratio=1.0, **overrides)


def copy_baseline(settings: WorkerSettings, messages: int) -> float:
    """Seconds for a transactional consume→produce copy of every raw message."""
    out = settings.topics.raw + ".copy"
    admin = admin_client(settings)
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    for future in admin.create_topics([NewTopic(out, settings.partitions, 1)]).values():
        future.result()
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"copy-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "transactional.id": f"copy-{uuid.uuid4()}",
                         "linger.ms": 5})
    producer.init_transactions(30)
    consumer.subscribe([settings.topics.raw])
    copied, started, batch_started, in_txn = 0, time.monotonic(), time.monotonic(), False
    while copied < messages:
        for message in consumer.consume(1000, timeout=0.05):
            if message.error():
                continue
            if not in_txn:
                producer.begin_transaction()
                in_txn, batch_started = True, time.monotonic()
            producer.produce(out, key=message.key(), value=message.value())
            copied += 1
        if in_txn and (time.monotonic() - batch_started >= 0.1 or copied >= messages):
            producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                 consumer.consumer_group_metadata())
            producer.commit_transaction()
            in_txn = False
    elapsed = time.monotonic() - started
    consumer.close()
    return elapsed


def worker_run(settings: WorkerSettings, expected_events: int) -> float:
    """Seconds until the worker has produced every expected enriched event and committed."""
    registry = CollectorRegistry()
    worker = Worker(settings, Metrics(registry))
    thread = threading.Thread(target=worker.run, daemon=True)
    started = time.monotonic()
    thread.start()
    labels = {"topic": settings.topics.enriched}
    while (registry.get_sample_value("experiment_worker_records_out_total", labels) or 0) < expected_events:
        time.sleep(0.05)
    while worker.batch.messages:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    worker.stop()
    thread.join(60)
    return elapsed


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args(argv)
    broker = None
    recorded = recorded_broker()  # `make kafka-up`'s broker, when there is one
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (recorded.bootstrap if recorded else None)
    if not bootstrap:
        broker = start_broker()
        bootstrap = broker.bootstrap
    try:
        settings = settings_for(bootstrap, f"bench{uuid.uuid4().hex[:6]}")
        create_topics(admin_client(settings), settings)
        records = list(StreamGenerator(seed=42, users=args.users, bad_share=0.001).records(args.events))
        produce_raw(settings, records)
        work = Path(tempfile.mkdtemp(prefix="bench-"))
        with (work / "raw.jsonl").open("wb") as lines:
            for record in records:
                lines.write(orjson.dumps(record.to_line(1_763_978_400_000)) + b"\n")
        started = time.monotonic()
        summary = process_file(work / "raw.jsonl", work / "out", settings.core_config(), now_ms=0)
        offline_s = time.monotonic() - started
        copy_s = copy_baseline(settings, len(records))
        worker_s = worker_run(settings, summary.events)
        rate = {name: args.events / seconds for name, seconds in
                (("copy", copy_s), ("worker", worker_s), ("offline", offline_s))}
        print(f"{args.events:,} events in {len(records):,} raw messages, {args.users:,} users, 3 partitions")
        print(f"  transactional copy raw->out  {rate['copy']:>10,.0f} events/s  ({copy_s:.1f} s)")
        print(f"  worker, exactly-once         {rate['worker']:>10,.0f} events/s  ({worker_s:.1f} s)")
        print(f"  process-file (no Kafka)      {rate['offline']:>10,.0f} events/s  ({offline_s:.1f} s)")
        print(f"  worker / copy = {rate['worker'] / rate['copy']:.2f}   worker / process-file = "
              f"{rate['worker'] / rate['offline']:.2f}")
        return {"events": args.events, "copy_events_per_s": rate["copy"], "worker_events_per_s": rate["worker"],
                "process_file_events_per_s": rate["offline"], "worker_over_copy": rate["worker"] / rate["copy"],
                "worker_over_process_file": rate["worker"] / rate["offline"]}
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
