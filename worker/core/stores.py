"""In-memory stores with batch transactions: the user state, the dedupe entries and the
experiment-property registry.

The Kafka runtime commits outputs in transactions; when one aborts, the in-memory changes of its
batch must vanish too. Each store therefore keeps committed data and a pending layer:
`commit()` folds the pending layer in, `rollback()` drops it. `process-file` uses the same stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

V = TypeVar("V")
_MISSING = object()


class TransactionalMap(Generic[V]):
    """A str-keyed map whose writes stay pending until `commit()`."""

    __slots__ = ("_committed", "_pending")

    def __init__(self) -> None:
        self._committed: dict[str, V] = {}
        self._pending: dict[str, V] = {}

    def get(self, key: str) -> V | None:
        value = self._pending.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        return self._committed.get(key)

    def put(self, key: str, value: V) -> None:
        self._pending[key] = value

    def load(self, key: str, value: V | None) -> None:
        """Restore a committed entry (from a changelog); None deletes it."""
        if value is None:
            self._committed.pop(key, None)
        else:
            self._committed[key] = value

    def commit(self) -> None:
        self._committed.update(self._pending)
        self._pending.clear()

    def rollback(self) -> None:
        self._pending.clear()

    def items(self) -> Iterator[tuple[str, V]]:
        """Committed entries (call after `commit()`)."""
        return iter(self._committed.items())

    def __len__(self) -> int:
        return len(self._committed)

    def prune(self, keep: Callable[[V], bool]) -> int:
        """Drop committed entries for which `keep(value)` is false; returns how many."""
        doomed = [key for key, value in self._committed.items() if not keep(value)]
        for key in doomed:
            del self._committed[key]
        return len(doomed)


class ExperimentRegistry:
    """The experiment property names admitted per project (SPEC §6), shared by all partitions."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._committed: dict[str, set[str]] = {}
        self._pending: dict[str, set[str]] = {}

    def is_admitted(self, project: str, name: str) -> bool:
        return name in self._committed.get(project, ()) or name in self._pending.get(project, ())

    def count(self, project: str) -> int:
        return len(self._committed.get(project, ())) + len(self._pending.get(project, ()))

    def add(self, project: str, name: str) -> None:
        """Record an admission made by this instance; pending until `commit()`."""
        if not self.is_admitted(project, name):
            self._pending.setdefault(project, set()).add(name)

    def load(self, project: str, name: str) -> None:
        """A name admitted elsewhere (the registry topic, or `--state-in`): always kept."""
        self._committed.setdefault(project, set()).add(name)

    def merge(self, other: ExperimentRegistry) -> None:
        """Take the names another registry loaded (a restore that ran beside this one)."""
        for project, names in other._committed.items():
            self._committed.setdefault(project, set()).update(names)

    def commit(self) -> None:
        for project, names in self._pending.items():
            self._committed.setdefault(project, set()).update(names)
        self._pending.clear()

    def rollback(self) -> None:
        self._pending.clear()
