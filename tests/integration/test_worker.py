"""The Kafka worker against a real broker: its read_committed outputs equal process-file's."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from prometheus_client import CollectorRegistry

from dev.loadgen import RawRecord, StreamGenerator
from dev.verify import (
    Outputs,
    diff,
    expected_counts,
    expected_outputs,
    kafka_outputs,
    produce_raw,
    read_topic,
    wait_for_outputs,
)
from tests.support.outputs import assert_same_outputs
from tests.support.settings import worker_settings
from tests.support.topics import create_all_topics, set_topic_config
from tests.support.workers import WorkerThread
from worker.core.records import state_record
from worker.errors import DlqLimitExceeded, TopologyError
from worker.runtime.clients import producer_config
from worker.runtime.metrics import Metrics
from worker.runtime.partitioner import partition_of
from worker.runtime.runner import Worker
from worker.runtime.settings import WorkerSettings
from worker.runtime.shortcut import MARKER_KEY
from worker.runtime.topics import admin_client
from worker.serde import codec_for


def expected_for(settings: WorkerSettings, tmp_path: Path, events: int, seed: int) -> tuple[Outputs, dict[str, int]]:
    create_all_topics(settings)
    produce_raw(settings, list(StreamGenerator(seed=seed, users=150, bad_share=0.05).records(events)))
    expected = expected_outputs(settings, tmp_path)
    return expected, expected_counts(settings, expected)


@pytest.mark.parametrize("shortcut", [True, False])
def test_kafka_outputs_equal_process_file(kafka_bootstrap: str, tmp_path: Path, shortcut: bool) -> None:
    """With the by-user shortcut (events of the instance's own by-user partitions processed in
    place, runtime/shortcut.py) and without it (every event through the by-user topic)."""
    settings = worker_settings(kafka_bootstrap, by_user_shortcut=shortcut)
    create_all_topics(settings)
    worker = WorkerThread(settings).start()
    deadline = time.monotonic() + 60
    while shortcut and len(worker.worker.shortcut.direct) < settings.partitions:
        assert time.monotonic() < deadline, "the partitions never went in place"
        time.sleep(0.05)
    expected, wanted = expected_for(settings, tmp_path, 3000, seed=11)
    assert wanted[settings.topics.dlq] > 0, "the stream should exercise the DLQ"
    wait_for_outputs(settings, wanted)
    worker.stop()
    assert_same_outputs(settings, expected)
    in_place = worker.sample("experiment_worker_shortcut_events_total")
    through = [record for record in read_topic(kafka_bootstrap, settings.topics.by_user) if record.key != MARKER_KEY]
    if shortcut:  # keyed producers: each event's by-user partition is its raw partition, owned here
        assert in_place > 0 and through == []
    else:
        assert in_place == 0 and len(through) > 0


def test_the_partitioner_is_the_producers(kafka_bootstrap: str) -> None:
    """The by-user shortcut predicts the partition librdkafka's murmur2_random gives a user key."""
    settings = worker_settings(kafka_bootstrap)
    topic = f"{settings.topics.by_user}.partitioner"
    admin = admin_client(settings)  # held until its futures are done
    for future in admin.create_topics([NewTopic(topic, 7, 1)]).values():
        future.result()
    producer = Producer(producer_config(settings.model_copy(update={"guarantee": "at-least-once"})))
    delivered: dict[bytes, int] = {}
    keys = [f"default/{kind}:{name}-{n}".encode() for n in range(300) for kind, name in (("u", "user"), ("d", "dev"))]
    for key in [*keys, "shop/u:caf\u00e9-\u2603".encode()]:
        producer.produce(topic, b"", key, on_delivery=lambda error, message: delivered.__setitem__(
            message.key(), message.partition()))
    assert producer.flush(30) == 0
    assert delivered == {key: partition_of(key, 7) for key in delivered}
    assert len(set(delivered.values())) == 7


def test_the_loop_keeps_running_while_a_partition_restores(kafka_bootstrap: str) -> None:
    """A big partition restores in a thread: the loop (and the other partitions) do not wait for it."""
    settings = worker_settings(kafka_bootstrap, partitions=2)
    create_all_topics(settings)
    users = 300_000
    codec = codec_for("state", "json")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for number in range(users):
        key = f"default/u:bulk-{number:06d}"
        value = codec.encode(state_record("default", key, {"plan": "pro", "seats": number}, 1))
        while True:
            try:
                producer.produce(settings.topics.state, key=key.encode(), value=value, partition=0)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    worker = WorkerThread(settings).start()
    deadline = time.monotonic() + 60
    while 0 not in worker.worker.partitions.restorations:
        assert time.monotonic() < deadline, "partition 0 never started restoring"
        time.sleep(0.01)
    loops = set()
    while 0 in worker.worker.partitions.restorations and len(loops) < 3:
        loops.add(worker.worker.last_loop)
        time.sleep(0.05)
    assert len(loops) >= 3, "the loop stood still while partition 0 restored"
    while 0 not in worker.worker.partitions.stores:
        assert time.monotonic() < deadline, "partition 0 was never installed"
        time.sleep(0.05)
    assert worker.worker.partitions.stores[0].users == users
    worker.stop()


def test_restart_mid_stream_loses_and_duplicates_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = worker_settings(kafka_bootstrap, commit_every_messages=20)
    create_all_topics(settings)
    records = list(StreamGenerator(seed=12, users=150, bad_share=0.05).records(4000))
    half = len(records) // 2
    produce_raw(settings, records[:half])
    first = WorkerThread(settings).start()
    deadline = time.monotonic() + 60
    while not read_topic(kafka_bootstrap, settings.topics.enriched):
        assert time.monotonic() < deadline, "the first worker made no progress"
        time.sleep(0.05)
    first.stop()  # mid-stream: the second half is not even produced yet
    produce_raw(settings, records[half:])
    expected = expected_outputs(settings, tmp_path)
    second = WorkerThread(settings).start()  # same instance id: restores state from the changelogs
    wait_for_outputs(settings, expected_counts(settings, expected))
    second.stop()
    assert_same_outputs(settings, expected)


@pytest.mark.parametrize("protocol", ["consumer", "classic"])
def test_two_instances_split_partitions_and_agree(kafka_bootstrap: str, tmp_path: Path, protocol: str) -> None:
    settings = worker_settings(kafka_bootstrap, partitions=4, group_protocol=protocol)
    other = worker_settings(kafka_bootstrap, instance_id="i1", partitions=4, group_protocol=protocol,
                            topics=settings.topics.model_dump(), group_id=settings.group_id)
    create_all_topics(settings)
    one, two = WorkerThread(settings).start(), WorkerThread(other).start()
    deadline = time.monotonic() + 120
    # Produce only once the group has settled with partitions on both instances. Under KIP-848
    # the range assignor balances the stateful topic itself and co-partitions: each instance owns
    # two by-user partitions and the raw partitions with the same numbers. The classic
    # cooperative-sticky assignor balances both topics together, so one instance may hold only
    # raw partitions; it must still agree.
    while not settled(one, two, balanced=protocol == "consumer"):
        assert time.monotonic() < deadline, f"the two instances did not share the partitions: {owned(one)} {owned(two)}"
        time.sleep(0.1)
    expected, wanted = expected_for(settings, tmp_path, 4000, seed=13)
    wait_for_outputs(settings, wanted)
    one.stop()
    two.stop()
    for instance in (one, two):  # each has a registry of its own: what it read, it counted
        # Under classic, one instance may own only raw or only by-user partitions: count both.
        read = sum(instance.sample("experiment_worker_messages_in_total", topic=topic)
                   for topic in (settings.topics.raw, settings.topics.by_user))
        assert read > 0, f"{instance.worker.settings.instance_id} consumed nothing"
    assert_same_outputs(settings, expected)


def owned(thread: WorkerThread) -> dict[str, set[int]]:
    consumer = thread.worker.consumer
    topics: dict[str, set[int]] = {}
    for tp in consumer.assignment() if consumer is not None else []:
        topics.setdefault(tp.topic.rsplit(".", 1)[-1], set()).add(tp.partition)
    return topics


def settled(one: WorkerThread, two: WorkerThread, balanced: bool) -> bool:
    if one.worker.partitions.restoring or two.worker.partitions.restoring:
        return False
    first, second = owned(one), owned(two)
    if not balanced:
        return bool(first) and bool(second)
    return all(len(ours.get("by_user", ())) == 2 and ours.get("raw") == ours.get("by_user") for ours in (first, second))


def test_refuses_unequal_partition_counts(kafka_bootstrap: str) -> None:
    settings = worker_settings(kafka_bootstrap, partitions=3)
    admin = admin_client(settings)
    futures = admin.create_topics([NewTopic(settings.topics.state, 2, 1, config={"cleanup.policy": "compact"})])
    for future in futures.values():
        future.result()
    create_all_topics(settings)
    with pytest.raises(TopologyError, match=r"3 partitions but .* has 2"):
        Worker(settings, Metrics(CollectorRegistry())).run()


def test_at_least_once_redoes_refused_batches_and_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    """For a while the broker refuses every write to the enriched topic (its max.message.bytes is
    cut below any record): each batch's deliveries fail, and at-least-once redoes the batch from
    the rolled-back stores, while the other outputs of the refused batches stay written. Once the
    topic takes writes again, nothing is lost or wrong and the final state is exact; the refused
    batches' other records are there twice, which at-least-once allows."""
    settings = worker_settings(kafka_bootstrap, guarantee="at-least-once")
    create_all_topics(settings)
    records = list(StreamGenerator(seed=14, users=150, bad_share=0.05).records(3000))
    half = len(records) // 2
    produce_raw(settings, records[:half])
    worker = WorkerThread(settings).start()
    wait_for_outputs(settings, {settings.topics.enriched: 1})
    admin = admin_client(settings)
    set_topic_config(admin, settings.topics.enriched, "max.message.bytes", "64")
    try:
        produce_raw(settings, records[half:])  # mid-stream: the second half meets the refusal
        deadline = time.monotonic() + 60
        while worker.sample("experiment_worker_transactions_total", outcome="aborted") < 3:
            assert time.monotonic() < deadline, "the refused writes never made the worker redo a batch"
            time.sleep(0.1)
    finally:
        set_topic_config(admin, settings.topics.enriched, "max.message.bytes", None)
    expected = expected_outputs(settings, tmp_path)
    # Counts cannot tell when it is done (duplicates count too): wait until nothing is missing.
    deadline = time.monotonic() + 120
    while (damage := diff(expected, kafka_outputs(settings)))[0] > 0:
        assert time.monotonic() < deadline, f"(lost, duplicated, wrong) still {damage} after 120 s"
        time.sleep(1.0)
    worker.stop()
    lost, duplicated, wrong = diff(expected, kafka_outputs(settings))
    assert (lost, wrong) == (0, 0), "at-least-once lost records, or wrote wrong ones, or the state differs"
    assert duplicated > 0, "the refused batches' deltas and DLQ records should have been written again"


def test_skip_split_processes_raw_keyed_by_user(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Producers that key by user key can skip the by-user hop: same outputs."""
    settings = worker_settings(kafka_bootstrap, skip_split=True)
    expected, wanted = expected_for(settings, tmp_path, 2000, seed=15)
    worker = WorkerThread(settings).start()
    wait_for_outputs(settings, wanted)
    worker.stop()
    assert_same_outputs(settings, expected)


def test_dlq_limit_stops_the_worker_with_a_clear_error(kafka_bootstrap: str) -> None:
    settings = worker_settings(kafka_bootstrap, dlq_max_ratio=0.5, dlq_window=20)
    create_all_topics(settings)
    produce_raw(settings, [RawRecord(None, value_raw="{broken") for _ in range(30)])
    worker = WorkerThread(settings).start()
    worker.thread.join(60)
    assert not worker.thread.is_alive(), "the worker should have stopped by itself"
    assert isinstance(worker.error, DlqLimitExceeded)
    assert "went to the DLQ" in str(worker.error)
    assert read_topic(kafka_bootstrap, settings.topics.dlq) == [], "the tripping batch is aborted, not committed"


def test_avro_outputs_decode_to_the_same_records(kafka_bootstrap: str, tmp_path: Path) -> None:
    avro = {kind: "avro" for kind in ("enriched", "deltas", "state", "dlq")}
    settings = worker_settings(kafka_bootstrap, formats=avro)
    expected, wanted = expected_for(settings, tmp_path, 2000, seed=16)
    worker = WorkerThread(settings).start()
    wait_for_outputs(settings, wanted)
    worker.stop()
    assert read_topic(kafka_bootstrap, settings.topics.enriched)[0].value[:2] == b"\xc3\x01"  # type: ignore[index]
    assert_same_outputs(settings, expected)  # decoded with the schemas in schemas/


def test_avro_raw_input_is_read_and_an_unknown_schema_goes_to_the_dlq(kafka_bootstrap: str) -> None:
    settings = worker_settings(kafka_bootstrap)
    create_all_topics(settings)
    event = {"user_id": "user-avro-1", "event_type": "purchase", "time": 1_763_978_400_000,
             "user_properties": {"$set": {"plan": "pro"}}}
    good = codec_for("raw", "avro").encode(event)
    unknown = b"\xc3\x01" + b"\x00" * 8 + good[10:]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(settings.topics.raw, value=good)
    producer.produce(settings.topics.raw, value=unknown)
    assert producer.flush(10) == 0
    worker = WorkerThread(settings).start()
    wait_for_outputs(settings, {settings.topics.enriched: 1, settings.topics.dlq: 1})
    worker.stop()
    enriched = kafka_outputs(settings).events["default/u:user-avro-1"]
    assert enriched[0]["user_properties"] == {"plan": "pro"}
    dlq = read_topic(kafka_bootstrap, settings.topics.dlq)
    assert orjson.loads(dlq[0].value or b"")["reason"] == "unknown_schema"
