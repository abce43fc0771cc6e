"""Restore a by-user partition's stores from its changelogs (SPEC §1): the user-state and dedupe
partitions with the same number, read_committed, to the end.

"The end" is subtle with transactions: a read_committed reader stops at the last stable offset,
which an unfinished transaction of the previous owner holds back. If that transaction then
commits, stopping early would lose its state changes. So a partition counts as restored only when
its last stable offset equals its high watermark (no transaction left open) and we have read up
to it. A crashed owner's transaction therefore delays the restore until the broker aborts it
(transaction.timeout.ms).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from worker.core.limit import ExperimentRegistry
from worker.core.stores import PartitionStores, restore_user
from worker.errors import KafkaFatalError
from worker.runtime.clients import Clients, reader_config
from worker.runtime.settings import WorkerSettings
from worker.serde import Codec

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 5.0


@dataclass(slots=True)
class RestoreResult:
    partition: int
    state_records: int = 0
    dedupe_records: int = 0
    seconds: float = 0.0


def restore_consumer(settings: WorkerSettings, purpose: str) -> Consumer:
    """An assign-only read_committed reader (restores, the registry, the ops commands)."""
    return Consumer(reader_config(settings, purpose))


def stable_end(admin: AdminClient, tp: TopicPartition) -> int | None:
    """The end offset when no transaction is open on the partition, else None."""
    stable, high = ends(admin, tp)
    return stable if stable == high else None


def ends(admin: AdminClient, tp: TopicPartition) -> tuple[int, int]:
    """(last stable offset, high watermark) of a partition."""
    query = {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest()}  # type: ignore[no-untyped-call]
    committed = admin.list_offsets(query, isolation_level=IsolationLevel.READ_COMMITTED)
    uncommitted = admin.list_offsets(query, isolation_level=IsolationLevel.READ_UNCOMMITTED)
    return int(next(iter(committed.values())).result().offset), int(next(iter(uncommitted.values())).result().offset)


def restore_partition(
    settings: WorkerSettings,
    clients: Clients,
    partition: int,
    stores: PartitionStores,
    registry: ExperimentRegistry,
    codec: Codec,
) -> RestoreResult:
    """Fill `stores` from partition `partition` of the state and dedupe topics.

    A consumer error (a broker restart) starts a new consumer at the positions read so far:
    librdkafka can keep failing a fetch with FENCED_LEADER_EPOCH after the leader's epoch moved
    on (librdkafka#4620), and a new consumer asks for fresh metadata.
    """
    started = time.monotonic()
    result = RestoreResult(partition)
    topics = settings.topics
    pending = {(topics.state, partition), (topics.dedupe, partition)}
    positions: dict[tuple[str, int], int] = {}  # next offset to read, per changelog partition
    admin = clients.admin()
    consumer = start_reading(clients, pending, positions)
    try:
        deadline = started + settings.restore_timeout_s
        reported = started
        while pending:
            if time.monotonic() - reported >= PROGRESS_EVERY_S:
                reported = time.monotonic()
                seen: dict[tuple[str, int], tuple[int, ...]] = {key: (positions.get(key, 0),) for key in pending}
                with contextlib.suppress(KafkaException):
                    seen = {key: (read_to(consumer, key, positions), *ends(admin, TopicPartition(*key)))
                            for key in pending}
                log.info("restoring partition %d: %d state and %d dedupe records so far; (read to, stable end, end) "
                         "of what it waits on: %s", partition, result.state_records, result.dedupe_records, seen)
            if pending and time.monotonic() > deadline:
                raise KafkaFatalError(
                    f"restore of partition {partition} did not reach a stable end in {settings.restore_timeout_s} s "
                    f"(waiting on {sorted(pending)}; an open transaction of a previous owner?)"
                )
            messages = consumer.consume(num_messages=5000, timeout=0.2)
            failed, idle = None, True
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaFatalError(f"restore of partition {partition}: {error}")
                    if error.code() != KafkaError._PARTITION_EOF:
                        failed = error
                    continue
                idle = False
                key = (message.topic() or "", message.partition() or 0)
                positions[key] = (message.offset() or 0) + 1
                if key[0] == topics.state:
                    load_state(message.key(), message.value(), stores, registry, codec)
                    result.state_records += 1
                else:
                    load_dedupe(message.key(), message.value(), stores)
                    result.dedupe_records += 1
            if failed is not None:
                log.warning("restoring partition %d: %s; reading on with a new consumer", partition, failed)
                consumer.close()
                time.sleep(0.5)
                consumer = start_reading(clients, pending, positions)
                continue
            if idle:  # at the end of what is there: is it the stable end?
                try:
                    pending = {key for key in pending if not caught_up(admin, key, read_to(consumer, key, positions))}
                except KafkaException as exc:  # the broker is away: ask again, until the deadline
                    if exc.args[0].fatal():
                        raise
                    # A new client: an old one can fail ListOffsets with FENCED_LEADER_EPOCH for good
                    # after a leader change (librdkafka#4620).
                    log.warning("restoring partition %d: %s; asking again with a new admin client", partition, exc)
                    time.sleep(0.5)
                    admin = clients.admin()
    except KafkaException as exc:
        raise KafkaFatalError(f"restore of partition {partition}: {exc}") from exc
    finally:
        consumer.close()
    stores.commit()
    result.seconds = time.monotonic() - started
    return result


def start_reading(clients: Clients, keys: set[tuple[str, int]], positions: dict[tuple[str, int], int]) -> Consumer:
    consumer = clients.reader("restore")
    consumer.assign([TopicPartition(t, p, positions.get((t, p), OFFSET_BEGINNING)) for t, p in keys])
    return consumer


def read_to(consumer: Consumer, key: tuple[str, int], positions: dict[tuple[str, int], int]) -> int:
    """The next offset to read: the consumer's position counts the transaction markers after the
    last record, which a read_committed consumer never returns."""
    position = consumer.position([TopicPartition(*key)])[0].offset
    return max(position, positions.get(key, 0))


def caught_up(admin: AdminClient, key: tuple[str, int], position: int) -> bool:
    end = stable_end(admin, TopicPartition(*key))
    if end is None:
        return False
    return end == 0 or position >= end


def load_state(
    key: bytes | None, value: bytes | None, stores: PartitionStores, registry: ExperimentRegistry, codec: Codec
) -> None:
    if key is None:
        return
    # A tombstone (null value) deletes the user.
    properties = None if value is None else codec.decode(value)["user_properties"]
    restore_user(stores, registry, key.decode("utf-8"), properties)


def load_dedupe(key: bytes | None, value: bytes | None, stores: PartitionStores) -> None:
    if key is not None:
        stores.dedupe.load(key.decode("utf-8"), None if value is None else int(value))


class RegistryFollower:
    """Reads the experiment-property registry topic in full, then keeps following it."""

    def __init__(self, settings: WorkerSettings, clients: Clients, registry: ExperimentRegistry) -> None:
        self.registry = registry
        self.consumer = clients.reader("registry")
        topic = settings.topics.registry
        partitions = self.consumer.list_topics(topic, timeout=15).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self._eof: set[int] = set()
        self._partitions = len(partitions)

    def catch_up(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        loaded = 0
        while len(self._eof) < self._partitions and time.monotonic() < deadline:
            loaded += self.poll(0.2)
        return loaded

    def poll(self, timeout_s: float = 0.0) -> int:
        loaded = 0
        for message in self.consumer.consume(num_messages=1000, timeout=timeout_s):
            error = message.error()
            if error is not None:
                partition = message.partition()
                if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                    self._eof.add(partition)
                continue
            key = message.key()
            if key is not None:
                project, _, name = key.decode("utf-8").partition("/")
                self.registry.load(project, name)
                loaded += 1
        return loaded

    def close(self) -> None:
        self.consumer.close()
