"""End-to-end throughput on the real broker, every system on the same raw topic in one run.

(1) a plain confluent-kafka transactional consume→produce copy of the raw topic (the ceiling for
Python on this transport), (2) Quix Streams doing the worker's job (benchmarks/quix.py, when
`make bench-setup` could install it), (3) the worker (`experiment-worker run` processes),
exactly-once and at-least-once, then as 1 and as 2 processes in one group (scaling), (4)
process-file on the same records without Kafka. A worker run is done when its group has committed the whole
raw topic and the whole by-user topic (read_committed ends), so nothing depends on output counts.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from benchmarks.cpu import Window, process_cpu_s
from dev.kafka import recorded_broker
from dev.loadgen import START_MS, StreamGenerator, encode_line, events_in
from dev.workers import settings_for as unique_settings
from dev.workers import worker_command
from worker.offline import process_file
from worker.runtime.ops import consumer_lag
from worker.runtime.settings import WorkerSettings
from worker.runtime.topics import admin_client, create_topics

PARTITIONS = 6  # 2 processes on 2 cores get 3 each
# Every Kafka writer of the bench compresses its batches alike: the worker (its default), Quix
# Streams' producer and the transactional copy.
COMPRESSION = "lz4"
SUBSCRIBING = "experiment-property registry:"  # the worker's last log line before it subscribes
Headers = list[tuple[str, str | bytes | None]]  # as confluent-kafka's produce() takes them


def settings_for(bootstrap: str, prefix: str, **overrides: Any) -> WorkerSettings:
    """Bench settings. A 1 s heartbeat (the broker's default is 5 s) for every worker run alike: a
    KIP-848 member learns of partitions given to it at its next heartbeat, which would otherwise
    leave the second of 2 processes idle for up to 5 s of a run that lasts tens of seconds."""
    base = {"instance_id": "bench", "partitions": PARTITIONS, "session_timeout_ms": 15_000,
            "heartbeat_interval_ms": 1000, "compression_type": COMPRESSION}
    return unique_settings(bootstrap, prefix, **{**base, **overrides})


@dataclass
class Workload:
    """The bench stream (dev/loadgen.py, unkeyed) as process-file input and as raw Kafka messages."""

    path: Path
    events: int
    messages: list[tuple[bytes, int, Headers]]  # value, timestamp, headers

    @classmethod
    def generate(cls, events: int, users: int, workdir: Path, seed: int = 20_261_124) -> Workload:
        path = workdir / "raw.jsonl"
        total, messages = 0, []
        with path.open("wb") as out:
            for record in StreamGenerator(seed, users, keyed=False).messages():
                if total >= events:
                    break
                out.write(encode_line(record))
                total += events_in(record)
                headers: Headers = [(k, v.encode()) for k, v in record.headers.items()]
                messages.append((record.encoded(), record.timestamp_ms or START_MS, headers))
        return cls(path, total, messages)

    def produce(self, bootstrap: str, topic: str) -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
                             "compression.type": "lz4"})
        for value, timestamp, headers in self.messages:
            while True:
                try:
                    producer.produce(topic, value=value, timestamp=timestamp, headers=headers or None)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        assert producer.flush(120) == 0


def new_raw_topic(settings: WorkerSettings, workload: Workload) -> float:
    """Create the topics and produce the workload into the raw one: the load generator's CPU seconds
    (this process, librdkafka's threads included)."""
    create_topics(admin_client(settings), settings)
    started = time.process_time()
    workload.produce(settings.bootstrap_servers, settings.topics.raw)
    return time.process_time() - started


def copy_baseline(settings: WorkerSettings, messages: int, suffix: str = ".copy") -> float:
    """Seconds for a transactional consume→produce copy of every raw message, to the raw topic's
    name + `suffix` (a new topic)."""
    out = settings.topics.raw + suffix
    admin = admin_client(settings)  # held until the futures are done
    for future in admin.create_topics([NewTopic(out, settings.partitions, 1)]).values():
        future.result()
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"copy-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "transactional.id": f"copy-{uuid.uuid4()}",
                         "linger.ms": 5, "compression.type": COMPRESSION})
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
            producer.produce(out, key=message.key(), value=message.value(), headers=message.headers())
            copied += 1
        if in_txn and (time.monotonic() - batch_started >= 0.1 or copied >= messages):
            producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                 consumer.consumer_group_metadata())
            producer.commit_transaction()
            in_txn = False
    elapsed = time.monotonic() - started
    consumer.close()
    return elapsed


def caught_up(settings: WorkerSettings) -> bool:
    """The group has committed the raw topic to its end, and the by-user topic to its end (up to
    the commit marker after its last record), so every output is committed."""
    rows = consumer_lag(settings, admin_client(settings))
    raw = [row for row in rows if row[0] == settings.topics.raw]
    by_user = [row for row in rows if row[0] == settings.topics.by_user]
    return (bool(raw) and all(row[4] == 0 for row in raw)
            and sum(row[3] for row in by_user) > 0 and all(row[4] <= 1 for row in by_user))


def wait_caught_up(settings: WorkerSettings, timeout_s: float, alive: Any = None) -> float:
    """Seconds until `caught_up`, polling every 0.2 s."""
    started = time.monotonic()
    while not caught_up(settings):
        if time.monotonic() - started > timeout_s or (alive is not None and not alive()):
            raise RuntimeError(f"the worker did not finish within {timeout_s:.0f} s (or died)")
        time.sleep(0.2)
    return time.monotonic() - started


@dataclass
class WorkerRun:
    """One timed worker run: its seconds, and CPU over it (benchmarks/cpu.py): each process's
    `cpu_s` from the moment it was about to subscribe, `broker_cpu_s`, `idle_cores`; `cpu_total_s`
    per process from its start (Python start, topic checks, registry read) to just before it was
    terminated."""

    seconds: float
    cpu: dict[str, Any]
    cpu_total_s: list[float | None]

    def figures(self) -> dict[str, Any]:
        worker_cpu_s = sum(s for s in self.cpu["cpu_s"] if s is not None)
        return {"seconds": self.seconds, "worker_cpu_s": worker_cpu_s, **self.cpu, "cpu_total_s": self.cpu_total_s}


def worker_processes_run(settings: WorkerSettings, processes: int, timeout_s: float, workdir: Path,
                         broker_pid: int | None = None) -> WorkerRun:
    """`processes` worker processes in one group process the whole raw topic: seconds and CPU."""
    children, logs = [], []
    for n in range(processes):
        command = worker_command(settings.model_copy(update={"instance_id": f"p{n}"}))
        logs.append(workdir / f"{settings.group_id}-{n}.log")
        with logs[-1].open("wb") as log:
            children.append(subprocess.Popen(command, stdout=log, stderr=log))
    try:
        # The clock starts when every process is about to subscribe (Python started, topics
        # checked, registry read), as Quix's starts when its Application is about to run.
        subscribing_cpu_s = wait_subscribing(children, logs)
        window = Window.open([child.pid for child in children], broker_pid, subscribing_cpu_s)
        wait_caught_up(settings, timeout_s, lambda: all(child.poll() is None for child in children))
        cpu = window.close()
        total = [process_cpu_s(child.pid) for child in children]
        return WorkerRun(cpu["wall_s"], cpu, total)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(60)


def wait_subscribing(children: list[subprocess.Popen[bytes]], logs: list[Path]) -> list[float | None]:
    """Wait until every process is about to subscribe; each one's CPU seconds at that moment (the
    first may start consuming while the others still start, so its CPU counts from its own)."""
    cpu_s: dict[int, float | None] = {}
    while len(cpu_s) < len(children):
        for n, (child, log) in enumerate(zip(children, logs, strict=True)):
            if n not in cpu_s and SUBSCRIBING in log.read_text(errors="replace"):
                cpu_s[n] = process_cpu_s(child.pid)
        if any(child.poll() is not None for child in children):
            raise RuntimeError(f"a worker exited while starting (see {logs})")
        time.sleep(0.01)
    return [cpu_s[n] for n in range(len(children))]


# The worker's outputs, by the names the bench prints, and their WorkerSettings.topics fields.
OUTPUT_TOPICS = {"by-user": "by_user", "enriched": "enriched", "deltas": "deltas", "user-state": "state",
                 "dedupe": "dedupe", "dlq": "dlq", "registry": "registry"}


def committed_records(settings: WorkerSettings, timeout_s: float = 600.0) -> dict[str, int]:
    """Committed records per output topic: a read_committed consumer from the start of every
    partition to its end (partition EOF comes at the last stable offset). Offsets also count the
    transaction markers, so the watermarks alone would overcount."""
    names = {getattr(settings.topics, field): name for name, field in OUTPUT_TOPICS.items()}
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"count-{uuid.uuid4().hex[:6]}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(timeout=30)
        assignment = [TopicPartition(topic, p, OFFSET_BEGINNING) for topic in names
                      for p in metadata.topics[topic].partitions]
        consumer.assign(assignment)
        pending = {(tp.topic, tp.partition) for tp in assignment}
        counts, deadline = dict.fromkeys(OUTPUT_TOPICS, 0), time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"counting the outputs took over {timeout_s:.0f} s ({len(pending)} partitions left)")
            for message in consumer.consume(10_000, timeout=0.5):
                error = message.error()
                if error is None:
                    counts[names[message.topic()]] += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((message.topic(), message.partition()))
        return counts
    finally:
        consumer.close()


def process_file_run(workload: Workload, settings: WorkerSettings, workdir: Path) -> tuple[float, dict[str, int]]:
    started = time.monotonic()
    summary = process_file(workload.path, workdir / "out", settings.core_config(), now_ms=START_MS)
    return time.monotonic() - started, {"events": summary.events, "users": summary.users}


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench-"))


def running_broker() -> str:
    """The bootstrap servers of the broker `make kafka-up` started; without one, exit saying so."""
    broker = recorded_broker()
    if broker is None:
        raise SystemExit("no broker: `make kafka-up` first")
    return broker.bootstrap
