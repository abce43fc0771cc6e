"""The experiment property limit (SPEC §6): at most N distinct `[Experiment] ` property names per
project, shared by all instances through the registry topic.

`ExperimentRegistry` holds the names admitted so far, per project: the committed ones (read from
the registry topic, found in restored state, or admitted by a committed batch of this instance)
and this batch's pending admissions, which become registry records when the batch commits.
`Admission` decides, for one event, which new names the limit lets in; its choices reach the
registry only if the event completes.
"""

from __future__ import annotations

from typing import Final

EXPERIMENT_PREFIX: Final = "[Experiment] "


def is_experiment_property(name: str) -> bool:
    return name.startswith(EXPERIMENT_PREFIX)


class ExperimentRegistry:
    """The experiment property names admitted per project, shared by all partitions."""

    __slots__ = ("_committed", "_pending", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._committed: dict[str, set[str]] = {}
        # (project, name) → the ingestion time of the event that admitted it, in admission order.
        self._pending: dict[tuple[str, str], int] = {}

    def is_admitted(self, project: str, name: str) -> bool:
        names = self._committed.get(project)
        return (names is not None and name in names) or (project, name) in self._pending

    def count(self, project: str) -> int:
        names = self._committed.get(project)
        committed = 0 if names is None else len(names)
        if not self._pending:
            return committed
        return committed + sum(1 for pending_project, _ in self._pending if pending_project == project)

    def add(self, project: str, name: str, admitted_at: int) -> None:
        """Record an admission made by this instance; pending until `commit()`."""
        if not self.is_admitted(project, name):
            self._pending[(project, name)] = admitted_at

    def load(self, project: str, name: str) -> None:
        """A name admitted elsewhere (the registry topic, or restored state): always kept."""
        names = self._committed.get(project)
        if names is None:
            self._committed[project] = {name}
        else:
            names.add(name)

    def merge(self, other: ExperimentRegistry) -> None:
        """Take the names another registry loaded (a restore that ran beside this one)."""
        for project, names in other._committed.items():
            self._committed.setdefault(project, set()).update(names)

    def pending(self) -> list[tuple[str, str, int]]:
        """This batch's admissions as (project, name, admitted_at): the registry records to write."""
        return [(project, name, admitted_at) for (project, name), admitted_at in self._pending.items()]

    def commit(self) -> None:
        for project, name in self._pending:
            self.load(project, name)
        self._pending.clear()

    def rollback(self) -> None:
        self._pending.clear()


class Admission:
    """Decides, for one event, which experiment property names the limit admits."""

    __slots__ = ("fresh", "limit", "project", "registry")

    def __init__(self, registry: ExperimentRegistry, project: str, limit: int) -> None:
        self.registry, self.project, self.limit = registry, project, limit
        self.fresh: list[str] = []

    def __call__(self, name: str) -> bool:
        if not name.startswith(EXPERIMENT_PREFIX) or self.is_admitted(name):
            return True
        if self.registry.count(self.project) + len(self.fresh) >= self.limit:
            return False
        self.fresh.append(name)
        return True

    def is_admitted(self, name: str) -> bool:
        return name in self.fresh or self.registry.is_admitted(self.project, name)

    def record(self, admitted_at: int) -> None:
        """The event completed: its admissions go to the registry (pending until the batch commits)."""
        for name in self.fresh:
            self.registry.add(self.project, name, admitted_at)
