"""End-to-end latency at a fixed offered load: from a raw message's produce time (its CreateTime,
which the worker carries as `ingested_at`) to the moment the enriched event is readable by a
read_committed consumer. A producer offers the bench stream at a fixed events/s (half the
measured maximum) to one worker process; the first seconds (group join, restore) are not counted.
"""

from __future__ import annotations

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


def offer(settings: WorkerSettings, events_per_s: float, seconds: float, stop: threading.Event) -> int:
    """Produce the bench stream at `events_per_s` (message timestamps: now) for `seconds`."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 1})
    stream = StreamGenerator(seed=7, users=100_000, keyed=False)
    started, sent = time.monotonic(), 0
    for record in stream.messages():
        if record.value_raw is not None:  # what is not JSON never becomes an enriched event
            continue
        producer.produce(settings.topics.raw, value=record.encoded())
        producer.poll(0)
        sent += events_in(record)
        ahead = started + sent / events_per_s - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        if time.monotonic() - started >= seconds or stop.is_set():
            break
    producer.flush(30)
    return sent


def measure(settings: WorkerSettings, events_per_s: float, seconds: float, workdir: Path) -> dict[str, Any]:
    create_topics(admin_client(settings), settings)
    topic = settings.topics.enriched
    reader = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "latency",
                       "isolation.level": "read_committed", "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    reader.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    with (workdir / "latency-worker.log").open("wb") as log:
        worker = subprocess.Popen(worker_command(settings), stdout=log, stderr=log)
    stop = threading.Event()
    sent: list[int] = []
    producer = threading.Thread(target=lambda: sent.append(offer(settings, events_per_s, seconds, stop)), daemon=True)
    latencies: list[float] = []
    try:
        time.sleep(3.0)  # the worker joins the group before the load starts
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
        worker.terminate()
        worker.wait(60)
        reader.close()
    latencies.sort()
    if not latencies:
        raise RuntimeError(f"no enriched event arrived (see {workdir / 'latency-worker.log'})")

    def pick(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))]

    return {"offered_events_per_s": events_per_s, "events": len(latencies), "p50_ms": pick(0.50),
            "p99_ms": pick(0.99), "max_ms": latencies[-1]}
