"""One batch of input between two commits (Quix Streams' Checkpoint): which offsets it consumed,
when it started, and the pure rule that says when it is due (arroyo's commit policy).
"""

from __future__ import annotations

from confluent_kafka import TopicPartition


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

    def is_due(self, now: float, interval_ms: int, every_messages: int) -> bool:
        return commit_due(now, self.started, self.messages, interval_ms, every_messages)
