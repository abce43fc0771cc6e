"""Stand-ins for confluent-kafka's Message and Consumer, with only what the runner calls, so the
loop's bookkeeping is tested without a broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition


@dataclass
class FakeMessage:
    coordinates: tuple[str, int, int]
    failed: bool = False

    def error(self) -> Any:
        return object() if self.failed else None

    def topic(self) -> str:
        return self.coordinates[0]

    def partition(self) -> int:
        return self.coordinates[1]

    def offset(self) -> int:
        return self.coordinates[2]


@dataclass
class FakeConsumer:
    assigned: list[tuple[str, int]]
    seeks: list[tuple[str, int, int]] = field(default_factory=list)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition) for topic, partition in self.assigned]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))
