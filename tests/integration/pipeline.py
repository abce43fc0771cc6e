"""Helpers for end-to-end tests: run the worker in a thread, feed the raw topic, read the outputs
back, and compare them with `process-file` on the same raw records."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from worker.core.config import CoreConfig
from worker.loadgen import RawRecord
from worker.offline import process_file
from worker.runtime.metrics import Metrics
from worker.runtime.runner import Worker
from worker.runtime.settings import WorkerSettings, load_settings
from worker.runtime.topics import admin_client, create_topics


def worker_settings(bootstrap: str, prefix: str | None = None, **overrides: Any) -> WorkerSettings:
    """Settings with topic and group names unique to one test."""
    prefix = prefix or f"t{uuid.uuid4().hex[:8]}"
    topics = {name: f"{prefix}.{name}" for name in
              ("raw", "by_user", "enriched", "deltas", "state", "dlq", "registry", "dedupe")}
    base: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "group_id": f"{prefix}.group", "instance_id": "i0", "topics": topics,
        "partitions": 3, "transaction_timeout_ms": 10_000, "metrics_port": 0, "dlq_max_ratio": 1.0,
        "commit_interval_ms": 50,
    }
    base.update(overrides)
    return load_settings(**base)


def create_all_topics(settings: WorkerSettings) -> None:
    create_topics(admin_client(settings), settings)


def produce_raw(settings: WorkerSettings, records: list[RawRecord]) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random",
                         "linger.ms": 5})
    for record in records:
        value = record.value_raw.encode("utf-8", "surrogateescape") if record.value_raw is not None \
            else orjson.dumps(record.value)
        producer.produce(settings.topics.raw, key=None if record.key is None else record.key.encode(),
                         value=value, headers=list(record.headers.items()) or None)
        producer.poll(0)
    assert producer.flush(30) == 0


@dataclass
class Read:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Read]:
    """Every committed record of `topic`, partition by partition, in offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[Read] = []
    done: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(done) < len(partitions) and time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=0.5):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    done.add(message.partition())
                continue
            out.append(Read(message.key(), message.value(), message.partition(), message.offset(),
                            message.timestamp()[1], list(message.headers() or [])))
    consumer.close()
    assert len(done) == len(partitions), f"could not read {topic} to its end"
    return sorted(out, key=lambda r: (r.partition, r.offset))


class WorkerThread:
    """A worker running in a thread of the test process; `stop()` is a clean shutdown."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.worker = Worker(settings, Metrics(CollectorRegistry()))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        self.worker.stop()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error


def wait_for_outputs(settings: WorkerSettings, expected: dict[str, int], timeout_s: float = 120.0) -> None:
    """Wait until the output topics hold the expected number of committed records."""
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = {topic: len(read_topic(settings.bootstrap_servers, topic)) for topic in expected}
        if all(counts[t] >= n for t, n in expected.items()):
            return
        time.sleep(0.5)
    raise AssertionError(f"outputs incomplete after {timeout_s} s: {counts} < {expected}")


@dataclass
class Outputs:
    events: dict[str, list[Any]]  # per user key, in order
    deltas: dict[str, list[Any]]
    dlq: list[Any]  # sorted, without the source (file vs topic)
    state: dict[str, Any]


def offline_outputs(raw: list[Read], workdir: Path, config: CoreConfig) -> Outputs:
    """process-file on the raw topic's records, read back with their broker timestamps."""
    lines = []
    for record in raw:
        line: dict[str, Any] = {"timestamp": record.timestamp}
        if record.key is not None:
            line["key"] = record.key.decode()
        if record.headers:
            line["headers"] = {k: v.decode() for k, v in record.headers}
        try:
            line["value"] = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            line["value_raw"] = (record.value or b"").decode("utf-8", "surrogateescape")
        lines.append(line)
    source = workdir / "raw.jsonl"
    source.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    out = workdir / "out"
    process_file(source, out, config, now_ms=0)

    def load(name: str) -> list[Any]:
        return [orjson.loads(line) for line in (out / name).read_bytes().splitlines() if line]

    return Outputs(
        events=by_user(load("events.jsonl"), "events"),
        deltas=by_user(load("deltas.jsonl"), "deltas"),
        dlq=comparable_dlq(load("dlq.jsonl")),
        state={row["key"]: row["user_properties"] for row in load("state.jsonl")},
    )


def kafka_outputs(settings: WorkerSettings) -> Outputs:
    bootstrap, topics = settings.bootstrap_servers, settings.topics
    state: dict[str, Any] = {}
    for record in read_topic(bootstrap, topics.state):
        key = (record.key or b"").decode()
        if record.value is None:
            state.pop(key, None)
        else:
            state[key] = orjson.loads(record.value)["user_properties"]
    return Outputs(
        events=by_user([orjson.loads(r.value or b"") for r in read_topic(bootstrap, topics.enriched)], "events"),
        deltas=by_user([orjson.loads(r.value or b"") for r in read_topic(bootstrap, topics.deltas)], "deltas"),
        dlq=comparable_dlq([orjson.loads(r.value or b"") for r in read_topic(bootstrap, topics.dlq)]),
        state=state,
    )


def user_of(record: dict[str, Any]) -> str:
    if "user_key" in record:
        return str(record["user_key"])
    who = f"u:{record['user_id']}" if record.get("user_id") is not None else f"d:{record['device_id']}"
    return f"{record['project_id']}/{who}"


def by_user(records: list[Any], _kind: str) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        grouped[user_of(record)].append(record)
    return dict(grouped)


def comparable_dlq(records: list[Any]) -> list[Any]:
    """DLQ records without their source topic, partition and offset, which differ by design."""
    rows = [(r["reason"], r["source"]["index"], r["ingested_at"], base64.b64decode(r["payload_b64"]))
            for r in records]
    return sorted(rows, key=repr)


def count_records(outputs: Outputs) -> dict[str, int]:
    return {
        "events": sum(map(len, outputs.events.values())),
        "deltas": sum(map(len, outputs.deltas.values())),
        "dlq": len(outputs.dlq),
    }
