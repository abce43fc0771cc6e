"""Experiment health (issue 17), per by-user partition: the users per variant of each configured
flag, the users who moved from one variant to another, and the custom exposures that arrived
before their user had the flag's experiment property.

A user has one state and lives on one partition, so the counts of all partitions sum exactly.
`load_all` counts the users of a store's committed state (`PartitionStores.iter_states()`, at
restore); `observe` counts one processed event from its `Outcome`: the delta's changes say
exactly how the state moved (an event that changes nothing, a duplicate, a `processing_error`
and a `$skip_user_properties_sync` event have none), and the emitted event's `user_properties`
are what experiment analysis will see on a custom exposure.
Like the stores, observations stay pending until `commit()`, so an aborted batch takes its
counts with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from worker.core.flags import OTHER_VARIANT, Flag, Flags
from worker.core.identity import project_of
from worker.core.pipeline import Outcome
from worker.core.records import UserEvent
from worker.core.srm import SrmTest, srm_test
from worker.core.values import JsonObject

# What is counted, per (project, flag): users per variant, and three event counts.
USERS, SWITCHES, CUSTOM, EARLY = "users", "switches", "custom_exposures", "early_exposures"
Key = tuple[str, str, str, str]  # (project, flag key, what, variant or "")


class ExperimentHealth:
    """The counts of one partition: committed, plus the pending ones of the open batch."""

    __slots__ = ("committed", "flags", "pending")

    def __init__(self, flags: Flags) -> None:
        self.flags = flags
        self.committed: Counter[Key] = Counter()
        self.pending: Counter[Key] = Counter()

    def load(self, user_key: str, properties: JsonObject) -> None:
        """Count a user's committed state; call once per user (the restored store's entries)."""
        flags = self.flags.by_property.get(project_of(user_key))
        if flags:
            for name, flag in flags.items():
                value = properties.get(name)
                if value is not None:
                    self.committed[(flag.project, flag.key, USERS, flag.label(value))] += 1

    def load_all(self, states: Iterable[tuple[str, JsonObject]]) -> ExperimentHealth:
        """`load` each (user key, properties) of a store's committed entries; returns self."""
        for user_key, properties in states:
            self.load(user_key, properties)
        return self

    def observe(self, user_event: UserEvent, outcome: Outcome) -> None:
        """Count one processed event from what it produced (its enriched event and delta)."""
        project, event, delta = user_event.project_id, outcome.event, outcome.delta
        if delta is not None:
            flags = self.flags.by_property.get(project)
            if flags:
                self.count_changes(flags, delta["changes"])
        # A skip-sync event neither reads nor writes the state: it says nothing about its order.
        if event is not None and not user_event.skip_sync:
            for flag in self.flags.by_exposure.get((project, event["event_type"]), ()):
                self.pending[(project, flag.key, CUSTOM, "")] += 1
                if flag.property not in event["user_properties"]:
                    self.pending[(project, flag.key, EARLY, "")] += 1

    def count_changes(self, flags: Mapping[str, Flag], changes: list[JsonObject]) -> None:
        """A variant in, a variant out, or both: a user who moved from one variant to another."""
        for change in changes:
            flag = flags.get(change["property"])
            if flag is None:
                continue
            old, new = change["old"], change["new"]
            if old is not None:
                self.pending[(flag.project, flag.key, USERS, flag.label(old))] -= 1
            if new is not None:
                self.pending[(flag.project, flag.key, USERS, flag.label(new))] += 1
            if old is not None and new is not None:
                self.pending[(flag.project, flag.key, SWITCHES, "")] += 1

    def commit(self) -> Counter[Key]:
        """Fold the pending counts in; returns them (the runtime turns them into counters)."""
        done, self.pending = self.pending, Counter()
        self.committed.update(done)  # update adds, negative counts included
        return done

    def rollback(self) -> None:
        self.pending = Counter()


@dataclass(frozen=True, slots=True)
class FlagReport:
    """One flag's health, summed over the partitions given: what the gauges and the report show."""

    flag: Flag
    users: tuple[int, ...]  # per allocated variant, in the flag's order
    other_users: int  # users whose variant is not in the allocation (not part of the test)
    switches: int
    custom_exposures: int
    early_exposures: int
    test: SrmTest | None  # None while no user is in an allocated variant


def flag_reports(flags: Flags, counts: Iterable[Counter[Key]]) -> list[FlagReport]:
    """A report per configured flag, in the file's order, from the committed counts of partitions."""
    total: Counter[Key] = Counter()
    for partition in counts:
        total.update(partition)
    reports = []
    for flag in flags.flags:
        users = tuple(total[(flag.project, flag.key, USERS, variant)] for variant in flag.variants)
        reports.append(FlagReport(
            flag, users, total[(flag.project, flag.key, USERS, OTHER_VARIANT)],
            total[(flag.project, flag.key, SWITCHES, "")], total[(flag.project, flag.key, CUSTOM, "")],
            total[(flag.project, flag.key, EARLY, "")], srm_test(users, flag.weights),
        ))
    return reports
