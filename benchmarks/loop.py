"""The worker's per-event path in one process, with no broker: `python -m benchmarks.loop
[--events N] [--rounds K] [--store memory|disk]`.

Each raw message of the bench stream goes through the runtime's own objects as the loop drives
them (Intake.split, Pipeline.process, Emitter.outcome into a Sink, and every COMMIT_EVENTS events
the changelogs and the stores' commit), into a real librdkafka producer that has no broker and
is purged at each commit. What it leaves out is the Kafka I/O: consume(), the transaction's calls
and the waits on the broker. It prints the main thread's CPU time per event (thread_time, so
librdkafka's own threads do not count) for each round, then the minimum and the median: a
before/after figure for a change to the loop that is steadier than whole-worker runs on a shared
broker (two checkouts: run it from each, interleaved).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from confluent_kafka import Message, Producer
from prometheus_client import CollectorRegistry

from benchmarks import e2e
from worker.core.dlq_limit import DlqLimit
from worker.core.pipeline import Pipeline
from worker.runtime.emitter import Emitter
from worker.runtime.experiment_monitor import ExperimentMonitor
from worker.runtime.intake import Intake
from worker.runtime.local_state import StoreFactory
from worker.runtime.metrics import Metrics
from worker.runtime.partitioner import partition_of
from worker.runtime.settings import WorkerSettings
from worker.runtime.sink import Sink
from worker.runtime.state import StateCache
from worker.serde import codec_for

COMMIT_EVENTS = 2_500  # about what the bench's worker commits at a time (100 ms at 25k events/s)
NOWHERE = "127.0.0.1:1"


class NoBroker:
    """Clients whose producer queues everything and sends nothing (the Sink needs only that)."""

    def producer(self) -> Producer:
        return Producer({"bootstrap.servers": NOWHERE, "queue.buffering.max.messages": 2_000_000,
                         "queue.buffering.max.kbytes": 2_000_000, "linger.ms": 60_000, "log_level": 0})


def one_round(settings: WorkerSettings, messages: list[Message], events: int) -> float:
    """Main-thread CPU µs per event of one pass over `messages`, on fresh stores and objects."""
    metrics = Metrics(CollectorRegistry())
    pipeline = Pipeline(settings.core_config())
    sink = Sink(NoBroker(), exactly_once=True)  # type: ignore[arg-type]  # only producer() is used
    sink.in_transaction = True  # no broker to begin one with
    emitter = Emitter(settings, metrics, sink, ExperimentMonitor(settings.flags(), metrics))
    intake = Intake(pipeline, emitter, DlqLimit(1.0, 1_000, 1_000_000))
    factory = StoreFactory(settings, codec_for("state", "json"), StateCache(settings.state_cache_bytes))
    stores = {partition: factory.open(partition) for partition in range(settings.partitions)}
    pending = 0
    started = time.thread_time()
    for message in messages:
        for user_event in intake.split(message).events:
            partition = partition_of(user_event.user_key.encode(), settings.partitions)
            emitter.outcome(user_event, pipeline.process(user_event, stores[partition]), partition)
            pending += 1
        if pending >= COMMIT_EVENTS:
            pending = 0
            for partition, partition_stores in stores.items():
                emitter.changelog(partition, partition_stores)
            emitter.admissions(pipeline.registry)
            for partition_stores in stores.values():
                partition_stores.commit(1, 1, 1)
            pipeline.registry.commit()
            emitter.committed()
            sink.producer.purge(in_queue=True, in_flight=False)
    seconds = time.thread_time() - started
    for partition_stores in stores.values():
        partition_stores.close()
    return seconds / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store", choices=["memory", "disk"], default="memory")
    args = parser.parse_args()
    work = e2e.workdir()
    try:
        workload = e2e.Workload.generate(args.events, 100_000, work)
        settings = e2e.settings_for(NOWHERE, "loop", state_store=args.store)
        messages = [Message(topic=settings.topics.raw, partition=n % settings.partitions, offset=n, value=value,
                            headers=list(headers) if headers else None, timestamp=(1, timestamp))
                    for n, (value, timestamp, headers) in enumerate(workload.messages)]
        figures = []
        for round_ in range(args.rounds):
            fresh = settings.model_copy(update={"state_dir": work / f"state-{round_}"})
            figures.append(one_round(fresh, messages, workload.events))
            print(f"round {round_ + 1}: {figures[-1]:.2f} µs/event", flush=True)
        print(f"{workload.events:,} events, {args.store} stores: main-thread CPU min {min(figures):.2f}, "
              f"median {statistics.median(figures):.2f} µs/event")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
