"""Experiment events (SPEC §4, §5): exposure and impression renames, assignment property names,
the experiment user property, and the assignment insert_id the server SDKs derive.
"""

from __future__ import annotations

from typing import Any

from worker.core.values import JsonObject

EXPERIMENT_PREFIX = "[Experiment] "
EXPOSURE = "$exposure"
IMPRESSION = "$impression"
ASSIGNMENT = "[Experiment] Assignment"
RENAMED_TYPES = {EXPOSURE: "[Experiment] Exposure", IMPRESSION: "[Experiment] Impression"}
NOT_BILLABLE = frozenset({*RENAMED_TYPES.values(), ASSIGNMENT})
FLAG_KEY, VARIANT, EXPERIMENT_KEY = "flag_key", "variant", "experiment_key"
RENAMED_PROPERTIES = {
    FLAG_KEY: "[Experiment] Flag Key",
    VARIANT: "[Experiment] Variant",
    EXPERIMENT_KEY: "[Experiment] Experiment Key",
}
ASSIGNMENT_SUFFIXES = (".variant", ".details")
DAY_MS = 86_400_000


def experiment_property(flag_key: str) -> str:
    return EXPERIMENT_PREFIX + flag_key


def is_experiment_property(name: str) -> bool:
    return name.startswith(EXPERIMENT_PREFIX)


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


def rename_exposure_properties(event_properties: JsonObject) -> JsonObject:
    """`flag_key`, `variant`, `experiment_key` get their `[Experiment] ` names; others pass through."""
    renamed: JsonObject = {}
    for name, target in RENAMED_PROPERTIES.items():
        value = event_properties.get(name)
        if value is not None:
            renamed[target] = value
    for name, value in event_properties.items():
        if name not in RENAMED_PROPERTIES:
            renamed.setdefault(name, value)
    return renamed


def prefix_assignment_properties(event_properties: JsonObject) -> JsonObject:
    """`<flag>.variant` / `<flag>.details` become `[Experiment] <flag>.…`; the prefixed form wins."""
    prefixed: JsonObject = {}
    for name, value in event_properties.items():
        if name.endswith(ASSIGNMENT_SUFFIXES) and not is_experiment_property(name):
            target = EXPERIMENT_PREFIX + name
            if target not in event_properties:
                prefixed[target] = value
        else:
            prefixed[name] = value
    return prefixed


def assignment_variants(event_properties: JsonObject) -> dict[str, str]:
    """Flag key → variant from the string-valued `<flag>.variant` properties of an assignment."""
    variants: dict[str, str] = {}
    for name, value in prefix_assignment_properties(event_properties).items():
        if type(value) is str and name.endswith(".variant"):
            variants[name[len(EXPERIMENT_PREFIX) : -len(".variant")]] = value
    return variants


def java_string_hash(text: str) -> int:
    """Java's `String.hashCode` over UTF-16 code units, as an unsigned 32-bit number."""
    data = text.encode("utf-16-le", "surrogatepass")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] | data[i + 1] << 8)) & 0xFFFFFFFF
    return h


def _printed(value: str | None) -> str:
    return "None" if value is None else value


def assignment_insert_id(
    user_id: str | None, device_id: str | None, event_properties: JsonObject, time_ms: int
) -> str:
    """One assignment per user, per evaluation result, per day (SPEC §4)."""
    ids = f"{_printed(user_id and user_id.strip())} {_printed(device_id and device_id.strip())} "
    flags = sorted((flag.strip(), variant.strip()) for flag, variant in assignment_variants(event_properties).items())
    canonical = ids + "".join(f"{flag} {variant} " for flag, variant in flags)
    day = time_ms // DAY_MS
    return f"{_printed(user_id)} {_printed(device_id)} {java_string_hash(canonical)} {day}"


def is_billable(event_type: str) -> bool:
    return event_type not in NOT_BILLABLE


def renamed_type(event_type: str) -> str:
    return RENAMED_TYPES.get(event_type, event_type)


def exposure_variant(event_properties: JsonObject) -> Any:
    return event_properties.get(VARIANT)
