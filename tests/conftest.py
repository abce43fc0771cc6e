"""Shared test helper: the pure pipeline (split + process, the same calls `process-file` makes) over
in-memory stores, with every output collected. No broker, no files, no clock."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.support.clock import T0
from worker.build import stale_modules
from worker.core import pipeline as core
from worker.core.config import CoreConfig
from worker.core.pipeline import Outcome
from worker.core.records import DlqRecord, Headers, RawMessage
from worker.core.stores import PartitionStores, restore_user


def pytest_configure(config: pytest.Config) -> None:
    """Compiled modules older than their sources would test old code: refuse to run."""
    stale = stale_modules()
    if stale:
        pytest.exit(f"compiled modules are older than {', '.join(stale)}: run `make build`", returncode=4)


RAW_TOPIC = "events.raw"


class Batch:
    """The changelog records one batch (one message here) left in the stores' pending layers."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.states = [record for _, record in pipeline.stores.state_records()]
        self.dedupe = dict(pipeline.stores.dedupe.pending())
        self.admitted = [name for _, name, _ in pipeline.registry.pending()]


class Pipeline:
    """The core pipeline over one partition's stores, every output collected; each message is a
    batch of its own (committed after it), as in `process-file`. `states` holds the state records
    each batch wrote (one per changed user)."""

    def __init__(self, config: CoreConfig | None = None, **settings: Any) -> None:
        self.config = config or CoreConfig(**settings)
        self.stores = PartitionStores()
        self.core = core.Pipeline(self.config)
        self.registry = self.core.registry
        self.events: list[dict[str, Any]] = []
        self.deltas: list[dict[str, Any]] = []
        self.states: list[dict[str, Any]] = []
        self.dlq: list[DlqRecord] = []
        self.outcomes: list[Outcome] = []
        self.offset = 0

    def send(self, value: Any, timestamp_ms: int = T0, headers: Headers = ()) -> list[Outcome]:
        """One raw message (a JSON value, or bytes as they are); returns the outcomes of its events."""
        data = value if isinstance(value, bytes) else orjson.dumps(value)
        message = RawMessage(RAW_TOPIC, 0, self.offset, timestamp_ms, data, b"key", headers)
        self.offset += 1
        processed = self.core.run(message, self.stores)
        self.dlq.extend(processed.rejected)
        for outcome in processed.outcomes:
            self.events.extend([outcome.event] if outcome.event is not None else [])
            self.deltas.extend([outcome.delta] if outcome.delta is not None else [])
            self.dlq.extend([outcome.dlq] if outcome.dlq is not None else [])
        self.outcomes.extend(processed.outcomes)
        self.last = Batch(self)
        self.states.extend(self.last.states)
        self.stores.commit()
        self.registry.commit()
        return processed.outcomes

    def restore(self, key: str, properties: dict[str, Any], admit: bool = True) -> None:
        """A user's state as restored from user-state; `admit` also admits its experiment names
        (what `process-file --state-in` and a restore do)."""
        if admit:
            restore_user(self.stores, self.registry, key, properties)
        else:
            self.stores.state.load(key, properties)

    def state(self, key: str = "default/u:user-1") -> dict[str, Any] | None:
        return self.stores.state.get(key)


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline()


@pytest.fixture(scope="session")
def make_pipeline() -> type[Pipeline]:
    """The class itself, for tests that need their own settings or (hypothesis) a fresh one per example."""
    return Pipeline
