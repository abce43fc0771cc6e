"""Topics for tests against a real broker: one topic, created and waited for until every
partition has a leader, or all of a worker's; and a topic setting changed on a live topic (to
make the broker refuse writes, say). Reading a topic to its end is dev.verify.read_topic."""

from __future__ import annotations

import time

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from worker.runtime.settings import WorkerSettings
from worker.runtime.topics import admin_client, create_topics


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


def create_all_topics(settings: WorkerSettings) -> None:
    """Every topic of SPEC §1 under `settings`' names, as `experiment-worker topics create` does."""
    create_topics(admin_client(settings), settings)


def set_topic_config(admin: AdminClient, topic: str, name: str, value: str | None) -> None:
    """Set `name` on `topic` (None: back to the broker's default), incrementally: other settings stay."""
    operation = AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
    resource = ConfigResource(ResourceType.TOPIC, topic,
                              incremental_configs=[ConfigEntry(name, value, incremental_operation=operation)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
