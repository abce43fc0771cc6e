"""End-to-end latency at a fixed offered load: from a raw message's produce time (its CreateTime,
which the worker carries as `ingested_at`) to the moment the enriched event is readable by a
read_committed consumer. A producer offers the bench stream at a fixed events/s (half the
measured maximum) to one worker process; the first seconds (group join, restore) are not counted.

The offered messages are generated before the worker starts, as the throughput runs' raw topics are
filled before theirs: generating them on the fly took 0.2-0.3 of the machine's two cores beside the
worker (dev/loadgen.py is Python). The offering producer lingers librdkafka's default 5 ms: at 1 ms
it sent about 1,000 produce requests a second, which cost the broker 0.22 cores against 0.10 (15,000
events/s for 10 s, no worker running). Both taxed the worker being measured, not the offer.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from dev.loadgen import StreamGenerator, events_in
from dev.workers import worker_command
from worker.runtime.settings import WorkerSettings
from worker.runtime.topics import admin_client, create_topics

WARMUP_S = 5.0
OFFER_LINGER_MS = 5  # librdkafka's default
READY_TIMEOUT_S = 60.0
RESTORED = "restored partition "  # the worker's log line as each partition's stores are in place


class WorkerStuck(RuntimeError):
    """The worker did not get ready, or nothing it wrote arrived; its log holds its threads' stacks."""


def wait_ready(worker: subprocess.Popen[bytes], log: Path, partitions: int) -> float:
    """Seconds until the worker has restored every partition (its log says so); WorkerStuck when it
    has not within READY_TIMEOUT_S or has exited (`measure` then dumps its threads' stacks)."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if log.read_text(errors="replace").count(RESTORED) >= partitions:
            return time.monotonic() - started
        if worker.poll() is not None:
            raise WorkerStuck(f"the worker exited with {worker.returncode} before it was ready (see {log})")
        time.sleep(0.05)
    raise WorkerStuck(f"the worker had not restored its {partitions} partitions after {READY_TIMEOUT_S:.0f} s; "
                      f"its threads' stacks are at the end of {log}")


def dump_stacks(worker: subprocess.Popen[bytes]) -> None:
    """`kill -USR1`: the worker writes every thread's stack to its log (worker/runtime/runner.py)."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGUSR1)
        time.sleep(1.0)


def prepare(events: float) -> list[tuple[bytes, int]]:
    """The bench stream's messages holding `events` events: (value, events in it). What is not JSON
    never becomes an enriched event and is left out."""
    messages, total = [], 0
    for record in StreamGenerator(seed=7, users=100_000, keyed=False).messages():
        if total >= events:
            return messages
        if record.value_raw is None:
            messages.append((record.encoded(), events_in(record)))
            total += messages[-1][1]
    raise AssertionError("the stream is endless")


def offer(settings: WorkerSettings, messages: list[tuple[bytes, int]], events_per_s: float, seconds: float,
          stop: threading.Event) -> int:
    """Produce `messages` at `events_per_s` (message timestamps: now) for `seconds` at most."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": OFFER_LINGER_MS})
    started, sent = time.monotonic(), 0
    for value, events in messages:
        producer.produce(settings.topics.raw, value)
        producer.poll(0)
        sent += events
        ahead = started + sent / events_per_s - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        if time.monotonic() - started >= seconds or stop.is_set():
            break
    producer.flush(30)
    return sent


def measure(settings: WorkerSettings, events_per_s: float, seconds: float, workdir: Path) -> dict[str, Any]:
    create_topics(admin_client(settings), settings)
    messages = prepare(events_per_s * seconds)
    started_cpu, started = time.process_time(), time.monotonic()  # the offer and the reader from here
    topic = settings.topics.enriched
    reader = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "latency",
                       "isolation.level": "read_committed", "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    reader.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    log_path = workdir / "latency-worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(worker_command(settings), stdout=log, stderr=log)
    stop = threading.Event()
    sent: list[int] = []
    producer = threading.Thread(target=lambda: sent.append(offer(settings, messages, events_per_s, seconds, stop)),
                                daemon=True)
    latencies: list[float] = []
    try:
        ready_s = wait_ready(worker, log_path, settings.partitions)  # the load starts on a worker in place
        started_ms = time.time() * 1000
        producer.start()
        deadline, drained = time.monotonic() + seconds + 60, float("inf")
        while time.monotonic() < min(deadline, drained):
            if not producer.is_alive() and drained == float("inf"):
                drained = time.monotonic() + 5.0  # the last events of the offer
            for message in reader.consume(10_000, timeout=0.005):  # consume() waits for all 10k or the timeout
                if message.error():
                    continue
                now_ms = time.time() * 1000
                ingested = orjson.loads(message.value() or b"{}").get("ingested_at", 0)
                if ingested >= started_ms + WARMUP_S * 1000:
                    latencies.append(now_ms - ingested)
    finally:
        stop.set()
        if not latencies:  # not ready, or nothing arrived: where its threads are, into its log
            dump_stacks(worker)
        worker.terminate()
        worker.wait(60)
        reader.close()
    latencies.sort()
    if not latencies:
        raise WorkerStuck(f"no enriched event arrived; the worker's threads' stacks are at the end of {log_path}")

    def pick(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))]

    return {"offered_events_per_s": events_per_s, "events": len(latencies), "p50_ms": pick(0.50),
            "p99_ms": pick(0.99), "max_ms": latencies[-1], "bench_cpu_s": time.process_time() - started_cpu,
            "bench_wall_s": time.monotonic() - started, "ready_s": ready_s}
