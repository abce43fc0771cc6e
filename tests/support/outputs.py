"""The check most integration tests end with: the worker's committed outputs equal, record by
record and in per-user order, what process-file makes of the same raw topic (SPEC §10)."""

from __future__ import annotations

from dev.verify import Outputs, count_records, kafka_outputs
from worker.runtime.settings import WorkerSettings


def assert_same_outputs(settings: WorkerSettings, expected: Outputs) -> None:
    """Counts first (a loss or a duplicate reads best there), then every kind of record."""
    got = kafka_outputs(settings)
    assert count_records(got) == count_records(expected), "records lost or duplicated"
    assert got.events == expected.events
    assert got.deltas == expected.deltas
    assert got.dlq == expected.dlq
    assert got.state == expected.state
