"""The runner's behaviours with fake clients and a fake clock: commit cadence, what a transaction
holds, abort and rewind, a revoke in the middle of a restore, the DLQ limit. No broker."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from tests.support.clock import T0, FakeClock
from tests.support.fakes import FakeClients, FakeConsumer, FakeMessage, FakeProducer
from tests.support.settings import offline_settings
from tests.support.workers import idle_worker
from worker.core.records import state_record
from worker.errors import DlqLimitExceeded, KafkaCallsHung
from worker.runtime.kafka_errors import Watchdog
from worker.runtime.kv import RocksKV
from worker.runtime.metrics import Metrics
from worker.runtime.restore import RestoreResult
from worker.runtime.runner import CONSUME_TIMEOUT_S, Worker

RAW, BY_USER = "events.raw", "experiment-worker.by-user"


def restored_at_once(*args: Any) -> RestoreResult:
    return RestoreResult(args[2])


def opened(**settings: Any) -> tuple[Worker, FakeClients, FakeClock]:
    """A worker opened on fake clients (no topic check), owning raw and by-user partition 0, restored."""
    clients, clock = FakeClients(), FakeClock()
    worker = Worker(offline_settings(**settings), Metrics(CollectorRegistry()), clients, clock)  # type: ignore[arg-type]
    worker.partitions.restorer = restored_at_once
    worker.open()
    consumer = clients.consumer_
    worker.on_assign(consumer, [TopicPartition(RAW, 0), TopicPartition(BY_USER, 0)])  # type: ignore[arg-type]
    while worker.partitions.restoring:
        worker.partitions.install_restored(consumer)  # type: ignore[arg-type]
    return worker, clients, clock


def by_user(offset: int, user: str = "user-1", partition: int = 0, **user_properties: Any) -> FakeMessage:
    event = {"project_id": "default", "event_type": "click", "user_id": user, "time": T0, "insert_id": f"i-{offset}",
             "event_properties": {}, "user_properties": {"$set": user_properties} if user_properties else {},
             "ingested_at": T0 + offset}
    value = orjson.dumps({"v": 1, "user_key": f"default/u:{user}", "source": [RAW, 0, offset, None],
                          "skip_sync": False, "event": event})
    return FakeMessage((BY_USER, partition, offset), data=value, key_data=f"default/u:{user}".encode())


def producer(clients: FakeClients) -> FakeProducer:
    return clients.producers[-1]


def test_a_batch_commits_after_commit_every_messages_with_its_offsets_and_one_state_record_per_user() -> None:
    worker, clients, _ = opened(commit_every_messages=3, commit_interval_ms=60_000)
    clients.consumer_.queued = [[by_user(5, plan="free"), by_user(6, plan="pro"), by_user(7, user="user-2", a=1)]]
    worker.poll_once()
    out = producer(clients)
    assert out.transactions == ["begin", "commit"]
    assert out.offsets == [[(BY_USER, 0, 8)]]
    state = out.committed_to(worker.settings.topics.state)
    # user-1 changed twice in the batch: one record, its last value, to the partition it came from.
    assert sorted((key, orjson.loads(value)["user_properties"], partition) for key, value, partition in state) == [
        (b"default/u:user-1", {"plan": "pro"}, 0), (b"default/u:user-2", {"a": 1}, 0)]
    assert len(out.committed_to(worker.settings.topics.enriched)) == 3
    assert len(out.committed_to(worker.settings.topics.dedupe)) == 3
    assert worker.partitions.stores[0].state_of("default/u:user-1") == {"plan": "pro"}


def test_the_store_checkpoint_reaches_each_changelogs_last_offset_from_one_delivery_report_per_topic() -> None:
    worker, clients, _ = opened(commit_every_messages=3, commit_interval_ms=60_000)
    for batch in range(2):
        clients.consumer_.queued = [[by_user(3 * batch + n, user=f"user-{n}", a=batch) for n in range(3)]]
        worker.poll_once()
    out, checkpoint = producer(clients), worker.partitions.stores[0].checkpoint
    assert out.transactions == ["begin", "commit", "begin", "commit"]
    # Two batches of three users and three dedupe entries each: offsets 0–5 on each changelog.
    assert (checkpoint.state_offset, checkpoint.dedupe_offset, checkpoint.input_offset) == (6, 6, 6)
    assert out.delivery_reports == 4  # the last state and the last dedupe record of each batch


def test_a_batch_commits_after_commit_interval_ms_and_not_before() -> None:
    worker, clients, clock = opened(commit_every_messages=1000, commit_interval_ms=100, commit_idle_ms=100)
    clients.consumer_.queued = [[by_user(1, plan="free")]]
    worker.poll_once()
    assert producer(clients).transactions == ["begin"]  # open: 0 ms of its 100 have passed
    clock.now += 0.099
    worker.poll_once()
    assert producer(clients).transactions == ["begin"]
    clock.now += 0.002
    worker.poll_once()
    assert producer(clients).transactions == ["begin", "commit"]


def test_a_caught_up_batch_commits_after_commit_idle_ms_and_a_full_consume_waits_for_the_interval() -> None:
    worker, clients, clock = opened(commit_every_messages=100_000, commit_interval_ms=100, commit_idle_ms=20)
    full = [[by_user(offset, user=f"user-{offset % 7}") for offset in range(start, start + 1000)]
            for start in (0, 1000)]  # all that consume() asked for, twice
    clients.consumer_.queued = full
    worker.poll_once()
    clock.now += 0.030
    worker.poll_once()  # 30 ms on, but this consume came back full: more input is waiting
    assert producer(clients).transactions == ["begin"]
    clients.consumer_.queued = [[by_user(2000)]]
    worker.poll_once()  # fewer than asked for: caught up, and the batch is past 20 ms
    assert producer(clients).transactions == ["begin", "commit"]
    assert producer(clients).offsets == [[(BY_USER, 0, 2001)]]
    clients.consumer_.queued = [[by_user(2001)]]
    worker.poll_once()
    clock.now += 0.019
    worker.poll_once()  # caught up (nothing came), but the new batch is 19 ms old
    assert producer(clients).transactions == ["begin", "commit", "begin"]
    clock.now += 0.002
    worker.poll_once()
    assert producer(clients).transactions == ["begin", "commit", "begin", "commit"]


def test_a_turn_takes_what_is_fetched_without_waiting_and_only_an_empty_queue_waits() -> None:
    worker, clients, _ = opened()
    consumer = clients.consumer_
    consumer.queued, consumer.timeouts = [[by_user(0)]], []
    worker.poll_once()  # one message fetched: taken at once, not held for a fuller batch
    assert consumer.timeouts == [0]
    consumer.timeouts = []
    worker.poll_once()  # nothing fetched: one look, then a short wait
    assert consumer.timeouts == [0, CONSUME_TIMEOUT_S]
    assert 0 < CONSUME_TIMEOUT_S <= 0.01


def test_an_abortable_commit_aborts_rolls_the_stores_back_and_rewinds_the_input() -> None:
    worker, clients, _ = opened(commit_every_messages=2, commit_interval_ms=60_000)
    producer(clients).refuse_commit = [KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)]
    clients.consumer_.queued = [[by_user(10, plan="free"), by_user(11, plan="pro")]]
    worker.poll_once()
    out = producer(clients)
    assert out.transactions == ["begin", "abort"] and out.produced == []
    assert worker.partitions.stores[0].state_of("default/u:user-1") is None  # rolled back
    assert (BY_USER, 0, 10) in clients.consumer_.seeks  # the batch's first offset, read again
    assert worker.metrics.registry.get_sample_value("experiment_worker_transactions_total",
                                                    {"outcome": "aborted"}) == 1
    clients.consumer_.queued = [[by_user(10, plan="free"), by_user(11, plan="pro")]]
    worker.poll_once()  # redone: committed once, the same records
    assert out.transactions == ["begin", "abort", "begin", "commit"]
    assert worker.partitions.stores[0].state_of("default/u:user-1") == {"plan": "pro"}


def test_a_fatal_commit_error_replaces_the_producer() -> None:
    worker, clients, _ = opened(commit_every_messages=1, commit_interval_ms=60_000)
    producer(clients).refuse_commit = [KafkaError(KafkaError._FENCED, "fenced", fatal=True)]
    clients.consumer_.queued = [[by_user(3, plan="free")]]
    worker.poll_once()
    assert len(clients.producers) == 2 and clients.producers[0].produced == []
    assert worker.sink is not None and worker.sink.producer is clients.producers[1]


def test_rewind_seeks_each_unhandled_partition_once_and_skips_what_the_abort_rewound() -> None:
    worker = idle_worker()
    consumer = FakeConsumer([("raw", 0), ("raw", 1), ("raw", 2)])
    worker.consumer = consumer  # type: ignore[assignment]
    worker.rewound = {("raw", 0)}  # the abort already sought raw[0] to the batch's first offset
    rest = [FakeMessage(("raw", 0, 9)), FakeMessage(("raw", 1, 7)), FakeMessage(("raw", 1, 8)),
            FakeMessage(("raw", 2, 3), failed=True), FakeMessage(("raw", 2, 4)), FakeMessage(("other", 5, 1))]
    worker.rewind(rest)  # type: ignore[arg-type]
    assert consumer.seeks == [("raw", 1, 7), ("raw", 2, 4)]


def test_a_partition_revoked_while_it_restores_is_never_installed() -> None:
    worker, clients, _ = opened()
    release = threading.Event()

    def slow_restore(*args: Any) -> RestoreResult:
        release.wait(10)
        return RestoreResult(args[2])

    worker.partitions.restorer = slow_restore
    consumer = clients.consumer_
    worker.on_assign(consumer, [TopicPartition(BY_USER, 1)])  # type: ignore[arg-type]
    assert worker.partitions.restoring and (BY_USER, 1) in consumer.paused and not worker.ready
    clients.consumer_.queued = [[by_user(0, partition=1)]]
    worker.poll_once()  # a message fetched before the pause took is left for the seek at resume
    assert worker.checkpoint.messages == 0
    worker.on_revoke(consumer, [TopicPartition(BY_USER, 1)])  # type: ignore[arg-type]
    release.set()
    worker.partitions.install_restored(consumer)  # type: ignore[arg-type]
    assert 1 not in worker.partitions.stores and not worker.partitions.restoring
    assert worker.metrics.registry.get_sample_value("experiment_worker_ready") == 1


def test_closing_waits_for_a_restore_revoked_while_it_ran_to_end_its_thread(tmp_path: Path) -> None:
    # A process that exits while a restore thread is inside RocksDB aborts (SIGABRT): at shutdown
    # the restores still running, revoked ones included, are stopped and waited for; one that
    # ended already (its store closed by its thread) is not closed twice.
    worker, clients, _ = opened(state_store="disk", state_dir=str(tmp_path))

    def slow_restore(*args: Any) -> RestoreResult:
        while True:
            args[5](0, 1)  # progress: raises Cancelled once the partition went
            threading.Event().wait(0.5 if args[2] == 1 else 0.05)  # revoked 1 is the slowest

    worker.partitions.restorer = slow_restore
    consumer = clients.consumer_
    worker.on_assign(consumer, [TopicPartition(BY_USER, n) for n in (1, 2, 3)])  # type: ignore[arg-type]
    ended = worker.partitions.restorations[3]
    worker.on_revoke(consumer, [TopicPartition(BY_USER, 1), TopicPartition(BY_USER, 3)])  # type: ignore[arg-type]
    assert ended.done.wait(5)
    worker.partitions.close(timeout_s=10)
    for partition in (1, 2, 3):  # every store let go: RocksDB's lock is free
        RocksKV(worker.partitions.factory.path(partition)).close()


def test_the_dlq_limit_stops_the_worker_when_most_input_is_bad() -> None:
    worker, clients, _ = opened(dlq_max_ratio=0.5, dlq_window=4)
    clients.consumer_.queued = [[FakeMessage((RAW, 0, offset), data=b"{not json") for offset in range(4)]]
    with pytest.raises(DlqLimitExceeded, match="went to the DLQ"):
        worker.poll_once()


def test_experiment_health_counts_committed_work_and_follows_the_partitions(tmp_path: Path) -> None:
    """The experiment-health calls of the partition manager and the emitter (issue 17): an aborted
    batch counts nothing, a committed one counts once, a restored partition's users count from its
    state and leave with it."""
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"default": {
        "checkout": {"allocation": {"control": 1, "treatment": 1}, "exposure_event": "click"}}}))
    worker, clients, _ = opened(flags_file=str(flags), commit_every_messages=2, commit_interval_ms=60_000)

    def sample(name: str, **labels: str) -> float | None:
        return worker.metrics.registry.get_sample_value(
            f"experiment_worker_{name}", {"project": "default", "flag": "checkout", **labels})

    batch = [by_user(1), by_user(2, **{"[Experiment] checkout": "control"})]  # an early click, then one with it
    producer(clients).refuse_commit = [KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)]
    clients.consumer_.queued = [list(batch)]
    worker.poll_once()
    assert (sample("experiment_users", variant="control"), sample("custom_exposures_total")) == (0, 0)
    clients.consumer_.queued = [list(batch)]
    worker.poll_once()  # redone and committed
    assert (sample("experiment_users", variant="control"), sample("custom_exposures_total"),
            sample("exposure_before_property_total")) == (1, 2, 1)

    def restored_with_a_user(*args: Any) -> RestoreResult:
        stores = args[3]
        record = state_record("default", "default/u:old", {"[Experiment] checkout": "treatment"}, T0)
        stores.restore([(b"default/u:old", stores.encode(record))], [], 1, 0)
        return RestoreResult(args[2])

    worker.partitions.restorer = restored_with_a_user
    consumer = clients.consumer_
    worker.on_assign(consumer, [TopicPartition(BY_USER, 1)])  # type: ignore[arg-type]
    while worker.partitions.restoring:
        worker.partitions.install_restored(consumer)  # type: ignore[arg-type]
    assert sample("experiment_users", variant="treatment") == 1
    worker.on_revoke(consumer, [TopicPartition(BY_USER, 1)])  # type: ignore[arg-type]
    assert (sample("experiment_users", variant="treatment"), sample("experiment_users", variant="control")) == (0, 1)


class QuickWatchdog(Watchdog):
    """The sink's watchdog, taking a call as hung after 50 ms instead of its 40 s."""

    def call(self, timeout_s: float, what: str, call: Any, *args: Any) -> Any:
        return super().call(0.05, what, call, *args)


def test_a_hung_commit_abandons_the_producer_counts_it_and_past_the_limit_stops_for_a_restart() -> None:
    worker, clients, _ = opened(commit_every_messages=1, commit_interval_ms=60_000, max_hung_calls=1)
    assert worker.sink is not None
    worker.sink.watchdog = QuickWatchdog(1, worker.metrics.count_abandoned)
    release = threading.Event()
    producer(clients).send_offsets_to_transaction = lambda *args: release.wait()  # type: ignore[method-assign]
    clients.consumer_.queued = [[by_user(3, plan="free")]]
    worker.poll_once()  # hung: the producer is abandoned for a new one, the batch rewound
    assert len(clients.producers) == 2 and clients.producers[0].produced == []
    assert (BY_USER, 0, 3) in clients.consumer_.seeks
    abandoned = {"call": "send_offsets_to_transaction"}
    assert worker.metrics.registry.get_sample_value("experiment_worker_abandoned_calls_total", abandoned) == 1
    producer(clients).send_offsets_to_transaction = lambda *args: release.wait()  # type: ignore[method-assign]
    clients.consumer_.queued = [[by_user(3, plan="free")]]
    with pytest.raises(KafkaCallsHung):  # two blocked at once, one over the limit: exit 4, restart
        worker.poll_once()
    assert worker.metrics.registry.get_sample_value("experiment_worker_abandoned_calls_total", abandoned) == 2
    assert worker.sink.in_transaction is False  # shutdown will not wait on the hung producer
    release.set()


def test_a_partition_revoked_while_its_committed_offset_is_asked_for_is_not_installed() -> None:
    """consumer.committed() serves rebalance callbacks: the revoke can land inside it (seen in
    make chaos, where the seek that followed then failed with _STATE and stopped the worker)."""
    worker, clients, _ = opened()
    consumer = clients.consumer_
    worker.on_assign(consumer, [TopicPartition(BY_USER, 1)])  # type: ignore[arg-type]
    worker.partitions.restorations[1].done.wait(10)
    asked = consumer.committed

    def committed_then_revoked(partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        worker.on_revoke(consumer, [TopicPartition(BY_USER, 1)])  # type: ignore[arg-type]
        return asked(partitions, timeout)

    consumer.committed = committed_then_revoked  # type: ignore[method-assign]
    worker.partitions.install_restored(consumer)  # type: ignore[arg-type]
    assert 1 not in worker.partitions.stores and not worker.partitions.restoring
    assert (BY_USER, 1, -2) not in consumer.seeks and all(seek[1] != 1 for seek in consumer.seeks)


def test_a_restored_partition_that_cannot_be_resumed_leaves_without_stopping_the_worker() -> None:
    worker, clients, _ = opened()
    consumer = clients.consumer_
    worker.on_assign(consumer, [TopicPartition(BY_USER, 1)])  # type: ignore[arg-type]
    worker.partitions.restorations[1].done.wait(10)

    def seek(tp: TopicPartition) -> None:
        raise KafkaException(KafkaError(KafkaError._STATE, "Failed to seek: Local: Erroneous state"))

    consumer.seek = seek  # type: ignore[method-assign]
    worker.partitions.install_restored(consumer)  # type: ignore[arg-type]
    assert 1 not in worker.partitions.stores and worker.partitions.restoring
    assert (BY_USER, 1) in consumer.paused
    clients.consumer_.queued = [[by_user(0, partition=1)]]
    worker.poll_once()  # fetched after the resume, before the revocation: skipped, not a crash
    assert worker.checkpoint.messages == 0
    worker.on_revoke(consumer, [TopicPartition(BY_USER, 1)])  # type: ignore[arg-type]
    worker.partitions.install_restored(consumer)  # type: ignore[arg-type]
    assert 1 not in worker.partitions.stores and not worker.partitions.restoring
    assert worker.ready


def test_a_restored_partition_whose_resume_fails_is_tried_again_later_each_time_and_then_installed() -> None:
    worker, clients, clock = opened()
    consumer = clients.consumer_
    worker.on_assign(consumer, [TopicPartition(BY_USER, 1)])  # type: ignore[arg-type]
    worker.partitions.restorations[1].done.wait(10)
    tries: list[float] = []
    refusing = True

    def seek(tp: TopicPartition) -> None:
        tries.append(clock.now)
        if refusing:
            raise KafkaException(KafkaError(KafkaError._STATE, "Failed to seek: Local: Erroneous state"))
        consumer.seeks.append((tp.topic, tp.partition, tp.offset))

    consumer.seek = seek  # type: ignore[method-assign]
    for _ in range(200):  # the loop asks every 10 ms for two seconds
        worker.partitions.install_restored(consumer)  # type: ignore[arg-type]
        clock.now += 0.01
    gaps = [later - earlier for earlier, later in itertools.pairwise(tries)]
    assert gaps == [pytest.approx(gap, abs=0.011) for gap in (0.1, 0.2, 0.4, 0.8)], gaps  # then 1.6, past 2 s
    refusing = False
    clock.now += 5.0
    worker.partitions.install_restored(consumer)  # type: ignore[arg-type]
    assert 1 in worker.partitions.stores and not worker.partitions.restoring
