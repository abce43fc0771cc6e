"""`experiment-worker experiments report` against Kafka (issue 17): the users per variant of the
configured flags, read from the compacted user-state topic to its end, read_committed, with a
plain assign-only consumer, so a running worker is not disturbed.

The topic may still hold several records of a user (compaction is lazy), so the last one wins;
only the configured flags' values of each user are kept while reading, not whole states.
"""

from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from worker.core.flags import Flags
from worker.core.identity import project_of
from worker.core.values import JsonObject
from worker.runtime.ops import reader, scan
from worker.runtime.settings import WorkerSettings
from worker.serde import codec_for


def experiment_states(settings: WorkerSettings, flags: Flags) -> Iterator[tuple[str, JsonObject]]:
    """(user key, the user's configured flag properties) for each user of a project with flags."""
    topic = settings.topics.state
    codec = codec_for("state", settings.formats.get("state", "json"))
    latest: dict[str, JsonObject] = {}
    consumer = reader(settings)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for message in scan(consumer, [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions], True):
            key = message.key()
            if key is None:
                continue
            user_key = key.decode("utf-8")
            names = flags.by_property.get(project_of(user_key))
            if not names:
                continue
            value = message.value()
            properties = {} if value is None else codec.decode(value)["user_properties"]  # null: a tombstone
            kept = {name: properties[name] for name in names if name in properties}
            if kept:
                latest[user_key] = kept
            else:
                latest.pop(user_key, None)
    finally:
        consumer.close()
    return iter(latest.items())
