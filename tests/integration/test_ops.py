"""The operations commands against a real broker: state get, dlq stats and replay, lag."""

from __future__ import annotations

from confluent_kafka import Producer

from tests.integration.pipeline import (
    WorkerThread,
    create_all_topics,
    produce_raw,
    read_topic,
    wait_for_outputs,
    worker_settings,
)
from worker.loadgen import RawRecord
from worker.runtime.ops import consumer_lag, dlq_replay, dlq_stats, partition_for, state_get
from worker.runtime.topics import admin_client


def test_murmur2_partition_matches_the_producer(kafka_bootstrap: str) -> None:
    settings = worker_settings(kafka_bootstrap, partitions=5)
    create_all_topics(settings)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    keys = [f"default/u:user-{n}".encode() for n in range(40)] + ["ünïcode/d:é".encode(), b"a", b"ab", b"abc"]
    for key in keys:
        producer.produce(settings.topics.enriched, key=key, value=b"x")
    assert producer.flush(10) == 0
    placed = {r.key: r.partition for r in read_topic(kafka_bootstrap, settings.topics.enriched)}
    assert placed == {key: partition_for(key, 5) for key in keys}


def test_state_get_dlq_stats_replay_and_lag(kafka_bootstrap: str) -> None:
    settings = worker_settings(kafka_bootstrap)
    create_all_topics(settings)
    produce_raw(settings, [
        RawRecord("k", value={"user_id": "user-ops-1", "event_type": "e", "user_properties": {"plan": "pro"}}),
        RawRecord("k", value_raw="{broken"),
        RawRecord("k", value={"user_id": "user-ops-1", "event_type": "e", "time": "yesterday"}),
    ])
    worker = WorkerThread(settings).start()
    try:
        wait_for_outputs(settings, {settings.topics.enriched: 1, settings.topics.dlq: 2})
        record = state_get(settings, "default/u:user-ops-1")
        assert record is not None and record["user_properties"] == {"plan": "pro"}
        assert state_get(settings, "default/u:nobody") is None
        assert dlq_stats(settings) == {"malformed_json": 1, "invalid_time": 1}
        assert dlq_replay(settings, "invalid_time", dry_run=True) == 1
        assert dlq_replay(settings, "invalid_time", dry_run=False) == 1
        wait_for_outputs(settings, {settings.topics.dlq: 3})  # the replayed unit is rejected again
        assert dlq_stats(settings) == {"malformed_json": 1, "invalid_time": 2}
        raw = read_topic(kafka_bootstrap, settings.topics.raw)
        assert len(raw) == 4 and len({r.partition for r in raw}) == 1, "the replay keeps the key's partition"
        assert raw[-1].value == raw[2].value and not any(name.startswith("dlq.") for name, _ in raw[-1].headers)
    finally:
        worker.stop()
    rows = consumer_lag(settings, admin_client(settings))
    assert {row[0] for row in rows} == {settings.topics.raw, settings.topics.by_user}
    # The by-user topic is written in transactions: its end offset counts the commit marker after
    # the last record, which no consumer commits past, so up to 1 per partition is not lag.
    assert all(row[4] <= (1 if row[0] == settings.topics.by_user else 0) for row in rows), rows
