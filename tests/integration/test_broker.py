"""The session's broker is a real, transactional Kafka: committed and aborted transactions are told
apart by the isolation level, and compacted topics keep their policy. Also the local broker's own
life cycle: its own data dir and ports, nothing left after stop."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from dev.kafka import answers, start_broker
from dev.verify import read_topic
from tests.support.topics import create_topic

# Short, so a test that dies inside a transaction does not block read_committed readers for long.
TRANSACTION_TIMEOUT_MS = 10_000


def transactional_producer(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
        }
    )
    producer.init_transactions(30)
    return producer


def test_read_committed_sees_only_committed_transactions(
    kafka_bootstrap: str, admin: AdminClient, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("txn")
    create_topic(admin, topic, partitions=2)
    producer = transactional_producer(kafka_bootstrap, unique_name("txn-id"))

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=f"k{i}".encode(), value=f"committed-{i}".encode(), headers=[("batch", b"1")])
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, key=f"k{i}".encode(), value=f"aborted-{i}".encode(), headers=[("batch", b"2")])
    producer.flush(30)  # the aborted records really reach the log before the abort marker
    producer.abort_transaction(30)

    committed = read_topic(kafka_bootstrap, topic, isolation="read_committed")
    everything = read_topic(kafka_bootstrap, topic, isolation="read_uncommitted")

    assert sorted(record.value for record in committed) == [f"committed-{i}".encode() for i in range(5)]
    assert {record.partition for record in committed} <= {0, 1}
    assert all(record.headers == [("batch", b"1")] for record in committed)
    assert sorted(record.value for record in everything) == sorted(
        [f"committed-{i}".encode() for i in range(5)] + [f"aborted-{i}".encode() for i in range(3)]
    )


def test_compacted_topic_keeps_its_policy_and_records(
    kafka_bootstrap: str, admin: AdminClient, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("compact")
    create_topic(admin, topic, config={"cleanup.policy": "compact"})

    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["cleanup.policy"].value == "compact"

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    written = [(b"user-1", b"v1"), (b"user-2", b"v1"), (b"user-1", b"v2"), (b"user-2", None)]
    for key, value in written:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    records = read_topic(kafka_bootstrap, topic)
    assert [(record.key, record.value) for record in records] == written
    assert [record.offset for record in records] == [0, 1, 2, 3]


def test_local_broker_starts_fresh_and_leaves_nothing_behind(kafka_bootstrap: str) -> None:
    if shutil.which("java") is None:
        pytest.skip("the local broker needs java")
    with start_broker() as broker:
        assert broker.bootstrap != kafka_bootstrap  # its own ports, even beside the session's broker
        assert broker.data_dir.is_absolute()
        assert broker.is_alive()
        assert answers(broker.bootstrap, timeout_s=5.0)
    assert not broker.is_alive()
    assert not broker.data_dir.exists()
    assert not answers(broker.bootstrap, timeout_s=1.0)
