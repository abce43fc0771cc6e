"""Read topics back and compare the Kafka path with the offline path (SPEC §10: the two paths
produce the same records). Used by the demo, the integration tests and the stress suite.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from worker.core.config import CoreConfig
from worker.loadgen import RawRecord
from worker.offline import process_file
from worker.runtime.ops import scan
from worker.runtime.runner import coordinates, message_headers
from worker.runtime.settings import WorkerSettings
from worker.serde import codec_for


def produce_raw(settings: WorkerSettings, records: list[RawRecord]) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random",
                         "linger.ms": 5})
    for record in records:
        value = record.encoded()
        producer.produce(settings.topics.raw, key=None if record.key is None else record.key.encode(),
                         value=value, headers=list(record.headers.items()) or None)
        producer.poll(0)
    assert producer.flush(30) == 0


@dataclass
class Read:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 30.0, isolation: str = "read_committed"
) -> list[Read]:
    """Every record of `topic` (committed ones by default), partition by partition, in offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "isolation.level": isolation,
                         "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assigned = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        out = [
            Read(message.key(), message.value(), partition, offset, message.timestamp()[1],
                 list(message_headers(message)))
            for message in scan(consumer, assigned, timeout_s=timeout_s)
            for _, partition, offset in [coordinates(message)]
        ]
    finally:
        consumer.close()
    return sorted(out, key=lambda r: (r.partition, r.offset))


def wait_for_outputs(settings: WorkerSettings, expected: dict[str, int], timeout_s: float = 120.0) -> None:
    """Wait until the output topics hold the expected number of committed records."""
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = {topic: len(read_topic(settings.bootstrap_servers, topic)) for topic in expected}
        if all(counts[t] >= n for t, n in expected.items()):
            return
        time.sleep(0.5)
    raise AssertionError(f"outputs incomplete after {timeout_s} s: {counts} < {expected}")


@dataclass
class Outputs:
    events: dict[str, list[Any]]  # per user key, in order
    deltas: dict[str, list[Any]]
    dlq: list[Any]  # sorted, without the source (file vs topic)
    state: dict[str, Any]


def offline_outputs(raw: list[Read], workdir: Path, config: CoreConfig) -> Outputs:
    """process-file on the raw topic's records, read back with their broker timestamps."""
    lines = []
    for record in raw:
        line: dict[str, Any] = {"timestamp": record.timestamp}
        if record.key is not None:
            line["key"] = record.key.decode()
        if record.headers:
            line["headers"] = {k: v.decode() for k, v in record.headers}
        try:
            line["value"] = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            line["value_raw"] = (record.value or b"").decode("utf-8", "surrogateescape")
        lines.append(line)
    source = workdir / "raw.jsonl"
    source.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    out = workdir / "out"
    process_file(source, out, config, now_ms=0)

    def load(name: str) -> list[Any]:
        return [orjson.loads(line) for line in (out / name).read_bytes().splitlines() if line]

    return Outputs(
        events=by_user(load("events.jsonl"), "events"),
        deltas=by_user(load("deltas.jsonl"), "deltas"),
        dlq=comparable_dlq(load("dlq.jsonl")),
        state={row["key"]: row["user_properties"] for row in load("state.jsonl")},
    )


def kafka_outputs(settings: WorkerSettings) -> Outputs:
    """The committed outputs of a worker, decoded with the formats it was configured with."""
    bootstrap, topics = settings.bootstrap_servers, settings.topics

    def decoded(kind: str, topic: str) -> list[Any]:
        codec = codec_for(kind, settings.formats.get(kind, "json"))
        return [codec.decode(r.value or b"") for r in read_topic(bootstrap, topic)]

    state_codec = codec_for("state", settings.formats.get("state", "json"))
    state: dict[str, Any] = {}
    for record in read_topic(bootstrap, topics.state):
        key = (record.key or b"").decode()
        if record.value is None:
            state.pop(key, None)
        else:
            state[key] = state_codec.decode(record.value)["user_properties"]
    return Outputs(
        events=by_user(decoded("enriched", topics.enriched), "events"),
        deltas=by_user(decoded("deltas", topics.deltas), "deltas"),
        dlq=comparable_dlq(decoded("dlq", topics.dlq)),
        state=state,
    )


def user_of(record: dict[str, Any]) -> str:
    if "user_key" in record:
        return str(record["user_key"])
    who = f"u:{record['user_id']}" if record.get("user_id") is not None else f"d:{record['device_id']}"
    return f"{record['project_id']}/{who}"


def by_user(records: list[Any], _kind: str) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        grouped[user_of(record)].append(record)
    return dict(grouped)


def comparable_dlq(records: list[Any]) -> list[Any]:
    """DLQ records without their source topic, partition and offset, which differ by design."""
    rows = [(r["reason"], r["source"]["index"], r["ingested_at"], base64.b64decode(r["payload_b64"]))
            for r in records]
    return sorted(rows, key=repr)


def count_records(outputs: Outputs) -> dict[str, int]:
    return {
        "events": sum(map(len, outputs.events.values())),
        "deltas": sum(map(len, outputs.deltas.values())),
        "dlq": len(outputs.dlq),
    }
