"""The by-user partitions this instance owns, and their state (Kafka Streams' TaskManager and state
manager): assignment, restore in a thread per partition, install, revoke and loss.

A newly assigned by-user partition is paused while a thread restores its stores from the
changelogs; the partitions already owned keep flowing meanwhile. When a restore is done the loop
installs the stores, merges the experiment names found into the registry, resumes the partition
and seeks it to its committed offset (explicitly: a pause right after assignment may drop the
start offset, librdkafka#2190). A partition revoked or lost mid-restore is simply forgotten: its
restore stops at its next write, and nobody installs it.

The stores themselves (worker.runtime.state) live in memory or on local disk (local_state.py); a
store on disk is opened with its checkpoint checked against the changelogs before it is trusted.

Experiment health (issue 17) is partition state too: its users per variant are counted from the
stores when they are installed, and committed, rolled back and dropped with them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from worker.core.limit import ExperimentRegistry
from worker.errors import KafkaFatalError
from worker.runtime import heap
from worker.runtime.clients import TRANSACTION_CALL_TIMEOUT_S, Clients, SharedAdmin
from worker.runtime.clock import Clock, SystemClock
from worker.runtime.experiment_monitor import ExperimentMonitor
from worker.runtime.local_state import StoreFactory
from worker.runtime.metrics import Metrics
from worker.runtime.restore import RestoreResult, ends, restore_partition, unusable_checkpoint
from worker.runtime.settings import WorkerSettings
from worker.runtime.state import KafkaStores, StateCache
from worker.serde import codec_for

log = logging.getLogger(__name__)
# A restored partition whose install fails (its committed offset unknown, its resume refused before
# its revocation arrives) is tried again after 0.1 s, then twice as long each time, up to 5 s.
INSTALL_RETRY_FIRST_S, INSTALL_RETRY_MAX_S = 0.1, 5.0


class Cancelled(Exception):
    """The partition went while it restored: the restore stops at its next write."""


class Restoring:
    """One partition's restore, in a thread of its own; the loop installs it when `done` is set.
    Whoever comes last of the thread and a drop closes the stores of a dropped partition."""

    def __init__(self, partition: int, limit: int) -> None:
        self.partition = partition
        self.stores: KafkaStores | None = None
        self.names = ExperimentRegistry(limit)  # experiment names found in the state, merged when installed
        self.done = threading.Event()
        self.dropped = False
        self.lock = threading.Lock()
        self.result: RestoreResult | None = None
        self.error: BaseException | None = None
        self.install_tries = 0  # failed tries to install it (committed offset unknown, resume refused)
        self.next_try = 0.0  # the clock's monotonic seconds

    def retry_later(self, now: float) -> float:
        """Note a failed install; the seconds until the next try (doubling, up to INSTALL_RETRY_MAX_S)."""
        delay = min(INSTALL_RETRY_FIRST_S * (1 << min(self.install_tries, 16)), INSTALL_RETRY_MAX_S)
        self.install_tries += 1
        self.next_try = now + delay
        return delay

    def finish(self) -> None:
        with self.lock:
            if self.dropped and self.stores is not None:
                self.stores.close()
            self.done.set()  # after the close: whoever waits on it may let the process exit

    def drop(self) -> None:
        with self.lock:
            if self.dropped:  # once: a store closed by `finish` or an earlier drop is not closed again
                return
            self.dropped = True
            if self.done.is_set() and self.stores is not None:
                self.stores.close()


Restorer = Callable[..., RestoreResult]


class PartitionManager:
    def __init__(self, settings: WorkerSettings, clients: Clients, metrics: Metrics,
                 registry: ExperimentRegistry, clock: Clock | None = None,
                 restorer: Restorer = restore_partition) -> None:
        self.settings, self.clients, self.metrics, self.registry = settings, clients, metrics, registry
        self.clock: Clock = clock or SystemClock()
        self.restorer = restorer
        self.keyed_topic = settings.topics.raw if settings.skip_split else settings.topics.by_user
        self.stores: dict[int, KafkaStores] = {}
        self.restorations: dict[int, Restoring] = {}
        self.stopping: list[Restoring] = []  # dropped while they restored, their threads not ended yet
        codec = codec_for("state", settings.formats.get("state", "json"))
        self.factory = StoreFactory(settings, codec, StateCache(settings.state_cache_bytes),
                                    lambda reason: metrics.store_rebuilds.labels(reason).inc())
        self.health = ExperimentMonitor(settings.flags(), metrics)  # issue 17: per partition, so it lives here

    @property
    def restoring(self) -> bool:
        return bool(self.restorations)

    def assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take the new partitions; pause each keyed one while a thread restores its state."""
        consumer.incremental_assign(partitions)
        keyed = [tp for tp in partitions if tp.topic == self.keyed_topic]
        if keyed:
            consumer.pause(keyed)
        clients = SharedAdmin(self.clients)  # the restores of one assignment share one admin client
        for tp in keyed:
            job = Restoring(tp.partition, self.settings.experiment_property_limit)
            self.restorations[tp.partition] = job
            threading.Thread(target=self.restore, args=(job, clients), name=f"restore-{tp.partition}",
                             daemon=True).start()
        self.report()

    def restore(self, job: Restoring, clients: SharedAdmin) -> None:
        """Thread body: open the partition's stores, distrust a bad checkpoint, read the changelogs."""
        try:
            job.stores = self.open_trusted(job.partition, clients)
            job.result = self.restorer(self.settings, clients, job.partition, job.stores, job.names,
                                       lambda done, total: self.progress(job, done, total))
            heap.give_back()  # what the restore's buffers freed, back to the system (see worker.runtime.heap)
        except Cancelled:
            log.info("partition %d went while it restored: its restore stopped", job.partition)
        except BaseException as exc:  # raised in the loop by install_restored
            job.error = exc
        finally:
            job.finish()

    def open_trusted(self, partition: int, clients: SharedAdmin) -> KafkaStores:
        """The partition's store, trusted only when its checkpoint lies inside both changelogs."""
        stores = self.factory.open_usable(partition)
        if stores.trusted is None:
            return stores
        admin = clients.admin()
        topics = self.settings.topics
        try:
            state = ends(admin, TopicPartition(topics.state, partition))
            dedupe = ends(admin, TopicPartition(topics.dedupe, partition))
        except KafkaException:
            clients.renew_admin()  # the restores still running ask with a new client (librdkafka#4620)
            raise
        reason = unusable_checkpoint(stores.trusted, state, dedupe)
        if reason is not None:
            return self.factory.rebuild(stores, reason, f"checkpoint {stores.trusted} against the changelogs' "
                                                        f"(low, stable, high) {state} and {dedupe}")
        return stores

    def progress(self, job: Restoring, done: int, total: int) -> None:
        if job.dropped:
            raise Cancelled
        label = str(job.partition)
        self.metrics.restore_target_records.labels(label).set(total)
        self.metrics.restore_done_records.labels(label).set(done)

    def install_restored(self, consumer: Consumer) -> None:
        """Install finished restores: stores in, names merged, partition resumed at its committed offset."""
        now = self.clock.monotonic()
        for partition, job in list(self.restorations.items()):
            if not job.done.is_set() or now < job.next_try:
                continue
            if job.error is not None:
                raise KafkaFatalError(f"restore of partition {partition}: {job.error}") from job.error
            self.install(consumer, partition, job)
        self.report()

    def install(self, consumer: Consumer, partition: int, job: Restoring) -> None:
        tp = TopicPartition(self.keyed_topic, partition)
        try:
            committed = consumer.committed([tp], timeout=TRANSACTION_CALL_TIMEOUT_S)[0].offset
        except KafkaException as exc:
            log.warning("partition %d restored, but its committed offset is unknown (%s); retrying in %.1f s",
                        partition, exc, job.retry_later(self.clock.monotonic()))
            return
        if self.restorations.get(partition) is not job:
            return  # revoked while we asked (the call serves rebalance callbacks): dropped already
        try:
            consumer.resume([tp])
            consumer.seek(TopicPartition(tp.topic, partition, committed if committed >= 0 else OFFSET_BEGINNING))
        except KafkaException as exc:  # no longer assigned: its revocation is on its way
            # Kept as restoring (its messages skipped, paused again) until the revocation drops it or
            # a later try resumes it: dropped here, a message fetched after the resume would find
            # no stores (seen in make test's chaos test: exit 2).
            log.warning("partition %d restored but not resumed (%s); retrying in %.1f s until it is revoked",
                        partition, exc, job.retry_later(self.clock.monotonic()))
            with contextlib.suppress(KafkaException):
                consumer.pause([tp])
            return
        del self.restorations[partition]
        assert job.stores is not None
        self.stores[partition] = job.stores
        self.health.install(partition, job.stores.iter_states())
        self.registry.merge(job.names)
        self.observe(job, committed)
        self.forget_progress(partition)  # done: a finished restore must not look stalled

    def observe(self, job: Restoring, committed: int) -> None:
        result = job.result
        assert result is not None
        self.metrics.restore_seconds.observe(result.seconds)
        self.metrics.restore_records.labels(self.settings.topics.state).inc(result.state_records)
        self.metrics.restore_records.labels(self.settings.topics.dedupe).inc(result.dedupe_records)
        log.info("restored partition %d: %d state and %d dedupe records in %.2f s (%s); resuming at offset %d",
                 job.partition, result.state_records, result.dedupe_records, result.seconds,
                 "the tail after its checkpoint" if result.from_checkpoint else "from the beginning", committed)

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget revoked or lost partitions, their stores, restores and metric series."""
        for tp in partitions:
            if tp.topic == self.keyed_topic:
                stores = self.stores.pop(tp.partition, None)
                if stores is not None:
                    stores.close()
                self.health.drop(tp.partition)
                job = self.restorations.pop(tp.partition, None)
                if job is not None:
                    job.drop()
                    self.stopping = [*(running for running in self.stopping if not running.done.is_set()), job]
                remove_series(self.metrics.users_in_state, str(tp.partition))
                self.forget_progress(tp.partition)
            remove_series(self.metrics.consumer_lag, tp.topic, str(tp.partition))
        self.report()

    def report_lag(self, consumer: Consumer) -> None:
        """Messages between each assigned partition's position and its high watermark (cached)."""
        for tp in consumer.position(consumer.assignment()):
            watermarks = consumer.get_watermark_offsets(tp, cached=True)
            if watermarks is not None and tp.offset >= 0 and watermarks[1] >= 0:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, watermarks[1] - tp.offset))

    def forget_progress(self, partition: int) -> None:
        for family in (self.metrics.restore_target_records, self.metrics.restore_done_records):
            remove_series(family, str(partition))

    def report(self) -> None:
        self.metrics.restoring_partitions.set(len(self.restorations))
        self.metrics.ready.set(0 if self.restorations else 1)

    def commit(self, delivered: dict[tuple[str, int], int], next_offsets: dict[tuple[str, int], int]) -> None:
        """The batch committed: each store takes its writes, with the changelog offsets the producer
        reported (the next offset after each partition's last record) and the batch's input offset."""
        topics = self.settings.topics
        for partition, stores in self.stores.items():
            stores.commit(delivered.get((topics.state, partition)), delivered.get((topics.dedupe, partition)),
                          next_offsets.get((self.keyed_topic, partition)))
            self.metrics.users_in_state.labels(str(partition)).set(stores.users)
        self.health.commit()

    def rollback(self) -> None:
        for stores in self.stores.values():
            stores.rollback()
        self.health.rollback()

    def prune(self, horizon_ms: int) -> int:
        """Forget dedupe entries first seen before `horizon_ms`: the store stays bounded by the window."""
        return sum(stores.expire(horizon_ms) for stores in self.stores.values())

    def close(self, timeout_s: float) -> None:
        """Close the stores, and stop the restores still running and wait (up to `timeout_s`) for
        their threads to close theirs: a process that exits while a daemon thread is inside RocksDB
        (a restore's write, or its store's closing flush) aborts ("pthread lock: Invalid argument",
        SIGABRT), which make chaos found as a SIGTERM during a restore."""
        for stores in self.stores.values():
            stores.close()
        jobs = [*self.restorations.values(), *self.stopping]
        for job in jobs:
            job.drop()
        deadline = time.monotonic() + timeout_s
        for job in jobs:
            if not job.done.wait(max(deadline - time.monotonic(), 0.0)):
                log.warning("partition %d: its restore had not stopped after %.0f s; exiting anyway",
                            job.partition, timeout_s)


def remove_series(family: Any, *labels: str) -> None:
    """Drop a partition's series when the partition goes, so a stale value cannot fire an alert.
    Merged across processes (`run --processes N`) a series cannot be removed: it is set to 0, so
    the sum over the processes is the new owner's value alone."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        family.labels(*labels).set(0)
        return
    with contextlib.suppress(KeyError):
        family.remove(*labels)
