"""After an abort the loop seeks back the partitions of the messages it had not handled yet: the
consumer's position is already past them, so without the seek they would be skipped (lost)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from worker.runtime.metrics import Metrics
from worker.runtime.runner import Worker
from worker.runtime.settings import load_settings


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


def test_rewind_seeks_each_unhandled_partition_once_and_skips_what_the_abort_rewound() -> None:
    worker = Worker(load_settings(bootstrap_servers="127.0.0.1:1", metrics_port=0), Metrics(CollectorRegistry()))
    consumer = FakeConsumer([("raw", 0), ("raw", 1), ("raw", 2)])
    worker.consumer = consumer  # type: ignore[assignment]
    worker.rewound = {("raw", 0)}  # the abort already sought raw[0] to the batch's first offset
    rest = [FakeMessage(("raw", 0, 9)), FakeMessage(("raw", 1, 7)), FakeMessage(("raw", 1, 8)),
            FakeMessage(("raw", 2, 3), failed=True), FakeMessage(("raw", 2, 4)), FakeMessage(("other", 5, 1))]
    worker.rewind(rest)  # type: ignore[arg-type]
    assert consumer.seeks == [("raw", 1, 7), ("raw", 2, 4)]
