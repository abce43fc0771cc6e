"""Write raw records, read topics back, and compare the Kafka path with the offline path record by
record (SPEC §10: the two paths produce the same records): what was lost, duplicated or wrong.
Used by the demo, the integration tests, the stress suite and the benchmarks.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from dev.loadgen import RawRecord, encode_line
from worker.core.config import CoreConfig
from worker.offline import process_file
from worker.runtime.intake import coordinates, message_headers
from worker.runtime.ops import scan
from worker.runtime.settings import WorkerSettings
from worker.serde import codec_for


def produce_raw(settings: WorkerSettings, records: list[RawRecord]) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random",
                         "linger.ms": 5})
    for record in records:
        send(producer, settings.topics.raw, record)
    assert producer.flush(30) == 0


def send(producer: Producer, topic: str, record: RawRecord) -> None:
    """Produce one raw record as it is on the wire; the broker stamps it (its ingestion time)."""
    key = None if record.key is None else record.key.encode()
    producer.produce(topic, key=key, value=record.encoded(), headers=list(record.headers.items()) or None)
    producer.poll(0)


class StreamWriter(threading.Thread):
    """Writes the generated raw stream at an even pace over `duration_s`; an idempotent producer
    with a long delivery timeout rides out broker restarts without losing or repeating a record."""

    def __init__(self, settings: WorkerSettings, records: list[RawRecord], duration_s: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.records, self.duration_s = settings, records, duration_s
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = Producer({"bootstrap.servers": self.settings.bootstrap_servers, "enable.idempotence": True,
                                 "linger.ms": 5, "delivery.timeout.ms": 600_000})
            started = time.monotonic()
            for n, record in enumerate(self.records):
                send(producer, self.settings.topics.raw, record)
                ahead = started + self.duration_s * (n + 1) / len(self.records) - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if producer.flush(600) != 0:
                raise RuntimeError("the raw stream was not fully delivered")
        except BaseException as exc:  # reported by the driver
            self.error = exc


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
    source = workdir / "raw.jsonl"
    source.write_bytes(b"".join(encode_line(as_raw_record(record)) for record in raw))
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


def expected_outputs(settings: WorkerSettings, workdir: Path, timeout_s: float = 30.0) -> Outputs:
    """What the worker must write for everything the raw topic holds now: process-file on it."""
    raw = read_topic(settings.bootstrap_servers, settings.topics.raw, timeout_s=timeout_s)
    return offline_outputs(raw, workdir, settings.core_config())


def as_raw_record(read: Read) -> RawRecord:
    """A record read from the raw topic as a `process-file` input record, with its broker timestamp."""
    key = None if read.key is None else read.key.decode()
    headers = {name: value.decode() for name, value in read.headers}
    value = read.value or b""
    try:
        return RawRecord(key, value=orjson.loads(value), headers=headers, timestamp_ms=read.timestamp)
    except orjson.JSONDecodeError:
        return RawRecord(key, value_raw=value.decode("utf-8", "surrogateescape"), headers=headers,
                         timestamp_ms=read.timestamp)


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


def expected_counts(settings: WorkerSettings, expected: Outputs) -> dict[str, int]:
    """`wait_for_outputs`' argument: how many records each output topic must hold for `expected`."""
    counts, topics = count_records(expected), settings.topics
    return {topics.enriched: counts["events"], topics.deltas: counts["deltas"], topics.dlq: counts["dlq"]}


def diff(expected: Outputs, got: Outputs) -> tuple[int, int, int]:
    """(lost, duplicated, wrong) records of `got` against `expected`, as multisets per user and
    topic; a user whose records are all there but in another order counts them as wrong, and so
    does a user whose final state differs."""
    lost = duplicated = wrong = 0
    for kind in ("events", "deltas"):
        want, have = getattr(expected, kind), getattr(got, kind)
        for user in want.keys() | have.keys():
            a, b = want.get(user, []), have.get(user, [])
            damage = multiset_damage(canonical(a), canonical(b))
            lost, duplicated, wrong = lost + damage[0], duplicated + damage[1], wrong + damage[2]
            if damage == (0, 0, 0) and a != b:
                wrong += len(a)
    damage = multiset_damage(map(repr, expected.dlq), map(repr, got.dlq))
    lost, duplicated, wrong = lost + damage[0], duplicated + damage[1], wrong + damage[2]
    wrong += len(differing_states(expected, got))
    return lost, duplicated, wrong


def canonical(records: list[Any]) -> list[str]:
    """Each record as sorted-key JSON: equal records compare equal, whatever their key order."""
    return [orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode() for record in records]


def differing_states(expected: Outputs, got: Outputs) -> list[str]:
    """The users whose final state differs (or is there on one side only), in key order."""
    return [key for key in sorted(expected.state.keys() | got.state.keys())
            if expected.state.get(key) != got.state.get(key)]


def damage_report(expected: Outputs, got: Outputs, users: int = 30) -> list[dict[str, Any]]:
    """What `diff` counted, for the first `users` damaged users of each kind: the records missing
    from `got` and those it has that were not expected (as sorted-key JSON), or the two final states."""
    report: list[dict[str, Any]] = []
    for kind in ("events", "deltas"):
        want, have = getattr(expected, kind), getattr(got, kind)
        shown = 0
        for user in sorted(want.keys() | have.keys()):
            a, b = Counter(canonical(want.get(user, []))), Counter(canonical(have.get(user, [])))
            if a == b and want.get(user) == have.get(user):
                continue
            report.append({"kind": kind, "user": user, "missing": list((a - b).elements()),
                           "unexpected": list((b - a).elements()), "reordered": a == b})
            shown += 1
            if shown >= users:
                break
    report += [{"kind": "state", "user": key, "expected": expected.state.get(key), "got": got.state.get(key)}
               for key in differing_states(expected, got)[:users]]
    return report


def multiset_damage(expected: Iterable[Hashable], got: Iterable[Hashable]) -> tuple[int, int, int]:
    """(lost, duplicated, wrong): expected items missing from `got`, extra copies of expected items,
    and items that were never expected."""
    want, have = Counter(expected), Counter(got)
    extra = have - want
    return (sum((want - have).values()), sum(n for item, n in extra.items() if item in want),
            sum(n for item, n in extra.items() if item not in want))
