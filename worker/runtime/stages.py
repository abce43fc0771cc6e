"""The runner's two stages on one consumed message (SPEC §1): the split stage on a raw message,
whose events go through the by-user topic or, when their by-user partition is in place here, are
processed at once (the by-user shortcut, runtime/shortcut.py); the stateful stage on a by-user
record; or, with skip_split, both at once on a raw message its producer keyed by user.
"""

from __future__ import annotations

import logging

from confluent_kafka import Message

from worker.core.pipeline import Pipeline
from worker.core.records import UserEvent
from worker.errors import KafkaFatalError
from worker.runtime.emitter import Emitter
from worker.runtime.intake import Intake, coordinates
from worker.runtime.metrics import Metrics
from worker.runtime.partitions import PartitionManager
from worker.runtime.settings import WorkerSettings
from worker.runtime.shortcut import MARKER_KEY, Shortcut

log = logging.getLogger(__name__)


class Stages:
    def __init__(self, settings: WorkerSettings, metrics: Metrics, pipeline: Pipeline, intake: Intake,
                 emitter: Emitter, partitions: PartitionManager, shortcut: Shortcut) -> None:
        self.settings, self.metrics, self.pipeline, self.intake = settings, metrics, pipeline, intake
        self.emitter, self.partitions, self.shortcut = emitter, partitions, shortcut
        self.raw_topic, self.by_user_topic = settings.topics.raw, settings.topics.by_user
        self.latest_ingested = 0  # the latest ingestion time processed (dedupe entries expire from it)

    def handle(self, message: Message) -> tuple[str, int, int] | None:
        """Handle one message: its coordinates, or None when it is not taken (an error event, or
        a partition restoring or paused by a drain: read again once it resumes)."""
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaFatalError(f"consumer: {error}")
            log.warning("consumer: %s", error)
            return None
        topic, partition, offset = coordinates(message)
        if topic == self.partitions.keyed_topic and partition in self.partitions.restorations:
            return None  # fetched before the pause took: the seek at resume reads it again
        if self.shortcut.paused and topic == self.raw_topic and self.shortcut.waits(partition, offset):
            return None  # a drain paused it: read again when the drain ends
        self.emitter.count(self.metrics.messages_in, topic)
        if self.settings.skip_split:  # producers key by user key: split and process in one step
            self.process_all(self.intake.split(message).events, partition)
        elif topic == self.by_user_topic:
            if message.key() == MARKER_KEY:
                self.shortcut.returned(partition, message.value())
            else:
                user_event = self.intake.by_user_event(message, partition)
                if user_event is not None:
                    self.process_all([user_event], partition)
        else:
            self.route(self.intake.split(message).events)
        return topic, partition, offset

    def route(self, events: list[UserEvent]) -> None:
        """The split stage's events: through the by-user topic, or processed here (the shortcut)."""
        if not self.shortcut.direct:
            self.emitter.by_user(events)
            return
        in_place = 0
        for user_event in events:
            partition = self.shortcut.target(user_event.user_key)
            if partition < 0:
                self.emitter.by_user([user_event])
            else:
                in_place += 1
                self.process_all([user_event], partition)
        if in_place:
            self.emitter.count(self.metrics.shortcut_events, amount=in_place)

    def process_all(self, events: list[UserEvent], partition: int) -> None:
        stores = self.partitions.stores.get(partition)
        if stores is None and events:  # not restored: cannot happen while assigned; fail loudly if it does
            raise KafkaFatalError(f"partition {partition} has no restored state")
        for user_event in events:
            assert stores is not None
            self.emitter.outcome(user_event, self.pipeline.process(user_event, stores), partition)
            if user_event.ingested_at > self.latest_ingested:
                self.latest_ingested = user_event.ingested_at
