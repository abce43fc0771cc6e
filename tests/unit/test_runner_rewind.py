"""After an abort the loop seeks back the partitions of the messages it had not handled yet: the
consumer's position is already past them, so without the seek they would be skipped (lost)."""

from __future__ import annotations

from tests.support.fakes import FakeConsumer, FakeMessage
from tests.support.workers import idle_worker


def test_rewind_seeks_each_unhandled_partition_once_and_skips_what_the_abort_rewound() -> None:
    worker = idle_worker()
    consumer = FakeConsumer([("raw", 0), ("raw", 1), ("raw", 2)])
    worker.consumer = consumer  # type: ignore[assignment]
    worker.rewound = {("raw", 0)}  # the abort already sought raw[0] to the batch's first offset
    rest = [FakeMessage(("raw", 0, 9)), FakeMessage(("raw", 1, 7)), FakeMessage(("raw", 1, 8)),
            FakeMessage(("raw", 2, 3), failed=True), FakeMessage(("raw", 2, 4)), FakeMessage(("other", 5, 1))]
    worker.rewind(rest)  # type: ignore[arg-type]
    assert consumer.seeks == [("raw", 1, 7), ("raw", 2, 4)]
