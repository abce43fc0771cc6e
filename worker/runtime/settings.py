"""The worker's settings: one frozen model, read from `EXPERIMENT_WORKER_*` environment variables
and CLI overrides. librdkafka settings the worker does not interpret pass through in `kafka`.

A bad value ends start-up with one line naming the setting (`load_settings`).
"""

from __future__ import annotations

import socket
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.config_files import read_flags, read_projects
from worker.core.config import CoreConfig
from worker.core.flags import Flags
from worker.errors import ConfigError

ENV_PREFIX = "EXPERIMENT_WORKER_"
# librdkafka settings whose values are secrets: never printed or logged.
SECRET_KAFKA_KEYS = frozenset(
    {"sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret"}
)


class Guarantee(StrEnum):
    EXACTLY_ONCE = "exactly-once"
    AT_LEAST_ONCE = "at-least-once"


class GroupProtocol(StrEnum):
    # KIP-848 (Kafka >= 4.0): the broker assigns with its range assignor, so partition N of the
    # raw and the by-user topic go to the same member and each topic is balanced on its own.
    CONSUMER = "consumer"
    # The pre-4.0 protocol, cooperative-sticky: balances the count of partitions over both topics
    # together, so one instance may own every by-user (stateful) partition.
    CLASSIC = "classic"


# librdkafka settings that are group settings on the broker under the KIP-848 protocol.
GROUP_SIDE_KAFKA_KEYS = {"session.timeout.ms": "session_timeout_ms", "heartbeat.interval.ms": "heartbeat_interval_ms"}


class StateStore(StrEnum):
    # RocksDB per partition under state_dir: memory bounded by state_cache_bytes, and a restart reads
    # only the changelogs' tail. The default for `run`.
    DISK = "disk"
    # Everything in the process (as changelog bytes): no disk, a full restore on every start.
    MEMORY = "memory"


class Compression(StrEnum):  # librdkafka's compression.type for every record the worker writes
    NONE = "none"
    GZIP = "gzip"
    SNAPPY = "snappy"
    LZ4 = "lz4"
    ZSTD = "zstd"


class Format(StrEnum):
    JSON = "json"
    AVRO = "avro"


class Topics(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    raw: str = "events.raw"
    by_user: str = "experiment-worker.by-user"
    enriched: str = "events.enriched"
    deltas: str = "user-properties.deltas"
    state: str = "user-state"
    dlq: str = "events.dlq"
    registry: str = "experiment-worker.experiment-properties"
    dedupe: str = "experiment-worker.dedupe"


class WorkerSettings(BaseSettings):
    """Every setting, with its default. Environment: EXPERIMENT_WORKER_<NAME>; nested with `__`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", frozen=True, extra="forbid", validate_default=True
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "experiment-worker"
    # Stable per instance: it names the transactional producer, so a restarted instance fences
    # its own zombie at once. Defaults to the host name (a pod name under Kubernetes).
    instance_id: str = Field(default_factory=socket.gethostname)
    topics: Topics = Topics()
    guarantee: Guarantee = Guarantee.EXACTLY_ONCE
    commit_interval_ms: int = Field(default=100, ge=1)
    commit_every_messages: int = Field(default=5000, ge=1)
    # Once the worker has caught up with its input, a batch commits when it is this old rather
    # than commit_interval_ms: latency at ordinary loads is then a few commits' time, and under
    # load (consume() returns full batches) the full interval applies. ≥ commit_interval_ms: off.
    commit_idle_ms: int = Field(default=20, ge=1)
    # How long the producer waits to fill a batch (librdkafka linger.ms); see runtime/clients.py.
    linger_ms: int = Field(default=20, ge=0, le=60_000)
    # The compression of the worker's produce batches (runtime/clients.py): lz4 by default.
    compression_type: Compression = Compression.LZ4
    transaction_timeout_ms: int = Field(default=60_000, ge=1000)
    group_protocol: GroupProtocol = GroupProtocol.CONSUMER
    # How long a silent member keeps its partitions, and how often members heartbeat. None: the
    # broker's (KIP-848) or librdkafka's (classic) default. Under KIP-848 the worker sets them on
    # its group at start (the broker's group.consumer.min/max.* bound them).
    session_timeout_ms: int | None = Field(default=None, ge=1000)
    heartbeat_interval_ms: int | None = Field(default=None, ge=100)
    skip_split: bool = False
    # An event whose by-user partition this instance owns is processed where it is split, in the
    # same transaction, instead of going through the by-user topic (runtime/shortcut.py).
    by_user_shortcut: bool = True
    # Core rules (SPEC §2, §6)
    min_id_length: int = Field(default=5, ge=0)
    max_message_bytes: int = Field(default=1_000_000, ge=1)
    max_events_per_message: int = Field(default=2000, ge=1)
    experiment_property_limit: int = Field(default=1500, ge=0)
    projects_file: Path | None = None
    # Experiment health (issue 17): per project and flag, the allocation and the custom exposure.
    flags_file: Path | None = None
    # DLQ limit (SPEC §10, arroyo-style): stop when more than this share of the last
    # `dlq_window` units (events or rejected messages) went to the DLQ; 1.0 turns it off...
    dlq_max_ratio: float = Field(default=0.9, gt=0.0, le=1.0)
    dlq_window: int = Field(default=1000, ge=1)
    # ...or when more than this many units in a row went to the DLQ (None: no such limit).
    dlq_max_consecutive: int | None = Field(default=None, ge=1)
    # Topic creation
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    # Operations
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    restore_timeout_s: float = Field(default=300.0, gt=0)
    # Where and how partitions keep their state (worker/runtime/local_state.py).
    state_store: StateStore = StateStore.DISK
    state_dir: Path = Path("experiment-worker-state")
    # The decoded users held in memory, in front of the store (estimated bytes, shared by a process's
    # partitions).
    state_cache_bytes: int = Field(default=256 * 2**20, ge=0)
    # How long `run` waits for a broker to answer at start (/readyz false, a line per attempt)
    # before it exits with status 3 (Kafka unreachable): a restart by the orchestrator then says so.
    startup_timeout_s: float = Field(default=60.0, gt=0)
    # librdkafka's log lines: at most one of each kind (level, facility) this often; 0 lets all through.
    kafka_log_interval_s: float = Field(default=30.0, ge=0)
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    # Hung transactional calls abandoned with their producer (librdkafka#5456) still blocked at once:
    # one more and the process exits with status 4 for a restart (runtime/kafka_errors.py).
    max_hung_calls: int = Field(default=3, ge=0)
    formats: dict[str, Format] = Field(default_factory=dict)
    kafka: dict[str, str] = Field(default_factory=dict)
    kafka_secrets: dict[str, SecretStr] = Field(default_factory=dict)

    @field_validator("projects_file", "flags_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("formats")
    @classmethod
    def _known_kinds(cls, value: dict[str, Format]) -> dict[str, Format]:
        unknown = set(value) - {"raw", "enriched", "deltas", "state", "dlq"}
        if unknown:
            raise ValueError(f"unknown topic kind {sorted(unknown)[0]!r}: use raw, enriched, deltas, state or dlq")
        return value

    @model_validator(mode="after")
    def _secrets_are_secret(self) -> WorkerSettings:
        leaked = SECRET_KAFKA_KEYS & self.kafka.keys()
        if leaked:
            raise ValueError(f"put {', '.join(sorted(leaked))} in kafka_secrets, not kafka")
        return self

    @model_validator(mode="after")
    def _group_settings_not_in_kafka(self) -> WorkerSettings:
        for key, setting in GROUP_SIDE_KAFKA_KEYS.items():
            if key in self.kafka:
                raise ValueError(f"set {setting}, not kafka.{key} (a group setting under KIP-848)")
        return self

    @property
    def exactly_once(self) -> bool:
        return self.guarantee is Guarantee.EXACTLY_ONCE

    def transactional_id(self) -> str:
        return f"{self.group_id}-{self.instance_id}"

    def kafka_config(self) -> dict[str, str]:
        """Pass-through librdkafka settings, secrets included (never log this)."""
        return {**self.kafka, **{k: v.get_secret_value() for k, v in self.kafka_secrets.items()}}

    def core_config(self) -> CoreConfig:
        return CoreConfig(
            min_id_length=self.min_id_length,
            max_message_bytes=self.max_message_bytes,
            max_events_per_message=self.max_events_per_message,
            experiment_property_limit=self.experiment_property_limit,
            projects=None if self.projects_file is None else read_projects(self.projects_file),
        )

    def flags(self) -> Flags:
        """The flags of `flags_file` (none without one); a bad file is a ConfigError naming it."""
        return Flags() if self.flags_file is None else read_flags(self.flags_file)

    def describe(self) -> dict[str, Any]:
        """The effective settings, secrets masked, for `check-config` and the start-up log."""
        shown = self.model_dump(mode="json")
        shown["kafka_secrets"] = {key: "**********" for key in self.kafka_secrets}
        return shown


def load_settings(**overrides: Any) -> WorkerSettings:
    """Environment first, CLI overrides on top; a bad value is one line naming the setting."""
    try:
        return WorkerSettings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        env = ENV_PREFIX + name.replace(".", "__").upper()
        shown = error.get("input")
        got = "" if isinstance(shown, dict) or shown is None else f" (got {str(shown)[:60]!r})"
        raise ConfigError(f"setting {name} ({env}): {error['msg']}{got}") from None
