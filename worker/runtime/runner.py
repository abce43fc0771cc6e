"""The Kafka runner (`experiment-worker run`): consume, call the core, produce, commit.

One consumer reads the raw topic (split stage) and the by-user topic (stateful stage); one
transactional producer writes every output, changelog record and the input offsets of a batch in
one transaction (KIP-447), every `commit_interval_ms` or `commit_every_messages`. An abortable
error rewinds to the batch's first offsets and rolls the in-memory stores back; a fatal one
recreates the producer and does the same. At-least-once mode flushes, then commits offsets.

Assignment (KIP-848 by default) is incremental and co-partitioned: the broker's range assignor
gives partition N of the raw and the by-user topic to the same member and balances each topic on
its own, and a rebalance moves only the partitions it must, so the partitions that stay keep their
in-memory state instead of restoring it again. `group_protocol=classic` (brokers before 4.0) uses
cooperative-sticky, which is incremental too but balances both topics' partitions together.

A newly assigned by-user partition is paused while a thread restores its state; the partitions
already owned keep flowing meanwhile. When the restore is done the loop installs the stores,
resumes the partition and seeks it to its committed offset.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter

from worker.core.config import CoreConfig
from worker.core.dlq_limit import DlqLimit
from worker.core.experiments import FLAG_KEY, RENAMED_PROPERTIES, VARIANT
from worker.core.processor import Outcome, PartitionStores, process_safely
from worker.core.records import DlqRecord, RawMessage, Source, UserEvent
from worker.core.split import split_message
from worker.core.stores import ExperimentRegistry
from worker.errors import DlqLimitExceeded, KafkaFatalError
from worker.runtime.kafka_errors import CallHung, ErrorClass, bounded, classify
from worker.runtime.metrics import Metrics
from worker.runtime.restore import RegistryFollower, RestoreResult, restore_partition
from worker.runtime.settings import GroupProtocol, WorkerSettings
from worker.runtime.topics import admin_client, check_topics, configure_group
from worker.serde import Codec, RawDecodeError, codec_for, raw_to_json

log = logging.getLogger(__name__)
FLAG_PROPERTY, VARIANT_PROPERTY = RENAMED_PROPERTIES[FLAG_KEY], RENAMED_PROPERTIES[VARIANT]
TRANSACTION_CALL_TIMEOUT_S = 30.0
CONSUME_TIMEOUT_S = 0.005
HUNG_MARGIN_S = 10.0  # past its own timeout, a transactional call is taken as hung
PRUNE_EVERY_S = 60.0
LAG_EVERY_S = 5.0
# Dedupe entries are kept this long past the window, so ingestion times that run a little
# backwards across raw partitions still meet the entry they should.
PRUNE_MARGIN_MS = 3_600_000


class ProduceFailed(Exception):
    """A produce (or begin_transaction) refused by the producer: the batch is redone with a new one."""


@dataclass(slots=True)
class Batch:
    """The input consumed since the last commit: per partition, the first and next offsets."""

    first: dict[tuple[str, int], int] = field(default_factory=dict)
    next: dict[tuple[str, int], int] = field(default_factory=dict)
    messages: int = 0
    started: float = 0.0
    in_transaction: bool = False
    produced: dict[str, int] = field(default_factory=dict)  # records written, per topic

    def track(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        if key not in self.first:
            self.first[key] = offset
        self.next[key] = offset + 1
        self.messages += 1

    def offsets(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition, offset) for (topic, partition), offset in self.next.items()]


@dataclass(slots=True)
class Restoring:
    """One partition's restore, in a thread of its own; the loop installs it when `done` is set."""

    partition: int
    stores: PartitionStores
    names: ExperimentRegistry  # experiment property names found in the state, merged when installed
    done: threading.Event = field(default_factory=threading.Event)
    result: RestoreResult | None = None
    error: BaseException | None = None


class Worker:
    def __init__(self, settings: WorkerSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.exactly_once = settings.exactly_once  # read per record: an attribute, not the settings property
        self.config: CoreConfig = settings.core_config()
        self.registry = ExperimentRegistry(self.config.experiment_property_limit)
        self.stores: dict[int, PartitionStores] = {}
        self.batch = Batch()
        self.rewound: set[tuple[str, int]] = set()  # partitions the last abort sought back
        self.codecs: dict[str, Codec] = {
            kind: codec_for(kind, settings.formats.get(kind, "json")) for kind in ("enriched", "deltas", "state", "dlq")
        }
        self.dlq_limit = DlqLimit(settings.dlq_max_ratio, settings.dlq_window, settings.dlq_max_consecutive)
        self.keyed_topic = settings.topics.raw if settings.skip_split else settings.topics.by_user
        self.stopping = threading.Event()
        self.restorations: dict[int, Restoring] = {}
        self.running = False
        self.last_loop = time.monotonic()
        self.admin = admin_client(settings)
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.follower: RegistryFollower | None = None
        self._delivery_error: KafkaError | None = None
        self._children: dict[tuple[int, str], Any] = {}
        self.latest_ingested = 0
        self.pruned_at = self.lag_at = time.monotonic()
        # Monthly tracked users (SPEC §7), per instance: the users this instance saw a billable
        # event of in the current UTC month of ingestion.
        self.tracked_month = ""
        self.tracked_users: dict[str, set[str]] = {}

    # ---- life cycle -------------------------------------------------------------------------
    def run(self) -> None:
        counts = check_topics(self.admin, self.settings)
        log.info("topics checked: %s", counts)
        configure_group(self.admin, self.settings)
        self.producer = self.new_producer()
        self.follower = RegistryFollower(self.settings, self.registry)
        loaded = self.follower.catch_up(self.settings.restore_timeout_s)
        log.info("experiment-property registry: %d names read", loaded)
        self.consumer = self.new_consumer()
        topics = [self.settings.topics.raw] if self.settings.skip_split else [
            self.settings.topics.raw, self.settings.topics.by_user]
        self.consumer.subscribe(topics, on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost)
        self.running = True
        clean = False
        try:
            self.loop()
            clean = True
        finally:
            self.running = False
            self.shutdown(commit=clean)

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: every thread's stack to stderr

    def loop(self) -> None:
        assert self.consumer is not None and self.follower is not None
        while not self.stopping.is_set():
            self.last_loop = time.monotonic()
            if self.restorations:
                self.install_restored()
            # consume() returns when it has all 1000 or the timeout is over: a short timeout keeps
            # a lightly loaded loop from waiting on a batch that is not coming (latency).
            messages = self.consumer.consume(num_messages=1000, timeout=CONSUME_TIMEOUT_S)
            if messages:
                with self.metrics.batch_seconds.time():
                    for index, message in enumerate(messages):
                        try:
                            self.handle(message)
                        except ProduceFailed as exc:  # e.g. the producer's state after a broker restart
                            log.warning("%s; redoing the batch with a new producer", exc)
                            self.abort(recreate=True)
                            self.rewind(messages[index:])
                            break
                        # A failed commit rewinds the consumer: the rest of this list comes again.
                        if self.commit_due() and not self.commit():
                            self.rewind(messages[index + 1:])
                            break
            self.follower.poll(0)
            if time.monotonic() - self.pruned_at >= PRUNE_EVERY_S:
                self.prune_dedupe()
            if time.monotonic() - self.lag_at >= LAG_EVERY_S:
                self.report_lag()
            if self.commit_due():
                self.commit()

    def commit_due(self) -> bool:
        return self.batch.messages > 0 and (
            self.batch.messages >= self.settings.commit_every_messages
            or (time.monotonic() - self.batch.started) * 1000 >= self.settings.commit_interval_ms
        )

    def shutdown(self, commit: bool) -> None:
        """Commit what is done (or, after an error, abort it), leave the group, let the producer drain."""
        try:
            if self.consumer is not None:
                if commit:
                    self.commit()
                elif self.batch.messages or self.batch.in_transaction:
                    self.abort(recreate=False)
                self.consumer.close()
        except Exception:
            log.exception("shutdown: commit or close failed; uncommitted work will be redone")
        if self.producer is not None:
            self.producer.flush(self.settings.shutdown_timeout_s)
        if self.follower is not None:
            self.follower.close()

    def report_lag(self) -> None:
        """Messages between each assigned partition's position and its high watermark (cached)."""
        assert self.consumer is not None
        self.lag_at = time.monotonic()
        for tp in self.consumer.position(self.consumer.assignment()):
            watermarks = self.consumer.get_watermark_offsets(tp, cached=True)
            if watermarks is not None and tp.offset >= 0 and watermarks[1] >= 0:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, watermarks[1] - tp.offset))

    def prune_dedupe(self) -> int:
        """Forget insert_ids whose 7-day window has passed: memory stays bounded by the window."""
        self.pruned_at = time.monotonic()
        horizon = self.latest_ingested - self.config.dedupe_window_ms - PRUNE_MARGIN_MS
        return sum(stores.dedupe.prune(lambda first_seen: first_seen >= horizon) for stores in self.stores.values())

    @property
    def restoring(self) -> int:
        return len(self.restorations)

    @property
    def ready(self) -> bool:
        return self.running and not self.restorations

    # ---- clients ------------------------------------------------------------------------------
    def new_producer(self) -> Producer:
        config: dict[str, Any] = {
            **self.settings.kafka_config(),
            "bootstrap.servers": self.settings.bootstrap_servers,
            # Same partition as Java producers keying by the user key (SPEC §1).
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "enable.idempotence": True,
        }
        if self.exactly_once:
            config["transactional.id"] = self.settings.transactional_id()
            config["transaction.timeout.ms"] = self.settings.transaction_timeout_ms
        producer = Producer(config)
        if self.exactly_once:
            producer.init_transactions(TRANSACTION_CALL_TIMEOUT_S)
        return producer

    def new_consumer(self) -> Consumer:
        settings = self.settings
        config: dict[str, Any] = {
            # A read_committed fetch waits for data below the last stable offset; librdkafka's 500 ms
            # default then adds up to half a second per stage to the end-to-end latency.
            "fetch.wait.max.ms": 100,
            **settings.kafka_config(),
            "bootstrap.servers": settings.bootstrap_servers,
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
        return Consumer(config)

    # ---- processing ---------------------------------------------------------------------------
    def handle(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaFatalError(f"consumer: {error}")
            log.warning("consumer: %s", error)
            return
        topic, partition, offset = coordinates(message)
        self.counter(self.metrics.messages_in, topic).inc()
        if not self.batch.messages:
            self.batch.started = time.monotonic()
        if self.settings.skip_split:  # producers key by user key: split and process in one step
            if partition in self.restorations:
                return  # fetched before the pause took: the seek at resume reads it again
            for user_event in self.split(message):
                self.process(user_event, partition)
        elif topic == self.settings.topics.by_user:
            if partition in self.restorations:
                return  # fetched before the pause took: the seek at resume reads it again
            self.process_by_user(message, partition)
        else:
            for user_event in self.split(message):
                self.produce(self.settings.topics.by_user, user_event.user_key.encode(), user_event.to_bytes())
        self.batch.track(topic, partition, offset)

    def split(self, message: Message) -> list[UserEvent]:
        topic, partition, offset = coordinates(message)
        value = message.value()
        raw = RawMessage(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=int(message.timestamp()[1]),
            value=value,
            key=message.key(),
            headers=message_headers(message),
        )
        decoded = None if value is None else raw_to_json(value)  # Avro raw input becomes JSON here
        if isinstance(decoded, RawDecodeError):
            events: list[UserEvent] = []
            rejected = [DlqRecord(decoded.reason, decoded.detail, Source(topic, partition, offset, None),
                                              raw.timestamp_ms, value or b"", raw.key, raw.headers)]
        else:
            if decoded is not value:
                raw = replace(raw, value=decoded)
            events, rejected = split_message(raw, self.config)
        for record in rejected:
            self.produce_dlq(record)
        self.dlq_limit.record(len(events), len(rejected))
        tripped = self.dlq_limit.exceeded()
        if tripped:
            raise DlqLimitExceeded(
                f"{tripped}: is a producer or a deploy broken? Fix the input, or raise "
                "EXPERIMENT_WORKER_DLQ_MAX_RATIO / EXPERIMENT_WORKER_DLQ_MAX_CONSECUTIVE, then restart"
            )
        return events

    def process_by_user(self, message: Message, partition: int) -> None:
        try:
            user_event = UserEvent.from_bytes(message.value() or b"")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            topic, _, offset = coordinates(message)
            source = Source(topic, partition, offset, None)
            self.produce_dlq(DlqRecord("processing_error", f"unreadable by-user record: {exc}", source,
                                       int(message.timestamp()[1]), message.value() or b"", message.key()))
            return
        self.process(user_event, partition)

    def process(self, user_event: UserEvent, partition: int) -> None:
        stores = self.stores.get(partition)
        if stores is None:  # not restored: cannot happen while assigned; fail loudly if it does
            raise KafkaFatalError(f"partition {partition} has no restored state")
        outcome = process_safely(user_event, stores, self.registry, self.config)
        self.latest_ingested = max(self.latest_ingested, user_event.ingested_at)
        self.emit(user_event, outcome, partition)

    def emit(self, user_event: UserEvent, outcome: Outcome, partition: int) -> None:
        topics = self.settings.topics
        key = user_event.user_key.encode("utf-8")
        project = user_event.project_id
        if outcome.duplicate:
            self.metrics.dedupe_dropped.inc()
            return
        if outcome.event is not None:
            self.produce(topics.enriched, key, self.codecs["enriched"].encode(outcome.event))
            self.count_event(user_event, outcome.event)
        if outcome.delta is not None:
            self.produce(topics.deltas, key, self.codecs["deltas"].encode(outcome.delta))
        if outcome.state is not None:
            self.produce(topics.state, key, self.codecs["state"].encode(outcome.state), partition)
        if outcome.dedupe is not None:
            dedupe_key, first_seen = outcome.dedupe
            self.produce(topics.dedupe, dedupe_key.encode("utf-8"), str(first_seen).encode(), partition)
        for name in outcome.admitted:
            self.produce(topics.registry, f"{project}/{name}".encode(), str(user_event.ingested_at).encode())
        if outcome.dlq is not None:
            self.produce_dlq(outcome.dlq)
        if outcome.unset_exposure:
            self.metrics.unset_exposures.inc()
        if outcome.limit_dropped:
            self.metrics.limit_dropped.labels(project).inc(outcome.limit_dropped)
        if outcome.add_ignored:
            self.metrics.add_ignored.inc(outcome.add_ignored)

    def count_event(self, user_event: UserEvent, event: dict[str, Any]) -> None:
        project = user_event.project_id
        if event.get("billable"):
            self.counter(self.metrics.billable_events, project).inc()
            self.track_user(project, user_event.user_key, user_event.ingested_at)
        elif event["event_type"] in ("[Experiment] Exposure", "[Experiment] Impression"):
            properties = event["event_properties"]
            self.metrics.count_exposure(project, str(properties.get(FLAG_PROPERTY)),
                                        str(properties.get(VARIANT_PROPERTY)))

    def track_user(self, project: str, user_key: str, ingested_at: int) -> None:
        month = time.strftime("%Y-%m", time.gmtime(ingested_at / 1000))
        if month > self.tracked_month:  # a new UTC month: counting starts again
            self.tracked_month = month
            self.tracked_users.clear()
        elif month < self.tracked_month:
            return  # a late event of last month does not count this month
        users = self.tracked_users.setdefault(project, set())
        if user_key not in users:
            users.add(user_key)
            self.metrics.monthly_tracked_users.labels(project).set(len(users))

    def produce_dlq(self, record: DlqRecord) -> None:
        self.metrics.dlq_records.labels(record.reason).inc()
        self.produce(self.settings.topics.dlq, record.key, self.codecs["dlq"].encode(record.to_json()),
                     headers=record.kafka_headers())

    def produce(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        assert self.producer is not None
        if self.exactly_once and not self.batch.in_transaction:
            try:
                self.producer.begin_transaction()
            except KafkaException as exc:
                raise ProduceFailed(f"begin_transaction failed: {exc}") from exc
            self.batch.in_transaction = True
        kwargs: dict[str, Any] = {"key": key, "value": value}
        if not self.exactly_once:  # a transaction's commit already fails on any failed delivery
            kwargs["on_delivery"] = self.on_delivery
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                break
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as exc:
                raise ProduceFailed(f"produce to {topic} failed: {exc}") from exc
        self.batch.produced[topic] = self.batch.produced.get(topic, 0) + 1  # counted at commit, not per call

    def counter(self, family: Counter, label: str) -> Any:
        """The child of a counter with one label, cached: `labels()` is a locked lookup per call."""
        key = (id(family), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(label)
        return child

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None and self._delivery_error is None:
            self._delivery_error = error

    # ---- commit, abort ------------------------------------------------------------------------
    def commit(self) -> bool:
        """Commit the batch; False when it had to be aborted (the input was rewound)."""
        if not self.batch.messages and not self.batch.in_transaction:
            return True
        with self.metrics.commit_seconds.time():
            if self.exactly_once:
                return self.commit_transaction()
            return self.commit_offsets()

    def commit_transaction(self) -> bool:
        assert self.producer is not None and self.consumer is not None
        for attempt in range(5):
            try:
                if not self.batch.in_transaction:
                    self.producer.begin_transaction()
                    self.batch.in_transaction = True
                offsets, group = self.batch.offsets(), self.consumer.consumer_group_metadata()
                hung_after = TRANSACTION_CALL_TIMEOUT_S + HUNG_MARGIN_S
                bounded(hung_after, "send_offsets_to_transaction", self.producer.send_offsets_to_transaction,
                        offsets, group, TRANSACTION_CALL_TIMEOUT_S)
                bounded(hung_after, "commit_transaction", self.producer.commit_transaction, TRANSACTION_CALL_TIMEOUT_S)
                self.committed()
                return True
            except CallHung as exc:
                log.error("%s: abandoning this producer for a new one (librdkafka#5456)", exc)
                self.abort(recreate=True)
                return False
            except KafkaException as exc:
                kind = classify(exc)
                log.warning("commit failed (%s, attempt %d): %s", kind.value, attempt + 1, exc)
                if kind is ErrorClass.RETRIABLE:
                    continue
                self.abort(recreate=kind is ErrorClass.FATAL)
                return False
        self.abort(recreate=True)
        return False

    def commit_offsets(self) -> bool:
        assert self.producer is not None and self.consumer is not None
        remaining = self.producer.flush(TRANSACTION_CALL_TIMEOUT_S)
        if remaining or self._delivery_error is not None:
            error, self._delivery_error = self._delivery_error, None
            log.warning("at-least-once: %d undelivered, error %s; redoing the batch", remaining, error)
            self.abort(recreate=remaining > 0)
            return False
        try:
            self.consumer.commit(offsets=self.batch.offsets(), asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed: %s; the batch will be redone after a rebalance", exc)
        self.committed()
        return True

    def committed(self) -> None:
        for stores in self.stores.values():
            stores.commit()
        self.registry.commit()
        for topic, count in self.batch.produced.items():
            self.counter(self.metrics.records_out, topic).inc(count)
        self.batch = Batch()
        self.metrics.transactions.labels("committed").inc()
        self.metrics.last_commit.set(time.time())
        self.metrics.dlq_ratio.set(self.dlq_limit.ratio)
        for partition, stores in self.stores.items():
            self.metrics.users_in_state.labels(str(partition)).set(len(stores.state))

    def abort(self, recreate: bool) -> None:
        """Drop the batch: abort its transaction, roll the stores back, rewind the input."""
        assert self.consumer is not None
        self.metrics.transactions.labels("aborted").inc()
        if self.producer is not None and self.exactly_once and not recreate:
            try:
                self.producer.abort_transaction(TRANSACTION_CALL_TIMEOUT_S)
            except KafkaException as exc:
                log.warning("abort failed (%s); recreating the producer", exc)
                recreate = True
        if recreate:
            self.producer = self.new_producer()
        for stores in self.stores.values():
            stores.rollback()
        self.registry.rollback()
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for (topic, partition), offset in self.batch.first.items():
            if (topic, partition) in assigned:
                self.consumer.seek(TopicPartition(topic, partition, offset))
        self.rewound = set(self.batch.first)
        self.batch = Batch()

    def rewind(self, rest: list[Message]) -> None:
        """After an abort, seek the partitions of the not yet handled messages that the abort did
        not rewind: the consumer's position is already past them, so they would be skipped."""
        assert self.consumer is not None
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for message in rest:
            if message.error() is not None:
                continue
            topic, partition, offset = coordinates(message)
            if (topic, partition) in assigned and (topic, partition) not in self.rewound:
                self.rewound.add((topic, partition))
                self.consumer.seek(TopicPartition(topic, partition, offset))

    # ---- rebalance ----------------------------------------------------------------------------
    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take the new partitions; pause each by-user one while a thread restores its state."""
        self.metrics.rebalances.labels("assigned").inc()
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])
        consumer.incremental_assign(partitions)
        keyed = [tp for tp in partitions if tp.topic == self.keyed_topic]
        if not keyed:
            return
        consumer.pause(keyed)
        for tp in keyed:
            job = Restoring(tp.partition, PartitionStores(), ExperimentRegistry(self.config.experiment_property_limit))
            self.restorations[tp.partition] = job
            threading.Thread(target=self.restore, args=(job,), name=f"restore-{tp.partition}", daemon=True).start()
        self.metrics.ready.set(0)
        self.metrics.restoring_partitions.set(len(self.restorations))

    def restore(self, job: Restoring) -> None:
        """Thread body: read the partition's changelogs into the job's own stores and registry."""
        try:
            job.result = restore_partition(self.settings, self.admin, job.partition, job.stores, job.names,
                                           self.codecs["state"])
        except BaseException as exc:  # raised in the loop by install_restored
            job.error = exc
        finally:
            job.done.set()

    def install_restored(self) -> None:
        """Install finished restores: stores in, names merged, partition resumed at its committed offset."""
        assert self.consumer is not None
        for partition, job in list(self.restorations.items()):
            if not job.done.is_set():
                continue
            if job.error is not None:
                raise KafkaFatalError(f"restore of partition {partition}: {job.error}") from job.error
            tp = TopicPartition(self.keyed_topic, partition)
            try:
                committed = self.consumer.committed([tp], timeout=TRANSACTION_CALL_TIMEOUT_S)[0].offset
            except KafkaException as exc:
                log.warning("partition %d restored, but its committed offset is unknown (%s); retrying", partition, exc)
                continue
            del self.restorations[partition]
            self.stores[partition] = job.stores
            self.registry.merge(job.names)
            self.consumer.resume([tp])
            # Explicitly: a pause right after assignment may drop the start offset (librdkafka#2190).
            self.consumer.seek(TopicPartition(tp.topic, partition, committed if committed >= 0 else OFFSET_BEGINNING))
            assert job.result is not None
            self.metrics.restore_seconds.observe(job.result.seconds)
            self.metrics.restore_records.labels(self.settings.topics.state).inc(job.result.state_records)
            self.metrics.restore_records.labels(self.settings.topics.dedupe).inc(job.result.dedupe_records)
            log.info("restored partition %d: %d state and %d dedupe records in %.2f s; resuming at offset %d",
                     partition, job.result.state_records, job.result.dedupe_records, job.result.seconds, committed)
        self.metrics.restoring_partitions.set(len(self.restorations))
        if not self.restorations:
            self.metrics.ready.set(1)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit before the partitions go, so their next owner restores every change."""
        self.metrics.rebalances.labels("revoked").inc()
        log.info("revoked %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])
        self.commit()
        self.drop(partitions)

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Lost partitions may already have a new owner: nothing of this batch may be committed."""
        self.metrics.rebalances.labels("lost").inc()
        log.warning("lost %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])
        if self.batch.messages or self.batch.in_transaction:
            self.abort(recreate=False)
        self.drop(partitions)

    def drop(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self.keyed_topic:
                self.stores.pop(tp.partition, None)
                self.restorations.pop(tp.partition, None)  # its thread finishes; nobody installs it
                remove_series(self.metrics.users_in_state, str(tp.partition))
            remove_series(self.metrics.consumer_lag, tp.topic, str(tp.partition))
        self.metrics.restoring_partitions.set(len(self.restorations))
        if not self.restorations:
            self.metrics.ready.set(1)


def remove_series(family: Any, *labels: str) -> None:
    """Drop a partition's series when the partition goes, so a stale value cannot fire an alert."""
    with contextlib.suppress(KeyError):
        family.remove(*labels)


def coordinates(message: Message) -> tuple[str, int, int]:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def message_headers(message: Message) -> tuple[tuple[str, bytes], ...]:
    pairs: list[tuple[str, bytes | str | None]] = list(message.headers() or [])  # type: ignore[arg-type]
    return tuple((name, value if isinstance(value, bytes) else (value or "").encode()) for name, value in pairs)


def run_worker(settings: WorkerSettings, metrics: Metrics, on_started: Callable[[Worker], None] | None = None) -> None:
    worker = Worker(settings, metrics)
    worker.install_signal_handlers()
    if on_started is not None:
        on_started(worker)
    worker.run()
