"""One batch of input between two commits (Quix Streams' Checkpoint): which offsets it consumed,
when it started, and the pure rule that says when it is due (arroyo's commit policy).
"""

from __future__ import annotations

from confluent_kafka import Consumer, Message, TopicPartition

from worker.runtime.intake import coordinates
from worker.runtime.settings import WorkerSettings


def commit_due(now: float, started: float, messages: int, interval_ms: int, every_messages: int) -> bool:
    """A batch with input commits after `interval_ms` or `every_messages`, whichever comes first."""
    return messages > 0 and (messages >= every_messages or (now - started) * 1000 >= interval_ms)


class Checkpoint:
    """Per input partition, the batch's first offset (where an abort rewinds to) and the next one
    (the offset the commit stores)."""

    __slots__ = ("first", "messages", "next", "started")

    def __init__(self) -> None:
        self.first: dict[tuple[str, int], int] = {}
        self.next: dict[tuple[str, int], int] = {}
        self.messages = 0
        self.started = 0.0

    def track(self, topic: str, partition: int, offset: int, now: float) -> None:
        key = (topic, partition)
        if not self.messages:
            self.started = now
        if key not in self.first:
            self.first[key] = offset
        self.next[key] = offset + 1
        self.messages += 1

    def offsets(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition, offset) for (topic, partition), offset in self.next.items()]

    def is_due(self, now: float, settings: WorkerSettings, caught_up: bool = False) -> bool:
        """`caught_up`: the last consume() came back with fewer messages than it asked for, so the
        batch need not wait for more; it commits at commit_idle_ms. Under load consume() comes back
        full and commit_interval_ms applies."""
        interval_ms = settings.commit_interval_ms
        if caught_up:
            interval_ms = min(interval_ms, settings.commit_idle_ms)
        return commit_due(now, self.started, self.messages, interval_ms, settings.commit_every_messages)

    def rewind(self, consumer: Consumer) -> set[tuple[str, int]]:
        """After an abort: seek each assigned partition of the batch back to its first offset; the
        partitions sought."""
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        for (topic, partition), offset in self.first.items():
            if (topic, partition) in assigned:
                consumer.seek(TopicPartition(topic, partition, offset))
        return set(self.first)


def rewind_unhandled(consumer: Consumer, rest: list[Message], rewound: set[tuple[str, int]]) -> None:
    """After an abort, seek the partitions of the not yet handled messages that the abort did not
    rewind (adding them to `rewound`): the consumer is already past them, so they would be skipped."""
    assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
    for message in rest:
        if message.error() is not None:
            continue
        topic, partition, offset = coordinates(message)
        if (topic, partition) in assigned and (topic, partition) not in rewound:
            rewound.add((topic, partition))
            consumer.seek(TopicPartition(topic, partition, offset))
