"""The Kafka clients the worker uses, built in one place from its settings.

The runner is handed a `Clients` (arroyo's way: clients passed in), so its loop, commit and
rebalance logic run in unit tests against fakes, and every librdkafka setting the worker chooses
is written, with its reason, here and only here. Every client logs through the one librdkafka
logger (runtime/kafka_log.py), so its lines join the worker's own stream.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from worker.runtime.kafka_log import kafka_logger
from worker.runtime.settings import GroupProtocol, WorkerSettings

TRANSACTION_CALL_TIMEOUT_S = 30.0
TRANSACTION_RETRY_BACKOFF_MS = 10  # see producer_config


class Clients(Protocol):
    """What the runner needs from Kafka: one group consumer, a producer (recreated after a fatal
    error), an admin client, and assign-only readers for changelogs."""

    def consumer(self) -> Consumer: ...

    def producer(self) -> Producer: ...

    def admin(self) -> AdminClient: ...

    def reader(self, purpose: str) -> Consumer: ...


CONSUMER_QUEUE_KBYTES = 16 * 1024


def common_config(settings: WorkerSettings) -> dict[str, Any]:
    """What every client sets: the pass-through settings (secrets included: never log this), the
    servers, and the logger that brings librdkafka's lines into the worker's log stream."""
    return {**settings.kafka_config(), "bootstrap.servers": settings.bootstrap_servers,
            "logger": kafka_logger(settings)}


def admin_config(settings: WorkerSettings) -> dict[str, Any]:
    return common_config(settings)


def consumer_config(settings: WorkerSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        # A read_committed fetch waits for data below the last stable offset; librdkafka's 500 ms
        # default then adds up to half a second per stage to the end-to-end latency.
        "fetch.wait.max.ms": 100,
        # The prefetched input (one queue for every partition): 16 MiB (a second or two of input
        # at full speed) rather than librdkafka's 64, and fetching again 20 ms after the queue fell
        # below it rather than 1 s. With a backlog the queue is full, and every partition waited
        # for the backoff: a by-user shortcut drain (runtime/shortcut.py) waited a second for its
        # markers, then passed over up to 64 MiB of raw input it had to read again.
        "queued.max.messages.kbytes": CONSUMER_QUEUE_KBYTES,
        "fetch.queue.backoff.ms": 20,
        **common_config(settings),
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Only committed outputs of the split stage are read, and offset fetches wait for
        # pending transactional offsets to resolve (KIP-447).
        "isolation.level": "read_committed",
    }
    if settings.group_protocol is GroupProtocol.CONSUMER:
        config.update({"group.protocol": "consumer", "group.remote.assignor": "range"})
    else:
        config["partition.assignment.strategy"] = "cooperative-sticky"
        if settings.session_timeout_ms is not None:
            config["session.timeout.ms"] = settings.session_timeout_ms
        if settings.heartbeat_interval_ms is not None:
            config["heartbeat.interval.ms"] = settings.heartbeat_interval_ms
    return config


def producer_config(settings: WorkerSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        # Records wait up to linger_ms to share a batch: fewer, larger produce requests cost the
        # broker far less CPU per record; a transaction's commit flushes them anyway.
        "linger.ms": settings.linger_ms,
        # The worker writes ~4 JSON records per event; lz4 batches cost the broker ~30% less CPU
        # (it handles a quarter of the bytes) and, on 2 cores shared with it, gave 1.13x the
        # events/s with a steadier rate (3 pairs, 400k events); zstd gave 0.93x of lz4 (2 pairs).
        "compression.type": settings.compression_type.value,
        **common_config(settings),
        # Same partition as Java producers keying by the user key (SPEC §1).
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
    }
    if settings.exactly_once:
        config["transactional.id"] = settings.transactional_id()
        config["transaction.timeout.ms"] = settings.transaction_timeout_ms
        # A transaction begun right after the last one's commit finds its coordinator still writing
        # that one's markers (CONCURRENT_TRANSACTIONS) and retries after retry.backoff.ms; the Java
        # producer retries this case after 20 ms (KAFKA-5477), and repeated failures still back off
        # up to retry.backoff.max.ms. Back-to-back transactions on the local broker: 53–86 ms in
        # send_offsets_to_transaction at librdkafka's 100 ms, 10.5 ms at 10. The worker's batches
        # mostly outlast the retry: no change at full load (A/B), a little less latency with short
        # (commit_idle_ms) batches (p99 at 8,000 events/s 255 → 218 ms, one pair).
        config.setdefault("retry.backoff.ms", TRANSACTION_RETRY_BACKOFF_MS)
    return config


READER_QUEUE_KBYTES = 16 * 1024


def reader_config(settings: WorkerSettings, purpose: str) -> dict[str, Any]:
    return {
        **common_config(settings),
        "group.id": f"{settings.group_id}.{purpose}",  # never joined nor committed: assign() only
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        # A restore runs one reader per partition in parallel: librdkafka's default prefetch queue
        # (64 MiB each) would make its memory grow with the partitions, for no speed (measured).
        "queued.max.messages.kbytes": READER_QUEUE_KBYTES,
    }


class KafkaClients:
    """Real confluent-kafka clients for `settings`."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings

    def consumer(self) -> Consumer:
        return Consumer(consumer_config(self.settings))

    def producer(self) -> Producer:
        producer = Producer(producer_config(self.settings))
        if self.settings.exactly_once:
            producer.init_transactions(TRANSACTION_CALL_TIMEOUT_S)
        return producer

    def admin(self) -> AdminClient:
        return AdminClient(admin_config(self.settings))

    def reader(self, purpose: str) -> Consumer:
        return Consumer(reader_config(self.settings, purpose))


class SharedAdmin:
    """`clients` whose admin() is one admin client shared by every caller (thread-safe), which
    `renew_admin()` replaces after a failure (librdkafka#4620). The restores of one assignment
    share one (PartitionManager.assign): with an admin client of their own per restore step (two
    per partition, six partitions restored at once), a fresh client's first ListOffsets waited 1
    or 3 s now and then (2-4 of 15 restarts slow; one shared: 0 of 15), which made a restart from
    disk take 0.3 to 3.3 s. Not one per process: a client that outlived a broker restart or a
    network cut failed a later restore's ListOffsets ("No leaders found", make test)."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.lock = threading.Lock()
        self.shared: AdminClient | None = None

    def consumer(self) -> Consumer:
        return self.clients.consumer()

    def producer(self) -> Producer:
        return self.clients.producer()

    def reader(self, purpose: str) -> Consumer:
        return self.clients.reader(purpose)

    def admin(self) -> AdminClient:
        with self.lock:
            if self.shared is None:
                self.shared = self.clients.admin()
            return self.shared

    def renew_admin(self) -> AdminClient:
        with self.lock:
            self.shared = self.clients.admin()
            return self.shared
