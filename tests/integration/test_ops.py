"""The operations commands against a real broker: state get, dlq stats and replay, lag."""

from __future__ import annotations

import base64

import orjson
from confluent_kafka import Producer

from dev.loadgen import RawRecord
from dev.verify import produce_raw, read_topic, wait_for_outputs
from tests.support.settings import worker_settings
from tests.support.topics import create_all_topics
from tests.support.workers import WorkerThread
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


def test_dlq_replay_of_one_bad_event_of_an_envelope_reproduces_exactly_that_unit(kafka_bootstrap: str) -> None:
    settings = worker_settings(kafka_bootstrap)
    create_all_topics(settings)
    bad = {"user_id": "user-ops-2", "event_type": "e", "time": "yesterday", "event_properties": {"é": [1.5, None]}}
    envelope = {"api_key": "key-x", "client": "sdk-1", "options": {"min_id_length": 3}, "events": [
        {"user_id": "user-ops-2", "event_type": "e", "insert_id": "a"}, bad,
        {"user_id": "user-ops-3", "event_type": "e"},
    ]}
    produce_raw(settings, [RawRecord("k-env", value=envelope, headers={"trace": "t-1"})])
    worker = WorkerThread(settings).start()
    try:
        wait_for_outputs(settings, {settings.topics.enriched: 2, settings.topics.dlq: 1})
        (first,) = read_topic(kafka_bootstrap, settings.topics.dlq)
        record = orjson.loads(first.value or b"")
        assert (record["reason"], record["source"]["index"]) == ("invalid_time", 1)
        payload = base64.b64decode(record["payload_b64"])
        # The unit: an envelope of that event alone, with the original api_key and options (SPEC §8.4).
        assert orjson.loads(payload) == {"api_key": "key-x", "events": [bad], "options": {"min_id_length": 3}}
        assert dlq_replay(settings, "invalid_time", dry_run=False) == 1
        wait_for_outputs(settings, {settings.topics.dlq: 2})
        raw = read_topic(kafka_bootstrap, settings.topics.raw)
        assert len(raw) == 2 and raw[0].partition == raw[1].partition
        replayed = raw[1]
        assert (replayed.key, replayed.value, replayed.headers) == (b"k-env", payload, [("trace", b"t-1")])
        again_read = [r for r in read_topic(kafka_bootstrap, settings.topics.dlq) if r.offset != first.offset]
        (again_message,) = again_read
        again = orjson.loads(again_message.value or b"")
        assert (again["reason"], again["source"]["index"], again["source"]["offset"]) == (
            "invalid_time", 0, replayed.offset
        )
        assert base64.b64decode(again["payload_b64"]) == payload  # the same unit, byte for byte
        assert again_message.key == b"k-env" and ("trace", b"t-1") in again_message.headers
        # Only the rejected unit came back: the good events were not emitted twice.
        assert len(read_topic(kafka_bootstrap, settings.topics.enriched)) == 2
    finally:
        worker.stop()


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
