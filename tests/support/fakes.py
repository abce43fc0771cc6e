"""Stand-ins for confluent-kafka's clients, with only what the runner calls, so the loop, its
commits, aborts and rebalances are tested without a broker. A `FakeClients` hands them to a
`Worker` (clients are passed in) and keeps every producer it made."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition


@dataclass
class FakeMessage:
    coordinates: tuple[str, int, int]
    failed: bool = False
    error_code: int = KafkaError._FAIL  # when `failed`
    data: bytes | None = None
    key_data: bytes | None = None
    timestamp_ms: int = 0

    def error(self) -> Any:
        return SimpleNamespace(fatal=lambda: False, code=lambda: self.error_code) if self.failed else None

    def topic(self) -> str:
        return self.coordinates[0]

    def partition(self) -> int:
        return self.coordinates[1]

    def offset(self) -> int:
        return self.coordinates[2]

    def value(self) -> bytes | None:
        return self.data

    def key(self) -> bytes | None:
        return self.key_data

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, self.timestamp_ms)


@dataclass
class FakeConsumer:
    assigned: list[tuple[str, int]] = field(default_factory=list)
    seeks: list[tuple[str, int, int]] = field(default_factory=list)
    queued: list[list[FakeMessage]] = field(default_factory=list)  # what each consume() returns
    timeouts: list[float] = field(default_factory=list)  # each consume()'s timeout
    paused: set[tuple[str, int]] = field(default_factory=set)
    committed_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        self.timeouts.append(timeout)
        return self.queued.pop(0) if self.queued else []

    def at_end(self) -> FakeConsumer:
        """A reader (assign-only) whose partitions are all at their end: one EOF each."""
        self.queued = [[FakeMessage((topic, partition, 0), failed=True, error_code=KafkaError._PARTITION_EOF)
                        for topic, partition in self.assigned]]
        return self

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition) for topic, partition in self.assigned]

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned += [(tp.topic, tp.partition) for tp in partitions]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.committed_offsets.get((tp.topic, tp.partition), -1001))
                for tp in partitions]

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.committed_offsets.update({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return partitions

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> None:
        return None

    def list_topics(self, topic: str, timeout: float = -1) -> Any:
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions={0: None})})

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = [(tp.topic, tp.partition) for tp in partitions]
        self.at_end()

    def close(self) -> None:
        pass


@dataclass
class FakeProducer:
    """Records what a transaction wrote; `refuse_commit` makes the next commits fail with that error."""

    produced: list[tuple[str, bytes | None, bytes | None, int]] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)  # begin / commit / abort, in order
    offsets: list[list[tuple[str, int, int]]] = field(default_factory=list)
    refuse_commit: list[KafkaError] = field(default_factory=list)
    pending: list[tuple[str, bytes | None, bytes | None, int]] = field(default_factory=list)
    # At commit, each record gets the next offset of its partition; those produced with an
    # on_delivery callback get it reported, as librdkafka does.
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    callbacks: dict[int, Any] = field(default_factory=dict)  # index in `pending` → on_delivery
    delivery_reports: int = 0

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int = -1,
                callback: Any = None, on_delivery: Any = None, timestamp: int = 0, headers: Any = None) -> None:
        """The binding's parameters in its order (the worker passes them by position)."""
        on_delivery = callback if callback is not None else on_delivery
        if on_delivery is not None:
            self.callbacks[len(self.pending)] = on_delivery
        self.pending.append((topic, key, value, partition))

    def begin_transaction(self) -> None:
        self.transactions.append("begin")

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], group: Any, timeout: float = -1) -> None:
        self.offsets.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def commit_transaction(self, timeout: float = -1) -> None:
        if self.refuse_commit:
            raise KafkaException(self.refuse_commit.pop(0))
        self.transactions.append("commit")
        for index, (topic, _, _, partition) in enumerate(self.pending):
            offset = self.next_offsets.get((topic, partition), 0)
            self.next_offsets[(topic, partition)] = offset + 1
            if index in self.callbacks:
                self.delivery_reports += 1
                self.callbacks[index](None, FakeMessage((topic, partition, offset)))
        self.produced += self.pending
        self.pending, self.callbacks = [], {}

    def abort_transaction(self, timeout: float = -1) -> None:
        self.transactions.append("abort")
        self.pending, self.callbacks = [], {}

    def flush(self, timeout: float = -1) -> int:
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0

    def committed_to(self, topic: str) -> list[tuple[bytes | None, bytes | None, int]]:
        return [(key, value, partition) for name, key, value, partition in self.produced if name == topic]


@dataclass
class FakeClients:
    """The `Clients` a Worker is given: one consumer, a new FakeProducer each time one is asked for."""

    consumer_: FakeConsumer = field(default_factory=FakeConsumer)
    producers: list[FakeProducer] = field(default_factory=list)

    def consumer(self) -> FakeConsumer:
        return self.consumer_

    def producer(self) -> FakeProducer:
        self.producers.append(FakeProducer())
        return self.producers[-1]

    def admin(self) -> Any:
        raise AssertionError("a unit test opens the worker without the topic check")

    def reader(self, purpose: str) -> FakeConsumer:
        return FakeConsumer()
