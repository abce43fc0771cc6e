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

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from dev.loadgen import START_MS, StreamGenerator, encode_line, events_in
from dev.workers import settings_for as unique_settings
from dev.workers import worker_command
from worker.offline import process_file
from worker.runtime.ops import consumer_lag
from worker.runtime.settings import WorkerSettings
from worker.runtime.topics import admin_client, create_topics

PARTITIONS = 6  # 2 processes on 2 cores get 3 each
SUBSCRIBING = "experiment-property registry:"  # the worker's last log line before it subscribes


def settings_for(bootstrap: str, prefix: str, **overrides: Any) -> WorkerSettings:
    return unique_settings(bootstrap, prefix, **{"instance_id": "bench", "partitions": PARTITIONS, **overrides})


@dataclass
class Workload:
    """The bench stream (dev/loadgen.py, unkeyed) as process-file input and as raw Kafka messages."""

    path: Path
    events: int
    messages: list[tuple[bytes, int, list[tuple[str, bytes]]]]  # value, timestamp, headers

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
                headers = [(k, v.encode()) for k, v in record.headers.items()]
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


def new_raw_topic(settings: WorkerSettings, workload: Workload) -> None:
    create_topics(admin_client(settings), settings)
    workload.produce(settings.bootstrap_servers, settings.topics.raw)


def copy_baseline(settings: WorkerSettings, messages: int) -> float:
    """Seconds for a transactional consume→produce copy of every raw message."""
    out = settings.topics.raw + ".copy"
    admin = admin_client(settings)  # held until the futures are done
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


def worker_processes_run(settings: WorkerSettings, processes: int, timeout_s: float, workdir: Path) -> float:
    """Seconds for `processes` worker processes in one group to process the whole raw topic."""
    children, logs = [], []
    for n in range(processes):
        command = worker_command(settings.model_copy(update={"instance_id": f"p{n}"}))
        logs.append(workdir / f"{settings.group_id}-{n}.log")
        with logs[-1].open("wb") as log:
            children.append(subprocess.Popen(command, stdout=log, stderr=log))
    try:
        # The clock starts when every process is about to subscribe (Python started, topics
        # checked, registry read), as Quix's starts when its Application is about to run.
        while not all(SUBSCRIBING in log.read_text(errors="replace") for log in logs):
            if any(child.poll() is not None for child in children):
                raise RuntimeError(f"a worker exited while starting (see {logs})")
            time.sleep(0.01)
        started = time.monotonic()
        wait_caught_up(settings, timeout_s, lambda: all(child.poll() is None for child in children))
        return time.monotonic() - started
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(60)


def process_file_run(workload: Workload, settings: WorkerSettings, workdir: Path) -> tuple[float, dict[str, int]]:
    started = time.monotonic()
    summary = process_file(workload.path, workdir / "out", settings.core_config(), now_ms=START_MS)
    return time.monotonic() - started, {"events": summary.events, "users": summary.users}


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench-"))
