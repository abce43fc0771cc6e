"""The records that flow through the worker: a raw Kafka message in, a validated per-user event
between the two stages, and the output records of SPEC §8 (enriched event, delta, state, DLQ).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from worker.core.values import JsonObject, same_value

Headers = tuple[tuple[str, bytes], ...]


class RawMessage:
    """One Kafka record of the raw topic (or one line of a `process-file` input).

    `decoded` may hold the value already decoded as JSON by a reader that had to decode it anyway
    (`process-file` decodes each input line): it must equal `orjson.loads(value)`."""

    __slots__ = ("decoded", "headers", "key", "offset", "partition", "timestamp_ms", "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, timestamp_ms: int, value: bytes | None,
                 key: bytes | None = None, headers: Headers = (), decoded: Any = None) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.timestamp_ms, self.value, self.key, self.headers = timestamp_ms, value, key, headers
        self.decoded = decoded

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Source:
    """Where a unit of input came from: the raw message, and the event's index in its envelope."""

    __slots__ = ("index", "offset", "partition", "topic")

    def __init__(self, topic: str, partition: int, offset: int, index: int | None) -> None:
        self.topic, self.partition, self.offset, self.index = topic, partition, offset, index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and (self.topic, self.partition, self.offset, self.index) == (
            other.topic, other.partition, other.offset, other.index)

    def __hash__(self) -> int:
        return hash((self.topic, self.partition, self.offset, self.index))

    def __repr__(self) -> str:
        return f"Source({self.topic!r}, {self.partition}, {self.offset}, {self.index})"

    def to_json(self) -> JsonObject:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "index": self.index}


class UserEvent:
    """A validated, normalised event keyed by its user: the value of the by-user topic.

    `event` holds the event after SPEC §2 (project_id, kept ids, integer time, truncated
    properties, given or derived insert_id, ingested_at), with its `user_properties` operations
    not yet applied and its experiment renames not yet made.
    """

    __slots__ = ("event", "skip_sync", "source", "user_key")

    def __init__(self, user_key: str, event: JsonObject, source: Source, skip_sync: bool = False) -> None:
        self.user_key, self.event, self.source, self.skip_sync = user_key, event, source, skip_sync

    @property
    def project_id(self) -> str:
        project: str = self.event["project_id"]
        return project

    @property
    def ingested_at(self) -> int:
        ingested_at: int = self.event["ingested_at"]
        return ingested_at

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserEvent) and (self.user_key, self.event, self.source, self.skip_sync) == (
            other.user_key, other.event, other.source, other.skip_sync)

    __hash__ = None  # type: ignore[assignment]  # mutable: equal by value, not hashable

    def to_bytes(self) -> bytes:
        """The by-user topic's value: internal, JSON, versioned."""
        source = self.source
        return orjson.dumps(
            {
                "v": 1,
                "user_key": self.user_key,
                "source": [source.topic, source.partition, source.offset, source.index],
                "skip_sync": self.skip_sync,
                "event": self.event,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> UserEvent:
        value: Any = orjson.loads(data)
        topic, partition, offset, index = value["source"]
        return cls(value["user_key"], value["event"], Source(topic, partition, offset, index), value["skip_sync"])


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """A rejected unit of input (SPEC §8.4); `payload` republished to the raw topic reproduces it."""

    reason: str
    detail: str
    source: Source
    ingested_at: int
    payload: bytes
    key: bytes | None = None
    headers: Headers = field(default=())

    def to_json(self) -> JsonObject:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source.to_json(),
            "ingested_at": self.ingested_at,
            "payload_b64": base64.b64encode(self.payload).decode("ascii"),
        }

    def kafka_headers(self) -> list[tuple[str, str | bytes | None]]:
        """The original message's headers, then the DLQ facts (SPEC §8.4)."""
        facts = [
            ("dlq.reason", self.reason),
            ("dlq.detail", self.detail[:1000]),
            ("dlq.source.topic", self.source.topic),
            ("dlq.source.partition", str(self.source.partition)),
            ("dlq.source.offset", str(self.source.offset)),
            ("dlq.source.index", "" if self.source.index is None else str(self.source.index)),
            ("dlq.ingested_at", str(self.ingested_at)),
        ]
        return [*self.headers, *((name, value.encode("utf-8")) for name, value in facts)]


def delta_record(user_event: UserEvent, event_type: str, changes: list[JsonObject]) -> JsonObject:
    """A user-property delta (SPEC §8.2)."""
    event = user_event.event
    return {
        "project_id": event["project_id"],
        "user_key": user_event.user_key,
        "user_id": event.get("user_id"),
        "device_id": event.get("device_id"),
        "event_type": event_type,
        "insert_id": event.get("insert_id"),
        "ingested_at": user_event.ingested_at,
        "changes": changes,
    }


def state_record(project_id: str, user_key: str, properties: JsonObject, updated_at: int) -> JsonObject:
    """The value of a user's record in the compacted user-state topic (SPEC §8.3)."""
    return {
        "project_id": project_id,
        "user_key": user_key,
        "user_properties": properties,
        "updated_at": updated_at,
    }


def changes_between(old: JsonObject, new: JsonObject) -> list[JsonObject]:
    """`{"property", "old", "new"}` for each property that differs, sorted by property."""
    return changes_of(old, new, list(new), True)


def changes_of(old: JsonObject, new: JsonObject, touched: list[str], cleared: bool) -> list[JsonObject]:
    """`changes_between` when only the `touched` names (and, after a `$clearAll`, every old one)
    can differ: an event's operations name the few properties they write, so the rest of the
    state is never compared."""
    names = set(touched)
    if cleared:
        names.update(old)
    changes: list[JsonObject] = []
    for name in sorted(names):
        before = old.get(name)
        after = new.get(name)
        if before is not after and not same_value(before, after):
            changes.append({"property": name, "old": before, "new": after})
    return changes
