"""Kafka messages as the core's inputs (the runner's first step): a raw message becomes a
`RawMessage` for the split stage (Avro raw input decoded to JSON first), a by-user record becomes
its `UserEvent`. What cannot be read goes to the DLQ with its reason, and the DLQ limit watches
the share of raw input that does."""

from __future__ import annotations

from confluent_kafka import Message

from worker.core.dlq_limit import DlqLimit
from worker.core.pipeline import Pipeline
from worker.core.records import DlqRecord, RawMessage, Source, UserEvent
from worker.core.split import Split
from worker.errors import DlqLimitExceeded
from worker.runtime.emitter import Emitter
from worker.serde import RawDecodeError, raw_to_json


class Intake:
    def __init__(self, pipeline: Pipeline, emitter: Emitter, dlq_limit: DlqLimit) -> None:
        self.pipeline, self.emitter, self.dlq_limit = pipeline, emitter, dlq_limit

    def split(self, message: Message) -> Split:
        """The split stage for one raw message; its rejections go to the DLQ, and the DLQ limit is kept."""
        raw = raw_message(message)
        decoded = None if raw.value is None else raw_to_json(raw.value)  # Avro raw input becomes JSON here
        if isinstance(decoded, RawDecodeError):
            split = Split([], [DlqRecord(decoded.reason, decoded.detail, Source(raw.topic, raw.partition, raw.offset,
                                         None), raw.timestamp_ms, raw.value or b"", raw.key, raw.headers)])
        else:
            raw.value = decoded
            split = self.pipeline.split(raw)
        for record in split.rejected:
            self.emitter.dlq(record)
        self.dlq_limit.record(len(split.events), len(split.rejected))
        tripped = self.dlq_limit.exceeded()
        if tripped:
            raise DlqLimitExceeded(
                f"{tripped}: is a producer or a deploy broken? Fix the input, or raise "
                "EXPERIMENT_WORKER_DLQ_MAX_RATIO / EXPERIMENT_WORKER_DLQ_MAX_CONSECUTIVE, then restart"
            )
        return split

    def by_user_event(self, message: Message, partition: int) -> UserEvent | None:
        """The by-user record's event; an unreadable record (never written by a worker) goes to the DLQ."""
        try:
            return UserEvent.from_bytes(message.value() or b"")
        except (ValueError, KeyError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
            topic, _, offset = coordinates(message)
            self.emitter.dlq(DlqRecord("processing_error", f"unreadable by-user record: {exc}",
                                       Source(topic, partition, offset, None), int(message.timestamp()[1]),
                                       message.value() or b"", message.key()))
            return None


def coordinates(message: Message) -> tuple[str, int, int]:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def message_headers(message: Message) -> tuple[tuple[str, bytes], ...]:
    pairs: list[tuple[str, bytes | str | None]] = list(message.headers() or [])  # type: ignore[arg-type]
    return tuple((name, value if isinstance(value, bytes) else (value or "").encode()) for name, value in pairs)


def raw_message(message: Message) -> RawMessage:
    topic, partition, offset = coordinates(message)
    return RawMessage(topic, partition, offset, int(message.timestamp()[1]), message.value(), message.key(),
                      message_headers(message))
