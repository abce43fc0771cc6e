"""Shared test helper: the pure pipeline (split + process, the same calls `process-file` makes) over
in-memory stores, with every output collected. No broker, no files, no clock."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.support.clock import T0
from worker.core.config import CoreConfig
from worker.core.processor import Outcome, PartitionStores, process_safely
from worker.core.records import DlqRecord, Headers, RawMessage
from worker.core.split import split_message
from worker.core.stores import ExperimentRegistry

RAW_TOPIC = "events.raw"


class Pipeline:
    def __init__(self, config: CoreConfig | None = None, **settings: Any) -> None:
        self.config = config or CoreConfig(**settings)
        self.stores = PartitionStores()
        self.registry = ExperimentRegistry(self.config.experiment_property_limit)
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
        split = split_message(message, self.config)
        self.dlq.extend(split.rejected)
        outcomes = [process_safely(event, self.stores, self.registry, self.config) for event in split.events]
        for outcome in outcomes:
            self.events.extend([outcome.event] if outcome.event is not None else [])
            self.deltas.extend([outcome.delta] if outcome.delta is not None else [])
            self.states.extend([outcome.state] if outcome.state is not None else [])
            self.dlq.extend([outcome.dlq] if outcome.dlq is not None else [])
        self.outcomes.extend(outcomes)
        self.stores.commit()
        self.registry.commit()
        return outcomes

    def restore(self, key: str, properties: dict[str, Any], admit: bool = True) -> None:
        """A user's state as restored from user-state; `admit` also admits its experiment names
        (what `process-file --state-in` does)."""
        self.stores.state.load(key, properties)
        for name in properties if admit else ():
            if name.startswith("[Experiment] "):
                self.registry.load(key.partition("/")[0], name)

    def state(self, key: str = "default/u:user-1") -> dict[str, Any] | None:
        return self.stores.state.get(key)


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline()


@pytest.fixture(scope="session")
def make_pipeline() -> type[Pipeline]:
    """The class itself, for tests that need their own settings or (hypothesis) a fresh one per example."""
    return Pipeline
