"""The topics of SPEC §1: create them with the right policies, and check them before starting.

The by-user, user-state and dedupe topics must have the same partition count: partition p of
by-user owns the state and dedupe entries written to partition p of the two changelogs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from worker.errors import ConfigError, TopologyError
from worker.runtime.broker import UNREACHABLE_CODES
from worker.runtime.clients import admin_config
from worker.runtime.kafka_errors import kafka_error
from worker.runtime.settings import GroupProtocol, WorkerSettings

log = logging.getLogger(__name__)

WEEK_MS = 7 * 86_400_000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]
    role: str


def topic_specs(settings: WorkerSettings) -> list[TopicSpec]:
    topics, n = settings.topics, settings.partitions
    return [
        # LogAppendTime: the record timestamp *is* the ingestion time (ingested_at), whatever clock
        # a producer has.
        TopicSpec(topics.raw, n, {"message.timestamp.type": "LogAppendTime"}, "raw input"),
        TopicSpec(topics.by_user, n, {}, "internal: validated events keyed by user"),
        TopicSpec(topics.enriched, n, {}, "enriched events"),
        TopicSpec(topics.deltas, n, {}, "user-property deltas"),
        TopicSpec(topics.state, n, {"cleanup.policy": "compact"}, "user state (compacted changelog)"),
        TopicSpec(topics.dlq, n, {}, "dead letters"),
        TopicSpec(topics.registry, 1, {"cleanup.policy": "compact"}, "experiment property names"),
        TopicSpec(
            topics.dedupe, n, {"cleanup.policy": "compact,delete", "retention.ms": str(WEEK_MS)}, "dedupe entries"
        ),
    ]


def admin_client(settings: WorkerSettings) -> AdminClient:
    return AdminClient(admin_config(settings))


def create_topics(admin: AdminClient, settings: WorkerSettings) -> list[str]:
    """Create the missing topics; returns the names created. Existing topics are left alone."""
    existing = set(admin.list_topics(timeout=15).topics)
    wanted = [spec for spec in topic_specs(settings) if spec.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions, settings.replication_factor, config=s.config) for s in wanted],
        operation_timeout=30,
    )
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise TopologyError(f"could not create topic {name}: {exc}") from exc
    return [spec.name for spec in wanted]


def partition_counts(admin: AdminClient, names: list[str]) -> dict[str, int]:
    metadata = admin.list_topics(timeout=15).topics
    return {name: len(metadata[name].partitions) for name in names if name in metadata}


def check_topics(admin: AdminClient, settings: WorkerSettings) -> dict[str, int]:
    """Raise TopologyError, naming the numbers, unless the topics are as the worker needs them."""
    topics = settings.topics
    needed = [topics.raw, topics.state, topics.dedupe, topics.registry, topics.enriched, topics.deltas, topics.dlq]
    if not settings.skip_split:
        needed.append(topics.by_user)
    counts = partition_counts(admin, needed)
    missing = [name for name in needed if name not in counts]
    if missing:
        raise TopologyError(
            f"missing topics: {', '.join(missing)} (run `experiment-worker topics create`)"
        )
    keyed = topics.raw if settings.skip_split else topics.by_user
    for changelog in (topics.state, topics.dedupe):
        if counts[keyed] != counts[changelog]:
            raise TopologyError(
                f"{keyed} has {counts[keyed]} partitions but {changelog} has {counts[changelog]}: "
                "they must be equal, because partition p of one owns partition p of the other"
            )
    compacted = describe_cleanup_policies(admin, [topics.state, topics.registry])
    for name, policy in compacted.items():
        if "compact" not in policy:
            raise TopologyError(f"{name} has cleanup.policy={policy}; it must be compacted")
    return counts


def describe_cleanup_policies(admin: AdminClient, names: list[str]) -> dict[str, str]:
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    policies = {}
    for resource, future in admin.describe_configs(resources).items():
        configs = future.result()
        policies[resource.name] = configs["cleanup.policy"].value
    return policies


def describe_topics(admin: AdminClient, settings: WorkerSettings) -> list[str]:
    """One line per topic of SPEC §1: name, role, partitions, cleanup policy."""
    specs = topic_specs(settings)
    counts = partition_counts(admin, [spec.name for spec in specs])
    policies = describe_cleanup_policies(admin, [spec.name for spec in specs if spec.name in counts])
    return [
        f"{spec.name:45} {spec.role:42} "
        + (f"{counts[spec.name]:3} partitions  cleanup.policy={policies[spec.name]}" if spec.name in counts
           else "MISSING")
        for spec in specs
    ]


def group_configs(settings: WorkerSettings) -> dict[str, int]:
    """The group-level settings KIP-848 keeps on the broker, from `session_timeout_ms` and
    `heartbeat_interval_ms` (a heartbeat a third of the session when only the session is set)."""
    if settings.group_protocol is not GroupProtocol.CONSUMER or settings.session_timeout_ms is None:
        heartbeat = settings.heartbeat_interval_ms if settings.group_protocol is GroupProtocol.CONSUMER else None
        return {} if heartbeat is None else {"consumer.heartbeat.interval.ms": heartbeat}
    heartbeat = settings.heartbeat_interval_ms or settings.session_timeout_ms // 3
    return {"consumer.session.timeout.ms": settings.session_timeout_ms, "consumer.heartbeat.interval.ms": heartbeat}


def prepare(admin: AdminClient, settings: WorkerSettings) -> dict[str, int]:
    """A run's first calls once Kafka answers: the topics checked, the group's settings set; the
    topics' partition counts."""
    counts = check_topics(admin, settings)
    log.info("topics checked: %s", counts)
    configure_group(admin, settings)
    return counts


def configure_group(admin: AdminClient, settings: WorkerSettings) -> None:
    """Set the group's session timeout and heartbeat on the broker (KIP-848); a refusal is a bad config."""
    configs = group_configs(settings)
    if not configs:
        return
    entries = [ConfigEntry(name, str(value), incremental_operation=AlterConfigOpType.SET)
               for name, value in configs.items()]
    resource = ConfigResource(ResourceType.GROUP, settings.group_id, incremental_configs=entries)
    for future in admin.incremental_alter_configs([resource]).values():
        try:
            future.result()
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is not None and error.code() in UNREACHABLE_CODES:
                raise  # no broker answered: not a refusal
            raise ConfigError(
                f"setting session_timeout_ms/heartbeat_interval_ms: the broker refused {configs} for group "
                f"{settings.group_id}: {error.str() if error is not None else exc} (or use group_protocol=classic)"
            ) from None
