"""The by-user shortcut (worker/runtime/shortcut.py) with fake clients and a fake clock: the drain
that puts partitions in place, what an event in place writes, and each way a drain ends early.
The partitioner it relies on is held to Kafka's own murmur2 test vectors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.support.clock import T0, FakeClock
from tests.support.fakes import FakeClients, FakeMessage, FakeProducer
from tests.support.settings import offline_settings
from worker.runtime.metrics import Metrics
from worker.runtime.partitioner import murmur2, partition_of
from worker.runtime.restore import RestoreResult
from worker.runtime.runner import Worker
from worker.runtime.shortcut import DRAIN_TIMEOUT_S, MARKER_KEY, RETRY_AFTER_S

RAW, BY_USER = "events.raw", "experiment-worker.by-user"
OUTPUTS = ("enriched", "deltas", "state", "dedupe")


def restored_at_once(*args: Any) -> RestoreResult:
    return RestoreResult(args[2])


def opened(partitions: int = 1, **settings: Any) -> tuple[Worker, FakeClients, FakeClock]:
    """A worker owning every partition of raw and by-user topics of `partitions` partitions,
    restored, the shortcut started as `run` starts it (with the by-user topic's partition count)."""
    clients, clock = FakeClients(), FakeClock()
    worker = Worker(offline_settings(commit_interval_ms=60_000, **settings), Metrics(CollectorRegistry()),
                    clients, clock)  # type: ignore[arg-type]
    worker.partitions.restorer = restored_at_once
    worker.shortcut.start({RAW: partitions, BY_USER: partitions})
    worker.open()
    consumer = clients.consumer_
    worker.on_assign(consumer, [TopicPartition(topic, n) for topic in (RAW, BY_USER)  # type: ignore[arg-type]
                                for n in range(partitions)])
    while worker.partitions.restoring:
        worker.partitions.install_restored(consumer)  # type: ignore[arg-type]
    return worker, clients, clock


def raw(offset: int, user: str = "user-1", **user_properties: Any) -> FakeMessage:
    event = {"event_type": "click", "user_id": user, "time": T0, "insert_id": f"i-{offset}",
             "user_properties": {"$set": user_properties} if user_properties else {}}
    return FakeMessage((RAW, 0, offset), data=orjson.dumps(event), timestamp_ms=T0 + offset)


def producer(clients: FakeClients) -> FakeProducer:
    return clients.producers[-1]


def markers(out: FakeProducer) -> list[FakeMessage]:
    """The drain's committed markers, as the consumer will read them back."""
    return [FakeMessage((BY_USER, partition, 100 + n), data=value, key_data=key)
            for n, (key, value, partition) in enumerate(out.committed_to(BY_USER)) if key == MARKER_KEY]


def in_place(worker: Worker, clients: FakeClients, skipped: list[FakeMessage] | None = None) -> list[FakeMessage]:
    """Drain: the first turn pauses the raw input and commits the markers; the next reads them
    back (and `skipped`, raw input fetched before the pause); the commit after it completes the
    drain, and the turn after that puts the partition in place. The markers read back."""
    worker.poll_once()
    back = markers(producer(clients))
    clients.consumer_.queued = [[*(skipped or []), *back]]
    worker.poll_once()  # the markers are back: the commit that completes the drain
    worker.poll_once()  # in place, raw input resumed
    return back


def test_partition_of_is_kafkas_murmur2_partitioner() -> None:
    # Kafka's UtilsTest.testMurmur2 (signed 32-bit results).
    vectors = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
               b"a-little-bit-longer-string": -1486304829, b"abc": 479470107,
               b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    for key, signed in vectors.items():
        assert murmur2(key) == signed & 0xFFFFFFFF
        assert partition_of(key, 7) == (signed & 0x7FFFFFFF) % 7


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=1000))
def test_partition_of_is_a_partition(key: bytes, partitions: int) -> None:
    assert 0 <= partition_of(key, partitions) < partitions


def test_a_drain_puts_the_partition_in_place_and_its_events_then_skip_the_by_user_topic() -> None:
    worker, clients, _ = opened()
    worker.poll_once()  # nothing consumed: the drain begins
    out = producer(clients)
    assert clients.consumer_.paused == {(RAW, 0)}
    assert out.transactions == ["begin", "commit"] and len(markers(out)) == 1
    early = raw(7)  # fetched before the pause took: passed over, read again after the drain
    clients.consumer_.queued = [[early, *markers(out)]]
    worker.poll_once()
    worker.poll_once()
    assert worker.shortcut.direct == {0} and clients.consumer_.paused == set()
    assert clients.consumer_.seeks[-1] == (RAW, 0, 7)
    assert out.offsets[-1] == [(BY_USER, 0, 101)]  # the marker's offset; the raw message was not taken
    clients.consumer_.queued = [[raw(7, plan="pro")]]
    worker.poll_once()
    worker.commit()
    assert [key for key, _, _ in out.committed_to(BY_USER)] == [MARKER_KEY]  # no event went through the topic
    assert len(out.committed_to(worker.settings.topics.enriched)) == 1
    assert out.offsets[-1] == [(RAW, 0, 8)]
    assert worker.partitions.stores[0].state_of("default/u:user-1") == {"plan": "pro"}


def test_an_event_in_place_writes_the_records_the_by_user_hop_would_have() -> None:
    records = {}
    for shortcut in (False, True):
        worker, clients, _ = opened(by_user_shortcut=shortcut)
        if shortcut:
            in_place(worker, clients)
        clients.consumer_.queued = [[raw(1, plan="free", visits=1), raw(2, user="user-2", plan="pro"),
                                     raw(3, plan="team")]]
        worker.poll_once()
        worker.commit()
        out = producer(clients)
        if not shortcut:  # through the topic: read the by-user records back, as the next turn does
            clients.consumer_.queued = [[FakeMessage((BY_USER, 0, n), data=value, key_data=key)
                                         for n, (key, value, _) in enumerate(out.committed_to(BY_USER))]]
            worker.poll_once()
            worker.commit()
        records[shortcut] = {kind: out.committed_to(getattr(worker.settings.topics, kind)) for kind in OUTPUTS}
    assert records[True] == records[False]
    assert len(records[True]["enriched"]) == 3


def test_an_aborted_marking_commit_ends_the_drain_and_the_raw_input_flows_again() -> None:
    worker, clients, clock = opened()
    clients.producers[-1].refuse_commit = [KafkaError(KafkaError._FAIL, "refused", txn_requires_abort=True)]
    worker.poll_once()
    assert worker.shortcut.drain is None and worker.shortcut.direct == set()
    assert clients.consumer_.paused == set()
    worker.poll_once()
    assert worker.shortcut.drain is None  # not before RETRY_AFTER_S
    clock.now += RETRY_AFTER_S
    worker.poll_once()
    assert worker.shortcut.drain is not None


def test_a_marker_read_in_an_aborted_batch_is_waited_for_again() -> None:
    worker, clients, _ = opened()
    worker.poll_once()
    back = markers(producer(clients))
    clients.consumer_.queued = [back]
    producer(clients).refuse_commit = [KafkaError(KafkaError._FAIL, "refused", txn_requires_abort=True)]
    worker.poll_once()  # the marker came back, but the batch that read it is aborted
    assert worker.shortcut.drain is not None and worker.shortcut.drain.waiting == {0}
    assert clients.consumer_.seeks[-1] == (BY_USER, 0, 100)  # it will be read again
    worker.poll_once()
    assert worker.shortcut.direct == set()
    clients.consumer_.queued = [back]
    worker.poll_once()
    worker.poll_once()
    assert worker.shortcut.direct == {0}


def test_markers_read_in_committed_batches_stay_read_when_a_later_batch_aborts() -> None:
    worker, clients, _ = opened(partitions=2)
    worker.poll_once()
    first, second = markers(producer(clients))
    clients.consumer_.queued = [[first]]
    worker.poll_once()
    worker.commit()  # the batch that read partition 0's marker commits
    clients.consumer_.queued = [[second]]
    producer(clients).refuse_commit = [KafkaError(KafkaError._FAIL, "refused", txn_requires_abort=True)]
    worker.poll_once()
    worker.commit()  # the batch that read partition 1's marker aborts: only that one is read again
    drain = worker.shortcut.drain
    assert drain is not None and drain.waiting == {1}
    clients.consumer_.queued = [[second]]
    worker.poll_once()
    worker.poll_once()
    assert worker.shortcut.direct == {0, 1}


def test_another_drains_marker_is_passed_over() -> None:
    worker, clients, _ = opened()
    worker.poll_once()
    stale = FakeMessage((BY_USER, 0, 50), data=b"other-instance/1/1", key_data=MARKER_KEY)
    clients.consumer_.queued = [[stale]]
    worker.poll_once()
    worker.poll_once()
    assert worker.shortcut.direct == set() and worker.shortcut.drain is not None
    assert worker.shortcut.drain.waiting == {0}


def test_new_partitions_cancel_a_drain_and_end_the_shortcut() -> None:
    worker, clients, _ = opened()
    in_place(worker, clients)
    assert worker.shortcut.direct == {0}
    consumer = clients.consumer_
    worker.on_assign(consumer, [TopicPartition(RAW, 1)])  # type: ignore[arg-type]  # may bring older records
    assert worker.shortcut.direct == set()
    clients.consumer_.queued = [[raw(1)]]
    worker.poll_once()  # through the topic until the next drain, which begins at once
    out = producer(clients)
    assert worker.shortcut.drain is not None
    worker.on_assign(consumer, [TopicPartition(RAW, 2)])  # type: ignore[arg-type]  # a rebalance mid-drain
    worker.poll_once()
    assert worker.shortcut.drain is None and consumer.paused == set()
    keys = [key for key, _, _ in out.committed_to(BY_USER)]
    assert keys.count(b"default/u:user-1") == 1


def test_a_rebalance_between_a_drains_last_commit_and_its_end_cancels_it() -> None:
    worker, clients, _ = opened()
    worker.poll_once()
    clients.consumer_.queued = [markers(producer(clients))]
    worker.poll_once()  # the markers are back and committed: the drain is done, in place at the next turn...
    worker.on_assign(clients.consumer_, [TopicPartition(RAW, 1)])  # type: ignore[arg-type]  # ...unless this
    worker.poll_once()
    assert worker.shortcut.direct == set() and worker.shortcut.drain is None


def test_a_drain_past_its_timeout_is_cancelled() -> None:
    worker, clients, clock = opened()
    worker.poll_once()
    clock.now += DRAIN_TIMEOUT_S + 0.1
    worker.poll_once()
    assert worker.shortcut.drain is None and clients.consumer_.paused == set()
    assert worker.shortcut.direct == set()


def test_a_drain_whose_partitions_all_went_ends() -> None:
    worker, clients, _ = opened()
    worker.poll_once()
    assert worker.shortcut.drain is not None
    worker.on_revoke(clients.consumer_, [TopicPartition(BY_USER, 0)])  # type: ignore[arg-type]
    worker.poll_once()
    assert worker.shortcut.drain is None and clients.consumer_.paused == set()


def test_a_revoked_partition_leaves_the_shortcut() -> None:
    worker, clients, _ = opened()
    in_place(worker, clients)
    worker.on_revoke(clients.consumer_, [TopicPartition(BY_USER, 0)])  # type: ignore[arg-type]
    assert worker.shortcut.direct == set()


@pytest.mark.parametrize("settings", [{"by_user_shortcut": False}, {"skip_split": True}])
def test_without_the_shortcut_no_drain_begins(settings: dict[str, Any]) -> None:
    worker, clients, _ = opened(**settings)
    worker.poll_once()
    assert worker.shortcut.drain is None and clients.consumer_.paused == set()
    assert producer(clients).transactions == []
