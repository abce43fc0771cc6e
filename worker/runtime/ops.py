"""Operations commands for SREs: `state get`, `dlq stats`, `dlq replay`, `lag`.

They read the worker's topics with plain consumers (read_committed, assign-only, no group), so
they never disturb a running worker.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, IsolationLevel, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from worker.errors import KafkaUnreachable
from worker.runtime.clients import common_config
from worker.runtime.intake import coordinates, message_headers
from worker.runtime.restore import restore_consumer
from worker.runtime.settings import WorkerSettings
from worker.serde import codec_for

DLQ_HEADER_PREFIX = "dlq."


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's and librdkafka's), as a signed 32-bit number."""
    length, seed, m, r = len(data), 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length % 4
    if tail:
        rest = data[length - tail :]
        if tail == 3:
            h ^= rest[2] << 16
        if tail >= 2:
            h ^= rest[1] << 8
        h ^= rest[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the murmur2 partitioners choose for `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def reader(settings: WorkerSettings) -> Consumer:
    return restore_consumer(settings, f"ops-{uuid.uuid4().hex[:8]}")


def scan(
    consumer: Consumer, partitions: list[TopicPartition], progress: bool = False, timeout_s: float | None = None
) -> Iterator[Message]:
    """Every record of `partitions` the consumer's isolation level shows, from their assigned
    offsets to their end; TimeoutError when the end is not reached within `timeout_s`."""
    consumer.assign(partitions)
    pending = {(tp.topic, tp.partition) for tp in partitions}
    seen = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while pending:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"could not read {sorted(pending)} to the end in {timeout_s} s")
        for message in consumer.consume(1000, timeout=1.0):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((message.topic() or "", message.partition() or 0))
                continue
            seen += 1
            if progress and seen % 100_000 == 0:
                print(f"\r  {seen:,} records read", end="", file=sys.stderr, flush=True)
            yield message
    if progress and seen >= 100_000:
        print(file=sys.stderr)


def state_get(settings: WorkerSettings, user_key: str) -> dict[str, Any] | None:
    """The user's current state record from the compacted user-state topic, or None."""
    topic = settings.topics.state
    consumer = reader(settings)
    try:
        partitions = len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        tp = TopicPartition(topic, partition_for(user_key.encode(), partitions), OFFSET_BEGINNING)
        codec = codec_for("state", settings.formats.get("state", "json"))
        found: dict[str, Any] | None = None
        for message in scan(consumer, [tp], progress=True):
            if message.key() == user_key.encode():
                value = message.value()
                found = None if value is None else codec.decode(value)
        return found
    finally:
        consumer.close()


def dlq_records(settings: WorkerSettings) -> Iterator[tuple[Message, dict[str, Any]]]:
    topic = settings.topics.dlq
    consumer = reader(settings)
    codec = codec_for("dlq", settings.formats.get("dlq", "json"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for message in scan(consumer, [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions], True):
            yield message, codec.decode(message.value() or b"")
    finally:
        consumer.close()


def dlq_stats(settings: WorkerSettings) -> Counter[str]:
    return Counter(record["reason"] for _, record in dlq_records(settings))


def dlq_end_offsets(settings: WorkerSettings) -> dict[int, int]:
    topic = settings.topics.dlq
    consumer = reader(settings)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def dlq_replay(settings: WorkerSettings, reason: str | None, dry_run: bool) -> int:
    """Republish DLQ payloads to the raw topic with their original key and headers."""
    import base64

    # murmur2_random, as the upstream producers key (SPEC §1): a replayed unit lands on the
    # partition its key always used.
    producer = None if dry_run else Producer({**common_config(settings), "partitioner": "murmur2_random"})
    replayed = 0
    # Only the records in the DLQ when the replay starts: a running worker rejects the replayed
    # units again, and those new records must not be read (and replayed) by this same scan.
    ends = dlq_end_offsets(settings)
    for message, record in dlq_records(settings):
        _, partition, offset = coordinates(message)
        if offset >= ends.get(partition, 0) or (reason is not None and record["reason"] != reason):
            continue
        replayed += 1
        if producer is not None:
            headers: list[tuple[str, str | bytes | None]] = [
                (name, value) for name, value in message_headers(message)
                if not name.startswith(DLQ_HEADER_PREFIX)]
            payload = record.get("payload")
            value = payload if isinstance(payload, bytes) else base64.b64decode(record["payload_b64"])
            producer.produce(settings.topics.raw, key=message.key(), value=value, headers=headers or None)
            producer.poll(0)
    if producer is not None and producer.flush(30):
        raise KafkaUnreachable(f"dlq replay: some records were not delivered to {settings.bootstrap_servers} in 30 s")
    return replayed


def consumer_lag(settings: WorkerSettings, admin: AdminClient) -> list[tuple[str, int, int, int, int]]:
    """(topic, partition, committed offset, end offset, lag) for the worker's input partitions.

    The by-user topic is written in transactions, so each of its partitions may show a lag of 1:
    the commit marker after the last record, which no consumer commits past."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    topics = [settings.topics.raw] if settings.skip_split else [settings.topics.raw, settings.topics.by_user]
    metadata = admin.list_topics(timeout=10).topics
    partitions = [TopicPartition(t, p) for t in topics if t in metadata for p in metadata[t].partitions]
    request = [ConsumerGroupTopicPartitions(settings.group_id, partitions)]
    committed = next(iter(admin.list_consumer_group_offsets(request).values())).result()
    by_partition = {(tp.topic, tp.partition): tp.offset for tp in committed.topic_partitions}
    ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions},  # type: ignore[no-untyped-call]
                              isolation_level=IsolationLevel.READ_COMMITTED)
    rows = []
    for tp, future in sorted(ends.items(), key=lambda item: (item[0].topic, item[0].partition)):
        end = future.result().offset
        done = max(by_partition.get((tp.topic, tp.partition), 0), 0)
        rows.append((tp.topic, tp.partition, done, end, max(0, end - done)))
    return rows
