"""Fixtures for tests against a real Kafka broker, shared by the whole session.

The broker, first available wins:
1. `KAFKA_BOOTSTRAP_SERVERS`: bring your own cluster (as confluent-kafka-python's own tests do);
2. the project's local broker (`dev.kafka.start_broker`), which needs a JDK 17+
   and, the first time, Maven and Maven Central;
3. a testcontainers `KafkaContainer` when a Docker engine answers;
4. none: the tests skip, or fail when `REQUIRE_KAFKA=1` (CI must not pass by skipping).

Every test in this directory is marked `integration`; topic and group names are unique per call.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from dev.errors import LocalBrokerError
from dev.kafka import start_broker

INTEGRATION_DIR = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A conftest hook sees the whole session's items: mark only the ones under this directory.
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def container_bootstrap() -> Iterator[str]:
    from testcontainers.community.kafka import KafkaContainer

    container = KafkaContainer().with_kraft()
    # A single broker: transactions need replication 1 for their state topic, as in the local broker.
    for name, value in {
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS": "1",
        "KAFKA_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS": "1000",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }.items():
        container.with_env(name, value)
    with container:
        yield container.get_bootstrap_server()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a real broker for the whole session (see the module docstring)."""
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if from_env:
        yield from_env
        return
    try:
        broker = start_broker()
    except LocalBrokerError as exc:
        local_problem = str(exc).splitlines()[0]
    else:
        with broker:
            yield broker.bootstrap
        return
    if docker_answers():
        yield from container_bootstrap()
        return
    message = (
        f"no Kafka broker for the integration tests: local broker: {local_problem}; no Docker engine answers. "
        "Fix the local broker, or set KAFKA_BOOTSTRAP_SERVERS=host:port"
    )
    if os.environ.get("REQUIRE_KAFKA") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def unique_name() -> Callable[[str], str]:
    """`unique_name("orders")` -> "orders-3f9c1a2b7e": a topic, group or transactional id no other test uses."""

    def make(prefix: str = "it") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})
