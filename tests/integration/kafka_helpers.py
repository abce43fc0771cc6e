"""Small helpers for tests against a real broker: create a topic and wait for it, read a topic to its end."""

from __future__ import annotations

import time
import uuid
from typing import NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


class ConsumedRecord(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int
    offset: int
    timestamp: int


def create_topic(
    admin: AdminClient, name: str, partitions: int = 1, config: dict[str, str] | None = None, timeout_s: float = 30.0
) -> None:
    """Create `name` (replication: the broker's default) and return once every partition has a leader."""
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, config=config or {})])
    futures[name].result(timeout=timeout_s)
    # create_topics returns when the controller accepted the topic, before every broker serves it.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topic = admin.list_topics(name, timeout=5).topics.get(name)
        ready = topic is not None and topic.error is None and len(topic.partitions) == partitions
        if ready and all(partition.leader >= 0 for partition in topic.partitions.values()):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {name} has no leader for all {partitions} partitions after {timeout_s} s")


def consume_all(
    bootstrap: str, topic: str, isolation: str = "read_committed", timeout_s: float = 30.0
) -> list[ConsumedRecord]:
    """Every record of `topic` from the beginning to its end, ordered by (partition, offset).

    The end is the partition EOF: the high watermark, or for read_committed the last stable
    offset, so an open transaction makes this wait (and time out) rather than miss records.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"consume-all-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in partitions])
        records: list[ConsumedRecord] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: only partitions {sorted(at_end)} read to their end in {timeout_s} s")
            for message in consumer.consume(500, timeout=0.2):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                elif error is not None:
                    raise RuntimeError(f"{topic}: {error}")
                else:
                    records.append(
                        ConsumedRecord(
                            message.key(),
                            message.value(),
                            list(message.headers() or []),
                            message.partition(),
                            message.offset(),
                            message.timestamp()[1],
                        )
                    )
    finally:
        consumer.close()
    return sorted(records, key=lambda record: (record.partition, record.offset))
