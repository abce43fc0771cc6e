"""Experiment events and the other event kinds (SPEC §5): what one validated event does to its
user's properties and which event it emits, dispatched by event kind.

`transform` takes the user's state before the event and returns the emitted event (or none), the
new state and its changes. It writes no store: the pipeline does, once the event has completed.
"""

from __future__ import annotations

from typing import Any, Final

from worker.core.billing import is_billable
from worker.core.limit import EXPERIMENT_PREFIX, Admission
from worker.core.operations import SET, UNSET, Operation, OperationStats, apply_operations, parse_operations
from worker.core.records import UserEvent, changes_of
from worker.core.values import JsonObject

EXPOSURE: Final = "$exposure"
IMPRESSION: Final = "$impression"
ASSIGNMENT: Final = "[Experiment] Assignment"
IDENTIFY: Final = "$identify"
GROUP_IDENTIFY: Final = "$groupidentify"
RENAMED_TYPES: Final = {EXPOSURE: "[Experiment] Exposure", IMPRESSION: "[Experiment] Impression"}
FLAG_KEY: Final = "flag_key"
VARIANT: Final = "variant"
EXPERIMENT_KEY: Final = "experiment_key"
RENAMED_PROPERTIES: Final = {
    FLAG_KEY: "[Experiment] Flag Key",
    VARIANT: "[Experiment] Variant",
    EXPERIMENT_KEY: "[Experiment] Experiment Key",
}
ASSIGNMENT_SUFFIXES: Final = (".variant", ".details")


class Transformed:
    """What one event does: the event to emit (None: not persisted), the user's new properties
    (None: the state is not touched), their changes, and what the operations left out."""

    __slots__ = ("changes", "event", "properties", "stats", "unset_exposure")

    def __init__(self, event: JsonObject | None, properties: JsonObject | None, changes: list[JsonObject],
                 stats: OperationStats, unset_exposure: bool = False) -> None:
        self.event, self.properties, self.changes = event, properties, changes
        self.stats, self.unset_exposure = stats, unset_exposure


def experiment_property(flag_key: str) -> str:
    return EXPERIMENT_PREFIX + flag_key


def renamed_type(event_type: str) -> str:
    return RENAMED_TYPES.get(event_type, event_type)


def exposure_problem(event_properties: JsonObject) -> str | None:
    """Why an `$exposure`/`$impression` is invalid (SPEC §2), or None."""
    flag_key = event_properties.get(FLAG_KEY)
    if type(flag_key) is not str or not flag_key.strip():
        return "flag_key must be a non-blank string"
    for name in (VARIANT, EXPERIMENT_KEY):
        value = event_properties.get(name)
        if value is not None and type(value) is not str:
            return f"{name} must be a string or null"
    return None


def transform(user_event: UserEvent, old: JsonObject, admission: Admission) -> Transformed:
    """Apply the rules of the event's kind to `old` (the user's state, or {} when the event skips
    the state sync), never changing it."""
    event = user_event.event
    event_type: str = event["event_type"]
    if event_type == GROUP_IDENTIFY:  # group properties are not in scope: the user state is untouched
        return Transformed(emitted(event, event_type, event["event_properties"], {}), None, [], OperationStats())
    operations = parse_operations(event["user_properties"])
    event_properties: JsonObject = event["event_properties"]
    persisted = event_type != IDENTIFY
    if event_type in (EXPOSURE, IMPRESSION):
        operations, persisted = exposure_operations(operations, event_properties)
        event_properties = rename_exposure_properties(event_properties)
    elif event_type == ASSIGNMENT:
        # The properties used in evaluation are not the user's state: only experiment $set/$unset apply.
        operations = [op for op in operations
                      if (op[0] == SET or op[0] == UNSET) and op[1].startswith(EXPERIMENT_PREFIX)]
        event_properties = prefix_assignment_properties(event_properties)
    new = dict(old)
    stats = apply_operations(new, operations, admission)
    output = None
    if persisted:
        shown = assignment_properties(old, operations, admission) if event_type == ASSIGNMENT else new
        output = emitted(event, renamed_type(event_type), event_properties, shown)
    unset_exposure = not persisted and event_type != IDENTIFY
    if user_event.skip_sync:
        return Transformed(output, None, [], stats, unset_exposure)
    return Transformed(output, new, changes_of(old, new, stats.touched, stats.cleared), stats, unset_exposure)


def exposure_operations(operations: list[Operation], event_properties: JsonObject) -> tuple[list[Operation], bool]:
    """The exposure's own set or unset of `[Experiment] <flag_key>` wins over the event's own ops on
    that key. Returns the operations and whether the event itself is persisted (SPEC §5.1)."""
    name = experiment_property(event_properties[FLAG_KEY])
    variant: Any = event_properties.get(VARIANT)
    kept = [op for op in operations if op[1] != name]
    if variant:
        kept.append((SET, name, variant))
        return kept, True
    kept.append((UNSET, name, None))
    return kept, False


def rename_exposure_properties(event_properties: JsonObject) -> JsonObject:
    """`flag_key`, `variant`, `experiment_key` get their `[Experiment] ` names; others pass through."""
    renamed: JsonObject = {}
    for name, target in RENAMED_PROPERTIES.items():
        value = event_properties.get(name)
        if value is not None:
            renamed[target] = value
    for name, value in event_properties.items():
        if name not in RENAMED_PROPERTIES and name not in renamed:
            renamed[name] = value
    return renamed


def prefix_assignment_properties(event_properties: JsonObject) -> JsonObject:
    """`<flag>.variant` / `<flag>.details` become `[Experiment] <flag>.…`; the prefixed form wins."""
    prefixed: JsonObject = {}
    for name, value in event_properties.items():
        if name.endswith(ASSIGNMENT_SUFFIXES) and not name.startswith(EXPERIMENT_PREFIX):
            target = EXPERIMENT_PREFIX + name
            if target not in event_properties:
                prefixed[target] = value
        else:
            prefixed[name] = value
    return prefixed


def assignment_properties(old: JsonObject, operations: list[Operation], admission: Admission) -> JsonObject:
    """The user's non-experiment properties plus the experiment properties this assignment sets."""
    shown = {name: value for name, value in old.items() if not name.startswith(EXPERIMENT_PREFIX)}
    for kind, name, value in operations:
        if kind == SET and value is not None and admission.is_admitted(name):
            shown[name] = value
    return shown


def emitted(event: JsonObject, event_type: str, event_properties: JsonObject,
            user_properties: JsonObject) -> JsonObject:
    """The enriched event (SPEC §8.1): every top-level field kept, the derived ones replaced, and
    `billable` (SPEC §7) decided here, from the emitted type."""
    billable = is_billable(event_type)
    output: JsonObject = {}
    for name, value in event.items():
        if name == "ingested_at":  # the field order of SPEC §8.1 (and of the Avro schema)
            output["billable"] = billable
        output[name] = value
    output["event_type"] = event_type
    output["event_properties"] = event_properties
    output["user_properties"] = user_properties
    return output
