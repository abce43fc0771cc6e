"""Stores on local disk (`state_store=disk`) against a real broker: a restart reads only the
changelogs' tail after the store's checkpoint; a store ahead of Kafka, unreadable, or with a
checkpoint below a changelog's low watermark is rebuilt from the changelogs, never trusted; a
worker stopped in the middle of a restore lets its store go."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer, TopicPartition

from dev.loadgen import StreamGenerator
from dev.verify import expected_counts, expected_outputs, produce_raw, read_topic, wait_for_outputs
from tests.support.outputs import assert_same_outputs
from tests.support.settings import worker_settings
from tests.support.topics import create_all_topics
from tests.support.workers import WorkerThread
from worker.runtime.local_state import StoreFactory
from worker.runtime.restore import ends, restore_partition
from worker.runtime.settings import WorkerSettings
from worker.runtime.state import META, StateCache, StoreCheckpoint
from worker.runtime.topics import admin_client
from worker.serde import codec_for

PARTITIONS = 3


def stream(seed: int, parts: int) -> list[list[Any]]:
    records = list(StreamGenerator(seed=seed, users=120, bad_share=0.02).records(900 * parts))
    return [records[i::parts] for i in range(parts)]


def run_to_end(settings: WorkerSettings, tmp_path: Path, instance: str) -> WorkerThread:
    """A worker (under `instance`) that has processed everything produced so far, then stopped."""
    workdir = tmp_path / f"expected-{instance}"
    workdir.mkdir()
    wanted = expected_counts(settings, expected_outputs(settings, workdir))
    worker = WorkerThread(settings.model_copy(update={"instance_id": instance})).start()
    wait_for_outputs(settings, wanted)
    worker.stop()
    return worker


def checkpoints(settings: WorkerSettings, instance: str) -> dict[int, StoreCheckpoint | None]:
    """The checkpoint each partition's store of `instance` holds on disk."""
    factory = StoreFactory(settings.model_copy(update={"instance_id": instance}), codec_for("state", "json"),
                           StateCache(1 << 20))
    found = {}
    for partition in range(PARTITIONS):
        stores = factory.open(partition)
        found[partition] = stores.trusted
        stores.close()
    return found


def rewrite_checkpoints(settings: WorkerSettings, change: dict[str, int]) -> None:
    factory = StoreFactory(settings, codec_for("state", "json"), StateCache(1 << 20))
    for partition in range(PARTITIONS):
        stores = factory.open(partition)
        checkpoint = stores.checkpoint
        for name, by in change.items():
            setattr(checkpoint, name, getattr(checkpoint, name) + by)
        stores.kv.write([(META, checkpoint.encode())])
        stores.close()


def state_records_from(settings: WorkerSettings, starts: dict[int, int]) -> int:
    records = read_topic(settings.bootstrap_servers, settings.topics.state)
    return sum(1 for record in records if record.offset >= starts.get(record.partition, 0))


def test_a_restart_reads_only_the_changelog_tail_written_after_its_checkpoint(kafka_bootstrap: str,
                                                                             tmp_path: Path) -> None:
    settings = worker_settings(kafka_bootstrap, partitions=PARTITIONS)
    create_all_topics(settings)
    first, second, third = stream(31, 3)
    produce_raw(settings, first)
    run_to_end(settings, tmp_path, "i0")
    at_stop = checkpoints(settings, "i0")
    assert all(checkpoint is not None and checkpoint.state_offset > 0 for checkpoint in at_stop.values())
    produce_raw(settings, second)
    run_to_end(settings, tmp_path, "i1")  # another instance owns the partitions for a while
    produce_raw(settings, third)
    expected = expected_outputs(settings, tmp_path)
    tail = state_records_from(settings, {p: c.state_offset for p, c in at_stop.items() if c is not None})
    total = state_records_from(settings, {})
    assert 0 < tail < total
    back = WorkerThread(settings).start()  # i0 again: its stores on disk are behind by i1's records
    wait_for_outputs(settings, expected_counts(settings, expected))
    restored = back.sample("experiment_worker_restore_records_total", topic=settings.topics.state)
    back.stop()
    assert restored == tail, f"read {restored} state records; the tail after the checkpoints is {tail} of {total}"
    assert back.sample("experiment_worker_store_rebuilds_total", reason="beyond_end") == 0
    assert_same_outputs(settings, expected)


def restarted_after(kafka_bootstrap: str, tmp_path: Path, seed: int,
                    damage: Callable[[WorkerSettings], None]) -> WorkerThread:
    """i0 processes half a stream and stops; `damage` is done to its stores; it restarts on the
    whole stream and must end where process-file does. The stopped restarted worker."""
    settings = worker_settings(kafka_bootstrap, partitions=PARTITIONS)
    create_all_topics(settings)
    first, second = stream(seed, 2)
    produce_raw(settings, first)
    run_to_end(settings, tmp_path, "i0")
    damage(settings)
    produce_raw(settings, second)
    expected = expected_outputs(settings, tmp_path)
    back = WorkerThread(settings).start()
    wait_for_outputs(settings, expected_counts(settings, expected))
    back.stop()
    assert_same_outputs(settings, expected)
    return back


def test_a_store_ahead_of_the_committed_changelog_is_rebuilt(kafka_bootstrap: str, tmp_path: Path) -> None:
    """What an unclean shutdown can leave (a store written past what Kafka committed) is never trusted."""
    back = restarted_after(kafka_bootstrap, tmp_path, 32, lambda settings: rewrite_checkpoints(
        settings, {"state_offset": 1000}))
    assert back.sample("experiment_worker_store_rebuilds_total", reason="beyond_end") == PARTITIONS
    read = back.sample("experiment_worker_restore_records_total", topic=back.worker.settings.topics.state)
    assert read > 0, "a rebuilt store reads its changelog from the beginning"


def test_an_unreadable_store_is_rebuilt(kafka_bootstrap: str, tmp_path: Path) -> None:
    def corrupt(settings: WorkerSettings) -> None:
        factory = StoreFactory(settings, codec_for("state", "json"), StateCache(1 << 20))
        for partition in range(PARTITIONS):
            (factory.path(partition) / "CURRENT").write_text("MANIFEST-999999\n")  # a manifest that is not there

    back = restarted_after(kafka_bootstrap, tmp_path, 33, corrupt)
    assert back.sample("experiment_worker_store_rebuilds_total", reason="unreadable") == PARTITIONS


def test_a_checkpoint_below_the_low_watermark_is_rebuilt(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = worker_settings(kafka_bootstrap, partitions=PARTITIONS)
    create_all_topics(settings)
    produce_raw(settings, stream(34, 1)[0])
    run_to_end(settings, tmp_path, "i0")
    # Dedupe entries the store never saw, then deleted (retention does this): its checkpoint is now
    # below the dedupe changelog's low watermark, and what it missed is gone.
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for partition in range(PARTITIONS):
        producer.produce(settings.topics.dedupe, key=b"default/u:gone/i-gone", value=b"1", partition=partition)
    assert producer.flush(30) == 0
    admin = admin_client(settings)
    highs = [ends(admin, TopicPartition(settings.topics.dedupe, p))[2] for p in range(PARTITIONS)]
    futures = admin.delete_records([TopicPartition(settings.topics.dedupe, p, high) for p, high in enumerate(highs)])
    for future in futures.values():
        future.result()
    back = WorkerThread(settings).start()
    deadline = time.monotonic() + 60
    while back.sample("experiment_worker_ready") != 1 or len(back.worker.partitions.stores) < PARTITIONS:
        assert time.monotonic() < deadline, "the worker never became ready"
        time.sleep(0.1)
    read = back.sample("experiment_worker_restore_records_total", topic=settings.topics.state)
    back.stop()
    assert back.sample("experiment_worker_store_rebuilds_total", reason="below_low") == PARTITIONS
    assert read == state_records_from(settings, {}), "a rebuilt store reads its whole state changelog"


def test_a_worker_stopped_in_the_middle_of_a_restore_lets_its_store_go(kafka_bootstrap: str,
                                                                       tmp_path: Path) -> None:
    """Shutdown revokes a partition mid-restore: the restore stops, its store closes (the lock goes),
    and the next owner under the same id restores the rest and ends where process-file does."""
    settings = worker_settings(kafka_bootstrap, partitions=PARTITIONS)
    create_all_topics(settings)
    first, second = stream(35, 2)
    produce_raw(settings, first)
    run_to_end(settings, tmp_path, "i1")  # the changelogs, written by another instance
    produce_raw(settings, second)
    expected = expected_outputs(settings, tmp_path)
    stuck, release = threading.Event(), threading.Event()

    def slow(*args: Any) -> Any:
        progress = args[5]

        def held(done: int, total: int) -> None:
            progress(done, total)
            stuck.set()
            release.wait(30)
            progress(done, total)  # raises Cancelled once the partition went
        return restore_partition(*args[:5], held)

    worker = WorkerThread(settings)
    worker.worker.partitions.restorer = slow
    worker.start()
    assert stuck.wait(60), "no restore started"
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    time.sleep(0.5)
    release.set()
    stopper.join(60)
    assert not worker.thread.is_alive()
    back = WorkerThread(settings).start()  # the same directories: every lock was let go
    wait_for_outputs(settings, expected_counts(settings, expected))
    back.stop()
    assert_same_outputs(settings, expected)
