"""From what the core returned to Kafka records and metrics: the by-user records of the split
stage, the enriched events and deltas of the stateful stage, DLQ records, and, once per batch,
the changelog records (each changed user's last state, dedupe entries, registry admissions).

Counts are gathered per batch in a tally and reach Prometheus when the batch commits. Each
processed event is also shown to experiment health (issue 17), which keeps its counts pending
the same way.
"""

from __future__ import annotations

from prometheus_client import Counter

from worker.core.billing import MonthlyTrackedUsers
from worker.core.experiments import RENAMED_PROPERTIES, RENAMED_TYPES
from worker.core.limit import ExperimentRegistry
from worker.core.pipeline import Outcome
from worker.core.records import DlqRecord, UserEvent
from worker.runtime.experiment_monitor import ExperimentMonitor
from worker.runtime.metrics import Metrics
from worker.runtime.settings import WorkerSettings
from worker.runtime.shortcut import MARKER_KEY
from worker.runtime.sink import Sink
from worker.runtime.state import KafkaStores
from worker.serde import Codec, codec_for

FLAG_PROPERTY, VARIANT_PROPERTY = RENAMED_PROPERTIES["flag_key"], RENAMED_PROPERTIES["variant"]
EXPOSURE_TYPES = frozenset(RENAMED_TYPES.values())


class Emitter:
    __slots__ = ("codecs", "health", "metrics", "sink", "tally", "topics", "tracked", "tracked_now")

    def __init__(self, settings: WorkerSettings, metrics: Metrics, sink: Sink, health: ExperimentMonitor) -> None:
        self.topics, self.metrics, self.sink, self.health = settings.topics, metrics, sink, health
        self.codecs: dict[str, Codec] = {
            kind: codec_for(kind, settings.formats.get(kind, "json")) for kind in ("enriched", "deltas", "state", "dlq")
        }
        # A plain dict, not collections.Counter: its `+=` takes 0.35 µs a count, the dict's get-and-set 0.25.
        self.tally: dict[tuple[Counter, tuple[str, ...]], int] = {}
        self.tracked = MonthlyTrackedUsers()
        self.tracked_now: set[str] = set()  # projects whose monthly tracked users may have grown: set at commit

    def count(self, counter: Counter, *labels: str, amount: int = 1) -> None:
        key = (counter, labels)
        self.tally[key] = self.tally.get(key, 0) + amount

    def by_user(self, events: list[UserEvent]) -> None:
        for user_event in events:
            self.sink.send(self.topics.by_user, user_event.user_key.encode(), user_event.to_bytes())

    def markers(self, partitions: list[int], token: bytes) -> None:
        """A by-user shortcut drain's marker to each partition (runtime/shortcut.py)."""
        for partition in partitions:
            self.sink.send(self.topics.by_user, MARKER_KEY, token, partition)

    def dlq(self, record: DlqRecord) -> None:
        self.count(self.metrics.dlq_records, record.reason)
        self.sink.send(self.topics.dlq, record.key, self.codecs["dlq"].encode(record.to_json()),
                       headers=record.kafka_headers())

    def outcome(self, user_event: UserEvent, outcome: Outcome, partition: int) -> None:
        if outcome.duplicate:
            self.count(self.metrics.dedupe_dropped)
            return
        self.health.observe(partition, user_event, outcome)
        key = user_event.user_key.encode()
        event = outcome.event
        if event is not None:
            self.sink.send(self.topics.enriched, key, self.codecs["enriched"].encode(event))
            self.count_event(user_event, event)
        if outcome.delta is not None:
            self.sink.send(self.topics.deltas, key, self.codecs["deltas"].encode(outcome.delta))
        if outcome.dlq is not None:
            self.dlq(outcome.dlq)
        if outcome.unset_exposure:
            self.count(self.metrics.unset_exposures)
        if outcome.limit_dropped:
            self.count(self.metrics.limit_dropped, user_event.project_id, amount=outcome.limit_dropped)
        if outcome.add_ignored:
            self.count(self.metrics.add_ignored, amount=outcome.add_ignored)

    def count_event(self, user_event: UserEvent, event: dict[str, object]) -> None:
        project = user_event.project_id
        if event["billable"]:
            self.count(self.metrics.billable_events, project)
            if self.tracked.track(project, user_event.user_key, user_event.ingested_at):
                self.tracked_now.add(project)
        elif event["event_type"] in EXPOSURE_TYPES:
            properties = event["event_properties"]
            assert isinstance(properties, dict)
            self.count(self.metrics.exposures, project, str(properties.get(FLAG_PROPERTY)),
                       str(properties.get(VARIANT_PROPERTY)))

    def changelog(self, partition: int, stores: KafkaStores) -> None:
        """The batch's changelog records of one partition, to the changelog partition of its number;
        the producer reports the offset of each topic's last one, which the store's checkpoint
        records at commit. Only the last is tracked: the idempotent producer keeps a partition's
        records in order, so the last has the highest offset, and a delivery callback per dedupe
        entry (about one per event) would cost more than the entry itself."""
        self.send_tracked(self.topics.state, [(key.encode(), record) for key, record in stores.state_changelog()],
                          partition)
        self.send_tracked(self.topics.dedupe, [(key.encode(), str(first_seen).encode())
                                               for key, first_seen in stores.pending_dedupe.items()], partition)

    def send_tracked(self, topic: str, records: list[tuple[bytes, bytes]], partition: int) -> None:
        last = len(records) - 1
        for n, (key, value) in enumerate(records):
            self.sink.send(topic, key, value, partition, track=n == last)

    def admissions(self, registry: ExperimentRegistry) -> None:
        for project, name, admitted_at in registry.pending():
            self.sink.send(self.topics.registry, f"{project}/{name}".encode(), str(admitted_at).encode())

    def committed(self) -> None:
        for topic, count in self.sink.take_produced().items():
            self.count(self.metrics.records_out, topic, amount=count)
        self.metrics.add_tally(self.tally)
        for project in self.tracked_now:
            self.metrics.monthly_tracked_users.labels(project).set(self.tracked.count(project))
        self.tracked_now.clear()

    def aborted(self) -> None:
        self.tally.clear()
