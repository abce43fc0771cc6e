"""The flags file (issue 17): per project, per flag key, the variant allocation the experiment
was designed with and, optionally, the event type it uses as a custom exposure.

`parse_flags` turns the decoded JSON into frozen plain data, or raises `FlagsError` with one
line that says what is wrong and where; reading the file is the runtime's job. Flags not in the
file are left alone: the file also bounds the metric series the health signals create.

    {"<project_id>": {"<flag_key>": {"allocation": {"control": 50, "treatment": 50},
                                     "exposure_event": "Checkout Viewed"}}}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.core.experiments import ASSIGNMENT, EXPOSURE, IMPRESSION, RENAMED_TYPES, experiment_property
from worker.core.identity import is_project_id

OTHER_VARIANT = "_other"  # users whose variant is not in the allocation; so no variant may be named this
FLAG_FIELDS = frozenset({"allocation", "exposure_event"})
# Types whose exposure the worker already handles, or that are never emitted: not custom exposures.
NOT_CUSTOM = frozenset({EXPOSURE, IMPRESSION, ASSIGNMENT, *RENAMED_TYPES.values(), "$identify", "$groupidentify"})


class FlagsError(ValueError):
    """The flags file does not have the form above; the message names the place."""


@dataclass(frozen=True, slots=True)
class Flag:
    project: str
    key: str
    variants: tuple[str, ...]  # in the file's order
    weights: tuple[float, ...]
    exposure_event: str | None = None

    @property
    def property(self) -> str:
        """The experiment user property that holds a user's variant of this flag."""
        return experiment_property(self.key)

    def shares(self) -> tuple[float, ...]:
        total = sum(self.weights)
        return tuple(weight / total for weight in self.weights)

    def label(self, value: Any) -> str:
        """A state value as a bounded variant label: an allocated variant, else `_other`."""
        return value if type(value) is str and value in self.variants else OTHER_VARIANT


@dataclass(frozen=True, slots=True)
class Flags:
    """Every configured flag, with the look-ups the per-event path needs."""

    flags: tuple[Flag, ...] = ()
    by_property: Mapping[str, Mapping[str, Flag]] = field(default_factory=dict)  # project → property → flag
    by_exposure: Mapping[tuple[str, str], tuple[Flag, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, flags: Iterable[Flag]) -> Flags:
        chosen = tuple(flags)
        by_property: dict[str, dict[str, Flag]] = {}
        by_exposure: dict[tuple[str, str], tuple[Flag, ...]] = {}
        for flag in chosen:
            by_property.setdefault(flag.project, {})[flag.property] = flag
            if flag.exposure_event is not None:
                key = (flag.project, flag.exposure_event)
                by_exposure[key] = (*by_exposure.get(key, ()), flag)
        return cls(chosen, by_property, by_exposure)

    def __bool__(self) -> bool:
        return bool(self.flags)


def parse_flags(document: Any) -> Flags:
    """The flags of a decoded flags file; FlagsError names the first problem found."""
    if type(document) is not dict:
        raise FlagsError("expected a JSON object: project id → flag key → {allocation, exposure_event}")
    flags: list[Flag] = []
    for project, project_flags in document.items():
        if not is_project_id(project):
            raise FlagsError(f"project id {project!r} does not match [A-Za-z0-9_.-]+")
        if type(project_flags) is not dict:
            raise FlagsError(f"project {project!r}: expected an object of flag key → flag")
        flags += [parse_flag(project, key, value) for key, value in project_flags.items()]
    return Flags.of(flags)


def parse_flag(project: str, key: str, value: Any) -> Flag:
    where = f"project {project!r}, flag {key!r}"
    if not key.strip():
        raise FlagsError(f"project {project!r}: a flag key must not be blank")
    if type(value) is not dict:
        raise FlagsError(f"{where}: expected an object with an allocation")
    unknown = sorted(set(value) - FLAG_FIELDS)
    if unknown:
        raise FlagsError(f"{where}: unknown field {unknown[0]!r} (fields: allocation, exposure_event)")
    variants, weights = parse_allocation(where, value.get("allocation"))
    exposure_event = value.get("exposure_event")
    if exposure_event is not None:
        if type(exposure_event) is not str or not exposure_event.strip():
            raise FlagsError(f"{where}: exposure_event must be a non-blank event type")
        if exposure_event in NOT_CUSTOM:
            raise FlagsError(f"{where}: exposure_event {exposure_event!r} is not a custom event type")
    return Flag(project, key, variants, weights, exposure_event)


def parse_allocation(where: str, allocation: Any) -> tuple[tuple[str, ...], tuple[float, ...]]:
    if type(allocation) is not dict or len(allocation) < 2:
        raise FlagsError(f"{where}: allocation must be an object of two or more variant → weight")
    for variant, weight in allocation.items():
        if not variant or variant == OTHER_VARIANT:
            raise FlagsError(f"{where}: variant {variant!r} is not allowed (empty, or reserved)")
        # A zero weight would make any user of that variant an infinite mismatch: leave it out.
        if type(weight) not in (int, float) or not math.isfinite(weight) or weight <= 0:
            raise FlagsError(f"{where}: the weight of variant {variant!r} must be a positive number, got {weight!r}")
    return tuple(allocation), tuple(float(weight) for weight in allocation.values())
