"""The stores of one by-user partition, with batch transactions: user state and dedupe entries.

The Kafka runtime commits outputs in transactions; when one aborts, the changes of its batch must
vanish too. Each store therefore keeps committed data and a pending layer: reads see both,
`pending()` lists the batch's writes (last value per key: the changelog records of the batch),
`commit()` folds them in and `rollback()` drops them. `process-file` uses the same stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

from worker.core.identity import project_of
from worker.core.limit import EXPERIMENT_PREFIX, ExperimentRegistry
from worker.core.records import state_record
from worker.core.values import JsonObject

V = TypeVar("V")


class TransactionalMap(Generic[V]):
    """A str-keyed map whose writes stay pending until `commit()`."""

    __slots__ = ("_committed", "_pending")

    def __init__(self) -> None:
        self._committed: dict[str, V] = {}
        self._pending: dict[str, V] = {}

    def get(self, key: str) -> V | None:
        if key in self._pending:
            return self._pending[key]
        return self._committed.get(key)

    def put(self, key: str, value: V) -> None:
        self._pending[key] = value

    def load(self, key: str, value: V | None) -> None:
        """Restore a committed entry (from a changelog); None deletes it."""
        if value is None:
            self._committed.pop(key, None)
        else:
            self._committed[key] = value

    def pending(self) -> dict[str, V]:
        """This batch's writes, the last value of each key."""
        return self._pending

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

    def prune(self, keep: Callable[[V], bool]) -> list[str]:
        """Drop committed entries for which `keep(value)` is false; returns their keys."""
        doomed = [key for key, value in self._committed.items() if not keep(value)]
        for key in doomed:
            del self._committed[key]
        return doomed


class Stores(Protocol):
    """What the pipeline reads and writes of a partition's stores; writes stay pending until the
    caller commits the batch (in memory here, for process-file and the tests; on disk or in
    memory, as changelog bytes, in the Kafka worker: worker.runtime.state)."""

    def state_of(self, user_key: str) -> JsonObject | None: ...

    def first_seen(self, dedupe_key: str) -> int | None: ...

    def put_state(self, user_key: str, properties: JsonObject, ingested_at: int) -> None: ...

    def put_dedupe(self, dedupe_key: str, ingested_at: int) -> None: ...


class PartitionStores:
    """The stores of one partition as plain maps: user state (with when each pending change was
    ingested, for the state record's `updated_at`) and dedupe entries (insert_id first seen)."""

    __slots__ = ("changed_at", "dedupe", "state")

    def __init__(self) -> None:
        self.state: TransactionalMap[JsonObject] = TransactionalMap()
        self.dedupe: TransactionalMap[int] = TransactionalMap()
        self.changed_at: dict[str, int] = {}

    def state_of(self, user_key: str) -> JsonObject | None:
        return self.state.get(user_key)

    def first_seen(self, dedupe_key: str) -> int | None:
        return self.dedupe.get(dedupe_key)

    def put_state(self, user_key: str, properties: JsonObject, ingested_at: int) -> None:
        self.state.put(user_key, properties)
        self.changed_at[user_key] = ingested_at

    def put_dedupe(self, dedupe_key: str, ingested_at: int) -> None:
        self.dedupe.put(dedupe_key, ingested_at)

    def iter_states(self) -> Iterator[tuple[str, JsonObject]]:
        """Every user's committed state: (user key, properties). What a reader outside the
        pipeline (experiment health, at install) may know of the store; call after `commit()`."""
        return self.state.items()

    def state_records(self) -> list[tuple[str, JsonObject]]:
        """The batch's state records (SPEC §8.3): one per changed user, with its last value."""
        changed_at = self.changed_at
        return [(key, state_record(project_of(key), key, properties, changed_at[key]))
                for key, properties in self.state.pending().items()]

    def commit(self) -> None:
        self.state.commit()
        self.dedupe.commit()
        self.changed_at.clear()

    def rollback(self) -> None:
        self.state.rollback()
        self.dedupe.rollback()
        self.changed_at.clear()


def restore_user(stores: PartitionStores, registry: ExperimentRegistry, user_key: str,
                 properties: JsonObject | None) -> None:
    """Load a user's committed state (None deletes it). Its experiment property names count as
    admitted under the limit of SPEC §6, whatever the registry says: names in use keep working."""
    stores.state.load(user_key, properties)
    if properties is not None:
        project = project_of(user_key)
        for name in properties:
            if name.startswith(EXPERIMENT_PREFIX):
                registry.load(project, name)
