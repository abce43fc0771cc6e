"""Bring a by-user partition's stores up to its changelogs (SPEC §1): the user-state and dedupe
partitions with the same number, read_committed, from the store's checkpoint to the end.

A store with a usable checkpoint reads only the tail written after it; one without (new, memory,
or distrusted by `unusable_checkpoint`) reads from the beginning. Records are copied as bytes and
written in batches with the offsets read so far, so a restore cut off half-way resumes where it
got to.

"The end" is subtle with transactions: a read_committed reader stops at the last stable offset,
which an unfinished transaction of the previous owner holds back. If that transaction then
commits, stopping early would lose its state changes. So a partition counts as restored only when
its last stable offset equals its high watermark (no transaction left open) and we have read up
to it. A crashed owner's transaction therefore delays the restore until the broker aborts it
(transaction.timeout.ms).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from worker.core.identity import raw_project_of
from worker.core.limit import EXPERIMENT_PREFIX, ExperimentRegistry
from worker.errors import KafkaFatalError
from worker.runtime.clients import SharedAdmin, reader_config
from worker.runtime.experiment_names import MARKER, NameScan
from worker.runtime.settings import WorkerSettings
from worker.runtime.state import KafkaStores, StoreCheckpoint

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 5.0
FLUSH_EVERY = 20_000  # records per store write while restoring
# Messages per consume() call. Each is a tracked Python object: a batch of 5,000 outlived several
# young collections and was promoted, so full collections came twice as often (31 against 8 per
# million records); 500 read 1M users at 242-265k records/s against 192-222k (benchmarks/state.py).
READ_BATCH = 500
Progress = Callable[[int, int], None]  # (records read, records to read), as the restore goes


@dataclass(slots=True)
class RestoreResult:
    partition: int
    state_records: int = 0
    dedupe_records: int = 0
    seconds: float = 0.0
    from_checkpoint: bool = False


def restore_consumer(settings: WorkerSettings, purpose: str) -> Consumer:
    """An assign-only read_committed reader (restores, the registry, the ops commands)."""
    return Consumer(reader_config(settings, purpose))


def ends(admin: AdminClient, tp: TopicPartition) -> tuple[int, int, int]:
    """(low watermark, last stable offset, high watermark) of a partition."""
    query = {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest()}  # type: ignore[no-untyped-call]
    earliest = {TopicPartition(tp.topic, tp.partition): OffsetSpec.earliest()}  # type: ignore[no-untyped-call]
    low = admin.list_offsets(earliest, isolation_level=IsolationLevel.READ_UNCOMMITTED)
    committed = admin.list_offsets(query, isolation_level=IsolationLevel.READ_COMMITTED)
    uncommitted = admin.list_offsets(query, isolation_level=IsolationLevel.READ_UNCOMMITTED)
    return tuple(int(next(iter(f.values())).result().offset) for f in (low, committed, uncommitted))  # type: ignore[return-value]


def unusable_checkpoint(checkpoint: StoreCheckpoint, state: tuple[int, int, int],
                        dedupe: tuple[int, int, int]) -> str | None:
    """Why a checkpoint cannot be trusted against each changelog's (low watermark, last stable
    offset, high watermark), or None. Beyond the committed end, the store is ahead of Kafka: the log
    it was taken on is not this one (recreated, or truncated by an unclean election). Below the low
    watermark, records it never saw were deleted."""
    for offset, (low, stable, _) in ((checkpoint.state_offset, state), (checkpoint.dedupe_offset, dedupe)):
        if offset > stable:
            return "beyond_end"
        if offset < low:
            return "below_low"
    return None


def restore_partition(settings: WorkerSettings, clients: SharedAdmin, partition: int, stores: KafkaStores,
                      registry: ExperimentRegistry, progress: Progress | None = None) -> RestoreResult:
    """Read the partition's changelogs from the store's checkpoint into `stores` (see the module)."""
    reading = Reading(settings, clients, partition, stores, registry, progress)
    try:
        return reading.run()
    except KafkaException as exc:
        raise KafkaFatalError(f"restore of partition {partition}: {exc}") from exc
    finally:
        reading.consumer.close()


class Reading:
    """One restore: its consumer, the positions read so far, the records not yet written."""

    def __init__(self, settings: WorkerSettings, clients: SharedAdmin, partition: int, stores: KafkaStores,
                 registry: ExperimentRegistry, progress: Progress | None) -> None:
        self.settings, self.clients, self.partition, self.stores = settings, clients, partition, stores
        self.registry, self.progress = registry, progress
        self.state_topic, self.dedupe_topic = settings.topics.state, settings.topics.dedupe
        checkpoint = stores.checkpoint
        self.admin = clients.admin()
        self.state_position, self.dedupe_position = (self.state_topic, partition), (self.dedupe_topic, partition)
        self.positions = {self.state_position: checkpoint.state_offset, self.dedupe_position: checkpoint.dedupe_offset}
        self.total = self.start_at_low_watermarks()
        self.result = RestoreResult(partition, from_checkpoint=checkpoint.state_offset + checkpoint.dedupe_offset > 0)
        # The records not written yet, keys as they are on the changelogs (bytes: nothing is decoded
        # that the store would encode again); the state records in two parallel lists (no tuple each).
        self.state_keys: list[bytes] = []
        self.state_values: list[bytes | None] = []
        self.dedupes: list[tuple[bytes, int | None]] = []
        self.names: set[tuple[str, str]] = set()
        self.scan = NameScan()  # the experiment names known, per project
        self.json_state = settings.formats.get("state", "json") == "json"
        for project, name in stores.names():  # found by the restores before the checkpoint
            registry.load(project, name)
            self.scan.learn(project, name)
        self.consumer = self.start_reading()

    def start_reading(self) -> Consumer:
        consumer = self.clients.reader("restore")
        consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in self.positions.items()])
        return consumer

    def run(self) -> RestoreResult:
        started = reported = time.monotonic()
        pending = set(self.positions)
        while pending:
            now = time.monotonic()
            if now - reported >= PROGRESS_EVERY_S:
                reported = now
                self.report(pending)
            if now > started + self.settings.restore_timeout_s:
                raise KafkaFatalError(
                    f"restore of partition {self.partition} did not reach a stable end in "
                    f"{self.settings.restore_timeout_s} s (waiting on {sorted(pending)}; an open transaction of a "
                    "previous owner?)")
            if self.read_some():
                continue
            self.flush()
            pending = self.still_pending(pending)
        self.flush()
        self.result.seconds = time.monotonic() - started
        return self.result

    def read_some(self) -> bool:
        """Read what is there; True when it read records (or replaced a failing consumer)."""
        failed, read = None, False
        for message in self.consumer.consume(num_messages=READ_BATCH, timeout=0.2):
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaFatalError(f"restore of partition {self.partition}: {error}")
                if error.code() != KafkaError._PARTITION_EOF:
                    failed = error
                continue
            read = True
            self.take(message, message.topic() == self.state_topic)
        if len(self.state_keys) + len(self.dedupes) >= FLUSH_EVERY:
            self.flush()
        if failed is not None:
            # A new consumer at the positions read so far: librdkafka can keep failing a fetch with
            # FENCED_LEADER_EPOCH after a broker restart (librdkafka#4620); a new one asks again.
            log.warning("restoring partition %d: %s; reading on with a new consumer", self.partition, failed)
            self.flush()
            self.consumer.close()
            time.sleep(0.5)
            self.consumer = self.start_reading()
            return True
        return read

    def take(self, message: Message, state: bool) -> None:
        """One changelog record (the consumer reads only this partition of the two topics)."""
        offset = (message.offset() or 0) + 1
        raw_key, value = message.key(), message.value()
        if state:
            self.positions[self.state_position] = offset
            if raw_key is None:
                return
            self.state_keys.append(raw_key)
            self.state_values.append(value)  # a tombstone (None) deletes the user
            self.result.state_records += 1
        else:
            self.positions[self.dedupe_position] = offset
            if raw_key is None:
                return
            self.dedupes.append((raw_key, None if value is None else int(value)))
            self.result.dedupe_records += 1

    def admit_names(self) -> None:
        """Experiment names in use keep working under the limit (SPEC §6), whatever the registry says.
        Of the batch's JSON records, only those that may hold a name not known yet are decoded
        (worker.runtime.experiment_names); every record of another format that holds the prefix is."""
        for raw_project, records in by_project(self.state_keys, self.state_values).items():
            project = raw_project.decode("utf-8", "replace")
            if not self.json_state:
                for value in records:
                    if value.find(MARKER) >= 0:  # find: twice as fast as `in` on bytes
                        self.admit(project, value)
                continue
            for index in self.scan.candidates(project, records):
                self.admit(project, records[index])

    def admit(self, project: str, value: bytes) -> None:
        for name in self.stores.decode(value)["user_properties"]:
            if name.startswith(EXPERIMENT_PREFIX):
                self.registry.load(project, name)
                self.names.add((project, name))
                self.scan.learn(project, name)

    def flush(self) -> None:
        self.admit_names()
        self.stores.restore(zip(self.state_keys, self.state_values, strict=True), self.dedupes,
                            self.positions[self.state_position], self.positions[self.dedupe_position], self.names)
        self.state_keys, self.state_values, self.dedupes, self.names = [], [], [], set()
        if self.progress is not None:
            self.progress(self.result.state_records + self.result.dedupe_records, self.total)

    def still_pending(self, pending: set[tuple[str, int]]) -> set[tuple[str, int]]:
        """At the end of what is there: which changelogs are not at their stable end yet."""
        try:
            return {key for key in pending if not self.caught_up(key)}
        except KafkaException as exc:  # the broker is away: ask again, until the deadline
            if exc.args[0].fatal():
                raise
            # A new client: an old one can fail ListOffsets with FENCED_LEADER_EPOCH for good
            # after a leader change (librdkafka#4620).
            log.warning("restoring partition %d: %s; asking again with a new admin client", self.partition, exc)
            time.sleep(0.5)
            self.admin = self.clients.renew_admin()
            return pending

    def caught_up(self, key: tuple[str, int]) -> bool:
        _, stable, high = ends(self.admin, TopicPartition(*key))
        return stable == high and (high == 0 or self.read_to(key) >= high)

    def read_to(self, key: tuple[str, int]) -> int:
        """The next offset to read: the consumer's position counts the transaction markers after the
        last record, which a read_committed consumer never returns."""
        position = self.consumer.position([TopicPartition(*key)])[0].offset
        return max(position, self.positions[key])

    def start_at_low_watermarks(self) -> int:
        """Start no lower than each changelog's low watermark (retention deletes the dedupe topic's
        old segments: a read from below would only wait for a reset); about how many records the
        restore reads (high watermark minus start, transaction markers included)."""
        total = 0
        try:
            for key, start in self.positions.items():
                low, _, high = ends(self.admin, TopicPartition(*key))
                self.positions[key] = max(start, low)
                total += max(0, high - self.positions[key])
        except KafkaException:  # the broker is away: the reader's offset reset covers it
            return 0
        return total

    def report(self, pending: set[tuple[str, int]]) -> None:
        done = self.result.state_records + self.result.dedupe_records
        log.info("restoring partition %d: %d of about %d records read (%d state, %d dedupe); waiting on %s",
                 self.partition, done, self.total, self.result.state_records, self.result.dedupe_records,
                 sorted(pending))


def by_project(keys: list[bytes], values: list[bytes | None]) -> dict[bytes, list[bytes]]:
    """State records (tombstones left out) by the project of their key, in their order. A
    project's keys mostly come in runs, so each key is compared with the last one's project prefix
    and split only where the project changes."""
    groups: dict[bytes, list[bytes]] = {}
    prefix: bytes | None = None
    records: list[bytes] = []
    for user_key, value in zip(keys, values, strict=True):
        if value is None:
            continue
        if prefix is None or not user_key.startswith(prefix):
            project = raw_project_of(user_key)
            prefix, records = project + b"/", groups.setdefault(project, [])
        records.append(value)
    return groups
