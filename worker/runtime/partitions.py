"""The by-user partitions this instance owns, and their state (Kafka Streams' TaskManager and state
manager): assignment, restore in a thread per partition, install, revoke and loss.

A newly assigned by-user partition is paused while a thread restores its stores from the
changelogs; the partitions already owned keep flowing meanwhile. When a restore is done the loop
installs the stores, merges the experiment names found into the registry, resumes the partition
and seeks it to its committed offset (explicitly: a pause right after assignment may drop the
start offset, librdkafka#2190). A partition revoked or lost mid-restore is simply forgotten: its
thread finishes and nobody installs it.

Experiment health (issue 17) is partition state too: its users per variant are counted from the
stores when they are installed, and committed, rolled back and dropped with them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from worker.core.limit import ExperimentRegistry
from worker.core.stores import PartitionStores
from worker.errors import KafkaFatalError
from worker.runtime.clients import TRANSACTION_CALL_TIMEOUT_S, Clients
from worker.runtime.experiment_monitor import ExperimentMonitor
from worker.runtime.metrics import Metrics
from worker.runtime.restore import RestoreResult, restore_partition
from worker.runtime.settings import WorkerSettings
from worker.serde import Codec, codec_for

log = logging.getLogger(__name__)


class Restoring:
    """One partition's restore, in a thread of its own; the loop installs it when `done` is set."""

    def __init__(self, partition: int, limit: int) -> None:
        self.partition = partition
        self.stores = PartitionStores()
        self.names = ExperimentRegistry(limit)  # experiment names found in the state, merged when installed
        self.done = threading.Event()
        self.result: RestoreResult | None = None
        self.error: BaseException | None = None


Restorer = Callable[[WorkerSettings, Clients, int, PartitionStores, ExperimentRegistry, Codec], RestoreResult]


class PartitionManager:
    def __init__(self, settings: WorkerSettings, clients: Clients, metrics: Metrics,
                 registry: ExperimentRegistry, restorer: Restorer = restore_partition) -> None:
        self.settings, self.clients, self.metrics, self.registry = settings, clients, metrics, registry
        self.restorer = restorer
        self.keyed_topic = settings.topics.raw if settings.skip_split else settings.topics.by_user
        self.stores: dict[int, PartitionStores] = {}
        self.restorations: dict[int, Restoring] = {}
        self.state_codec = codec_for("state", settings.formats.get("state", "json"))
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
        for tp in keyed:
            job = Restoring(tp.partition, self.settings.experiment_property_limit)
            self.restorations[tp.partition] = job
            threading.Thread(target=self.restore, args=(job,), name=f"restore-{tp.partition}", daemon=True).start()
        self.report()

    def restore(self, job: Restoring) -> None:
        """Thread body: read the partition's changelogs into the job's own stores and registry."""
        try:
            job.result = self.restorer(self.settings, self.clients, job.partition, job.stores, job.names,
                                       self.state_codec)
        except BaseException as exc:  # raised in the loop by install_restored
            job.error = exc
        finally:
            job.done.set()

    def install_restored(self, consumer: Consumer) -> None:
        """Install finished restores: stores in, names merged, partition resumed at its committed offset."""
        for partition, job in list(self.restorations.items()):
            if not job.done.is_set():
                continue
            if job.error is not None:
                raise KafkaFatalError(f"restore of partition {partition}: {job.error}") from job.error
            tp = TopicPartition(self.keyed_topic, partition)
            try:
                committed = consumer.committed([tp], timeout=TRANSACTION_CALL_TIMEOUT_S)[0].offset
            except KafkaException as exc:
                log.warning("partition %d restored, but its committed offset is unknown (%s); retrying", partition, exc)
                continue
            del self.restorations[partition]
            self.stores[partition] = job.stores
            self.health.install(partition, job.stores.iter_states())
            self.registry.merge(job.names)
            consumer.resume([tp])
            consumer.seek(TopicPartition(tp.topic, partition, committed if committed >= 0 else OFFSET_BEGINNING))
            self.observe(job, committed)
        self.report()

    def observe(self, job: Restoring, committed: int) -> None:
        result = job.result
        assert result is not None
        self.metrics.restore_seconds.observe(result.seconds)
        self.metrics.restore_records.labels(self.settings.topics.state).inc(result.state_records)
        self.metrics.restore_records.labels(self.settings.topics.dedupe).inc(result.dedupe_records)
        log.info("restored partition %d: %d state and %d dedupe records in %.2f s; resuming at offset %d",
                 job.partition, result.state_records, result.dedupe_records, result.seconds, committed)

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget revoked or lost partitions, their stores, restores and metric series."""
        for tp in partitions:
            if tp.topic == self.keyed_topic:
                self.stores.pop(tp.partition, None)
                self.health.drop(tp.partition)
                self.restorations.pop(tp.partition, None)
                remove_series(self.metrics.users_in_state, str(tp.partition))
            remove_series(self.metrics.consumer_lag, tp.topic, str(tp.partition))
        self.report()

    def report(self) -> None:
        self.metrics.restoring_partitions.set(len(self.restorations))
        self.metrics.ready.set(0 if self.restorations else 1)

    def commit(self) -> None:
        for partition, stores in self.stores.items():
            stores.commit()
            self.metrics.users_in_state.labels(str(partition)).set(len(stores.state))
        self.health.commit()

    def rollback(self) -> None:
        for stores in self.stores.values():
            stores.rollback()
        self.health.rollback()

    def prune(self, horizon_ms: int) -> int:
        """Forget dedupe entries first seen before `horizon_ms`: memory stays bounded by the window."""
        return sum(len(stores.dedupe.prune(lambda first_seen: first_seen >= horizon_ms))
                   for stores in self.stores.values())


def remove_series(family: Any, *labels: str) -> None:
    """Drop a partition's series when the partition goes, so a stale value cannot fire an alert.
    Merged across processes (`run --processes N`) a series cannot be removed: it is set to 0, so
    the sum over the processes is the new owner's value alone."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        family.labels(*labels).set(0)
        return
    with contextlib.suppress(KeyError):
        family.remove(*labels)
