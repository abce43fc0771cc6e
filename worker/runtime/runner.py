"""The Kafka runner (`experiment-worker run`): consume, call the core pipeline, produce, commit.

One consumer reads the raw topic (split stage) and the by-user topic (stateful stage); one
producer (`Sink`) writes every output, changelog record and the input offsets of a batch in one
transaction (KIP-447), every `commit_interval_ms` or `commit_every_messages`, or `commit_idle_ms`
once it has caught up with its input. The pieces:

    Pipeline          the core rules (worker/core/pipeline.py), the same as process-file's
    Intake            Kafka messages → the core's inputs; what cannot be read → the DLQ
    PartitionManager  owned partitions, their stores, restore, install, revoke
    Emitter           core outcomes → records and metrics
    Sink              the producer and its transactions
    Checkpoint        the batch's offsets and when it is due

Assignment (KIP-848 by default) is incremental and co-partitioned: the broker's range assignor
gives partition N of the raw and the by-user topic to the same member and balances each topic on
its own, and a rebalance moves only the partitions it must, so the partitions that stay keep their
state. `group_protocol=classic` (brokers before 4.0) uses cooperative-sticky.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from worker import __version__
from worker.build import describe
from worker.core.dlq_limit import DlqLimit
from worker.core.pipeline import Pipeline
from worker.runtime.broker import wait_for_kafka
from worker.runtime.checkpoint import Checkpoint, rewind_unhandled
from worker.runtime.clients import Clients, KafkaClients
from worker.runtime.clock import Clock, SystemClock
from worker.runtime.emitter import Emitter
from worker.runtime.intake import Intake
from worker.runtime.metrics import Metrics
from worker.runtime.partitions import PartitionManager
from worker.runtime.registry import RegistryFollower
from worker.runtime.settings import WorkerSettings
from worker.runtime.shortcut import Shortcut
from worker.runtime.sink import ProduceFailed, Sink
from worker.runtime.stages import Stages
from worker.runtime.topics import prepare

log = logging.getLogger(__name__)
CONSUME_TIMEOUT_S = 0.005
CONSUME_BATCH = 1000
PRUNE_EVERY_S = 60.0
LAG_EVERY_S = 5.0
LOOP_GAUGE_EVERY_S = 1.0
# Dedupe entries are kept this long past the window, so ingestion times that run a little
# backwards across raw partitions still meet the entry they should.
PRUNE_MARGIN_MS = 3_600_000


class Worker:
    def __init__(self, settings: WorkerSettings, metrics: Metrics, clients: Clients | None = None,
                 clock: Clock | None = None) -> None:
        self.settings, self.metrics = settings, metrics
        self.clients: Clients = clients or KafkaClients(settings)
        self.clock: Clock = clock or SystemClock()
        self.config = settings.core_config()
        self.pipeline = Pipeline(self.config)
        self.partitions = PartitionManager(settings, self.clients, metrics, self.pipeline.registry, self.clock)
        self.dlq_limit = DlqLimit(settings.dlq_max_ratio, settings.dlq_window, settings.dlq_max_consecutive)
        self.checkpoint = Checkpoint()
        self.shortcut = Shortcut(settings.by_user_shortcut and not settings.skip_split, settings.topics,
                                 settings.instance_id)
        self.rewound: set[tuple[str, int]] = set()  # partitions the last abort sought back
        self.stopping = threading.Event()
        self.running = False
        self.last_loop = self.pruned_at = self.lag_at = self.loop_shown = self.clock.monotonic()
        self.consumer: Consumer | None = None
        self.sink: Sink | None = None
        self.emitter: Emitter | None = None
        self.intake: Intake | None = None
        self.stages: Stages | None = None
        self.follower: RegistryFollower | None = None

    # ---- life cycle -------------------------------------------------------------------------
    def run(self) -> None:
        if not self.start():
            return  # SIGTERM while it waited for Kafka
        clean = False
        try:
            while not self.stopping.is_set():
                self.poll_once()
            clean = True
        finally:
            self.running = False
            self.shutdown(commit=clean)

    def start(self) -> bool:
        """Wait for Kafka (/readyz false, /healthz fine), check the topics, open the clients."""
        log.info("experiment-worker %s, %s, instance %s", __version__, describe(), self.settings.instance_id)
        admin = self.clients.admin()
        if not wait_for_kafka(admin, self.settings, self.clock, self.stopping, self.tick,
                              lambda: self.shortcut.start(prepare(admin, self.settings))):
            return False
        self.open()
        return True

    def tick(self) -> None:
        self.last_loop = self.clock.monotonic()

    def open(self) -> None:
        """The clients of a run: the producer, the registry follower (read to its end), the subscription."""
        settings = self.settings
        self.sink = Sink(self.clients, settings.exactly_once, settings.max_hung_calls, self.metrics.count_abandoned)
        self.emitter = Emitter(settings, self.metrics, self.sink, self.partitions.health)
        self.intake = Intake(self.pipeline, self.emitter, self.dlq_limit)
        self.stages = Stages(settings, self.metrics, self.pipeline, self.intake, self.emitter, self.partitions,
                             self.shortcut)
        self.follower = RegistryFollower(settings, self.clients, self.pipeline.registry)
        log.info("experiment-property registry: %d names read", self.follower.catch_up(settings.restore_timeout_s))
        self.consumer = self.clients.consumer()
        topics = [settings.topics.raw] if settings.skip_split else [settings.topics.raw, settings.topics.by_user]
        self.consumer.subscribe(topics, on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost)
        self.running = True

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: every thread's stack to stderr

    @property
    def ready(self) -> bool:
        return self.running and not self.partitions.restoring

    def poll_once(self) -> None:
        """One turn of the loop: install restores, handle what came, commit when due, periodic work."""
        assert self.consumer is not None and self.follower is not None and self.sink is not None
        self.last_loop = self.clock.monotonic()
        if self.last_loop - self.loop_shown >= LOOP_GAUGE_EVERY_S:  # what a supervisor's /healthz reads
            self.loop_shown = self.last_loop
            self.metrics.loop_timestamp.set(self.clock.time())
        if self.partitions.restoring:
            self.partitions.install_restored(self.consumer)
        # What is fetched is taken at once (a consume() with a timeout waits for all it asks for:
        # 5 ms of each ~80 ms commit cycle at half load); only an empty queue waits, briefly.
        # Fewer than asked for means it has caught up with its input: commit_idle_ms applies.
        messages = self.consumer.consume(CONSUME_BATCH, 0) or self.consumer.consume(CONSUME_BATCH, CONSUME_TIMEOUT_S)
        if messages:
            with self.metrics.batch_seconds.time():
                self.handle_all(messages)
        self.follower.poll(0)
        self.sink.poll()  # a producer's log lines (and at-least-once deliveries) come on poll
        now = self.clock.monotonic()
        if now - self.pruned_at >= PRUNE_EVERY_S:
            self.pruned_at = now
            latest = self.stages.latest_ingested if self.stages is not None else 0
            self.partitions.prune(latest - self.config.dedupe_window_ms - PRUNE_MARGIN_MS)
        if now - self.lag_at >= LAG_EVERY_S:
            self.lag_at = now
            self.partitions.report_lag(self.consumer)
        if self.commit_due(caught_up=len(messages) < CONSUME_BATCH):
            self.commit()
        self.step_shortcut(now)

    def step_shortcut(self, now: float) -> None:
        """The by-user shortcut's drain, between two turns of the loop (runtime/shortcut.py)."""
        assert self.consumer is not None and self.emitter is not None
        shortcut = self.shortcut
        if shortcut.step(self.consumer, now):  # every marker is back: the commit that completes the drain
            self.commit()
        elif shortcut.drain is None:
            due = shortcut.due(self.partitions.stores, self.partitions.restoring, now)
            if due:
                self.emitter.markers(due, shortcut.begin(self.consumer, due, now))
                self.commit()  # the markers become readable (or, aborted, the drain ends)
        self.metrics.shortcut_partitions.set(len(shortcut.direct))

    def handle_all(self, messages: list[Message]) -> None:
        for index, message in enumerate(messages):
            try:
                self.handle(message)
            except ProduceFailed as exc:  # e.g. the producer's state after a broker restart
                log.warning("%s; redoing the batch with a new producer", exc)
                self.abort(recreate=True)
                self.rewind(messages[index:])
                return
            # A failed commit rewinds the consumer: the rest of this list comes again.
            if self.commit_due() and not self.commit():
                self.rewind(messages[index + 1:])
                return

    def commit_due(self, caught_up: bool = False) -> bool:
        return self.checkpoint.is_due(self.clock.monotonic(), self.settings, caught_up)

    def shutdown(self, commit: bool) -> None:
        """Commit what is done (or, after an error, abort it), leave the group, drain the producer, stop restores."""
        try:
            if self.consumer is not None:
                if commit:
                    self.commit()
                elif self.checkpoint.messages or (self.sink is not None and self.sink.in_transaction):
                    self.abort(recreate=False)
                self.consumer.close()
        except Exception:
            log.exception("shutdown: commit or close failed; uncommitted work will be redone")
        deadline = self.clock.monotonic() + self.settings.shutdown_timeout_s
        if self.sink is not None:
            self.sink.close(self.settings.shutdown_timeout_s)
        if self.follower is not None:
            self.follower.close()
        self.partitions.close(max(deadline - self.clock.monotonic(), 1.0))  # the drain's time counts (pod grace)

    def handle(self, message: Message) -> None:
        assert self.stages is not None
        handled = self.stages.handle(message)
        if handled is not None:
            self.checkpoint.track(*handled, self.clock.monotonic())

    # ---- commit, abort ------------------------------------------------------------------------
    def commit(self) -> bool:
        """Commit the batch, in four steps; False when it had to be aborted (the input was rewound)."""
        sink, emitter, consumer = self.sink, self.emitter, self.consumer
        assert sink is not None and emitter is not None and consumer is not None
        if not self.checkpoint.messages and not sink.in_transaction:
            return True
        with self.metrics.commit_seconds.time():
            try:  # 1. the batch's changelog records: each changed user's last state, dedupe, registry
                for partition, stores in self.partitions.stores.items():
                    emitter.changelog(partition, stores)
                emitter.admissions(self.pipeline.registry)
            except ProduceFailed as exc:
                log.warning("%s; redoing the batch with a new producer", exc)
                self.abort(recreate=True)
                return False
            # 2. the outputs and the input offsets, atomically (or, at-least-once, flushed then committed)
            if not sink.commit(self.checkpoint.offsets(), consumer.consumer_group_metadata(), consumer.commit):
                self.rollback()
                return False
        # 3. the stores take the batch's writes, now that Kafka holds them, with the changelog offsets
        # they reach and the input offset they belong to; 4. the batch's counts
        self.partitions.commit(sink.take_delivered(), self.checkpoint.next)
        self.shortcut.committed()
        self.pipeline.registry.commit()
        emitter.committed()
        self.checkpoint = Checkpoint()
        self.metrics.transactions.labels("committed").inc()
        self.metrics.last_commit.set(self.clock.time())
        self.metrics.dlq_ratio.set(self.dlq_limit.ratio)
        return True

    def abort(self, recreate: bool) -> None:
        """Drop the batch: abort its transaction, roll the stores back, rewind the input."""
        assert self.sink is not None
        self.sink.abort(recreate)
        self.rollback()

    def rollback(self) -> None:
        """After the producer dropped the batch: roll the stores back and seek the input to its start."""
        assert self.consumer is not None and self.emitter is not None
        self.metrics.transactions.labels("aborted").inc()
        self.partitions.rollback()
        self.pipeline.registry.rollback()
        self.emitter.aborted()
        self.shortcut.aborted(self.consumer, self.clock.monotonic())  # before the rewind: it may resume raw input
        self.rewound = self.checkpoint.rewind(self.consumer)
        self.checkpoint = Checkpoint()

    def rewind(self, rest: list[Message]) -> None:
        assert self.consumer is not None
        rewind_unhandled(self.consumer, rest, self.rewound)

    # ---- rebalance (one-line delegations, after what the batch needs) --------------------------
    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("assigned").inc()
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])
        self.partitions.assign(consumer, partitions)
        self.shortcut.assigned(partitions)

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
        if self.checkpoint.messages or (self.sink is not None and self.sink.in_transaction):
            self.abort(recreate=False)
        self.drop(partitions)

    def drop(self, partitions: list[TopicPartition]) -> None:
        self.partitions.drop(partitions)
        self.shortcut.dropped(partitions)  # (the loop's next turn shows it in shortcut_partitions)

