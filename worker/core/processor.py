"""The stateful stage (SPEC §3–§7): one validated event and the user's stores in, outputs out.

`process_event` dedupes, applies the experiment rules and the user-property operations, and
returns the enriched event, the delta and the new state record. Store writes happen last, all
together, so an event that fails part-way changes nothing (`processing_error`, SPEC §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from worker.core import reasons
from worker.core.config import CoreConfig
from worker.core.experiments import (
    ASSIGNMENT,
    EXPERIMENT_PREFIX,
    EXPOSURE,
    FLAG_KEY,
    IMPRESSION,
    VARIANT,
    experiment_property,
    is_experiment_property,
    prefix_assignment_properties,
    rename_exposure_properties,
    renamed_type,
)
from worker.core.identity import project_of
from worker.core.operations import SET, UNSET, Operation, apply_operations, parse_operations
from worker.core.records import DlqRecord, UserEvent, changes_between, delta_record, state_record
from worker.core.split import PROJECT_HEADER, SKIP_SYNC
from worker.core.stores import ExperimentRegistry, TransactionalMap
from worker.core.values import JsonObject

IDENTIFY = "$identify"
GROUP_IDENTIFY = "$groupidentify"


@dataclass(slots=True)
class Outcome:
    """Everything one event produced; the runtime turns it into Kafka records and metrics."""

    event: JsonObject | None = None
    delta: JsonObject | None = None
    state: JsonObject | None = None
    dedupe: tuple[str, int] | None = None
    admitted: list[str] = field(default_factory=list)
    dlq: DlqRecord | None = None
    duplicate: bool = False
    unset_exposure: bool = False
    limit_dropped: int = 0
    add_ignored: int = 0


@dataclass(slots=True)
class PartitionStores:
    """The stores of one by-user partition: user state and dedupe entries."""

    state: TransactionalMap[JsonObject] = field(default_factory=TransactionalMap)
    dedupe: TransactionalMap[int] = field(default_factory=TransactionalMap)

    def commit(self) -> None:
        self.state.commit()
        self.dedupe.commit()

    def rollback(self) -> None:
        self.state.rollback()
        self.dedupe.rollback()


def restore_user(stores: PartitionStores, registry: ExperimentRegistry, user_key: str,
                 properties: JsonObject | None) -> None:
    """Load a user's committed state (None deletes it). Its experiment property names count as
    admitted under the limit of SPEC §6, whatever the registry says: names in use keep working."""
    stores.state.load(user_key, properties)
    if properties is not None:
        project = project_of(user_key)
        for name in properties:
            if name.startswith(EXPERIMENT_PREFIX):  # is_experiment_property, inlined: a restore's hot loop
                registry.load(project, name)


class Admission:
    """Decides, for one event, which experiment property names the limit of SPEC §6 admits."""

    __slots__ = ("fresh", "limit", "project", "registry")

    def __init__(self, registry: ExperimentRegistry, project: str, limit: int) -> None:
        self.registry, self.project, self.limit = registry, project, limit
        self.fresh: list[str] = []

    def __call__(self, name: str) -> bool:
        if not is_experiment_property(name) or self.is_admitted(name):
            return True
        if self.registry.count(self.project) + len(self.fresh) >= self.limit:
            return False
        self.fresh.append(name)
        return True

    def is_admitted(self, name: str) -> bool:
        return name in self.fresh or self.registry.is_admitted(self.project, name)


def process_safely(
    user_event: UserEvent, stores: PartitionStores, registry: ExperimentRegistry, config: CoreConfig
) -> Outcome:
    """`process_event`, with an unexpected exception turned into a `processing_error` DLQ record."""
    try:
        return process_event(user_event, stores, registry, config)
    except Exception as exc:
        return Outcome(dlq=processing_error(user_event, exc))


def process_event(
    user_event: UserEvent, stores: PartitionStores, registry: ExperimentRegistry, config: CoreConfig
) -> Outcome:
    event = user_event.event
    insert_id = event.get("insert_id")
    dedupe_key = None
    if insert_id is not None:
        dedupe_key = f"{user_event.user_key}/{insert_id}"
        first_seen = stores.dedupe.get(dedupe_key)
        if first_seen is not None and user_event.ingested_at - first_seen < config.dedupe_window_ms:
            return Outcome(duplicate=True)
    admission = Admission(registry, user_event.project_id, config.experiment_property_limit)
    outcome, new_properties = transform(user_event, stores.state, admission)
    # The commit point of this event: nothing above wrote to a store.
    if dedupe_key is not None:
        outcome.dedupe = (dedupe_key, user_event.ingested_at)
        stores.dedupe.put(dedupe_key, user_event.ingested_at)
    if outcome.state is not None and new_properties is not None:
        stores.state.put(user_event.user_key, new_properties)
    for name in admission.fresh:
        registry.add(user_event.project_id, name)
    outcome.admitted = admission.fresh
    return outcome


def transform(
    user_event: UserEvent, states: TransactionalMap[JsonObject], admission: Admission
) -> tuple[Outcome, JsonObject | None]:
    """Apply the experiment rules and operations; returns the outcome and the new properties."""
    event = user_event.event
    event_type: str = event["event_type"]
    if event_type == GROUP_IDENTIFY:  # group properties are not in scope: the user state is untouched
        return Outcome(event=emitted(event, event_type, event["event_properties"], {})), None
    operations = parse_operations(event["user_properties"])
    event_properties: JsonObject = event["event_properties"]
    persisted = event_type != IDENTIFY
    if event_type in (EXPOSURE, IMPRESSION):
        operations, persisted = exposure_operations(operations, event_properties)
        event_properties = rename_exposure_properties(event_properties)
    elif event_type == ASSIGNMENT:
        # The properties used in evaluation are not the user's state: only experiment $set/$unset apply.
        operations = [op for op in operations if op.kind in (SET, UNSET) and is_experiment_property(op.name)]
        event_properties = prefix_assignment_properties(event_properties)
    old: JsonObject = {} if user_event.skip_sync else (states.get(user_event.user_key) or {})
    new = dict(old)
    stats = apply_operations(new, operations, admission)
    output_type = renamed_type(event_type)
    outcome = Outcome(limit_dropped=stats.limit_dropped, add_ignored=stats.add_ignored)
    if not persisted and event_type != IDENTIFY:
        outcome.unset_exposure = True
    if persisted:
        shown = assignment_properties(old, operations, admission) if event_type == ASSIGNMENT else new
        outcome.event = emitted(event, output_type, event_properties, shown)
    if user_event.skip_sync:
        return outcome, None
    changes = changes_between(old, new)
    if changes:
        outcome.delta = delta_record(user_event, output_type, changes)
        outcome.state = state_record(user_event.project_id, user_event.user_key, new, user_event.ingested_at)
    return outcome, new


def exposure_operations(
    operations: list[Operation], event_properties: JsonObject
) -> tuple[list[Operation], bool]:
    """The exposure's own set or unset of `[Experiment] <flag_key>` wins over the event's own ops on
    that key. Returns the operations and whether the event itself is persisted (SPEC §5.1)."""
    name = experiment_property(event_properties[FLAG_KEY])
    variant = event_properties.get(VARIANT)
    kept = [op for op in operations if op.name != name]
    if variant:
        return [*kept, Operation(SET, name, variant)], True
    return [*kept, Operation(UNSET, name, None)], False


def assignment_properties(old: JsonObject, operations: list[Operation], admission: Admission) -> JsonObject:
    """The user's non-experiment properties plus the experiment properties this assignment sets."""
    shown = {name: value for name, value in old.items() if not is_experiment_property(name)}
    for kind, name, value in operations:
        if kind == SET and value is not None and admission.is_admitted(name):
            shown[name] = value
    return shown


def emitted(
    event: JsonObject, event_type: str, event_properties: JsonObject, user_properties: JsonObject
) -> JsonObject:
    """The enriched event (SPEC §8.1): every top-level field kept, the derived ones replaced."""
    output = dict(event)
    output["event_type"] = event_type
    output["event_properties"] = event_properties
    output["user_properties"] = user_properties
    return output


def processing_error(user_event: UserEvent, exc: Exception) -> DlqRecord:
    """The rejected unit is the normalised event, sent as a bare event with its project header:
    republished to the raw topic it is processed exactly as the original was."""
    bare = {name: value for name, value in user_event.event.items() if name not in ("billable", "ingested_at")}
    if user_event.skip_sync:
        bare[SKIP_SYNC] = True
    return DlqRecord(
        reasons.PROCESSING_ERROR,
        f"{type(exc).__name__}: {exc}",
        user_event.source,
        user_event.ingested_at,
        orjson.dumps(bare),
        user_event.user_key.encode("utf-8"),
        ((PROJECT_HEADER, user_event.project_id.encode("utf-8")),),
    )
