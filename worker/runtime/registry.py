"""The experiment-property registry topic (SPEC §6), read in full at start and followed after:
every name admitted by any instance, so each instance enforces one limit per project."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from worker.core.limit import ExperimentRegistry
from worker.runtime.clients import Clients
from worker.runtime.settings import WorkerSettings


class RegistryFollower:
    """Reads the experiment-property registry topic in full, then keeps following it."""

    def __init__(self, settings: WorkerSettings, clients: Clients, registry: ExperimentRegistry) -> None:
        self.registry = registry
        self.consumer = clients.reader("registry")
        topic = settings.topics.registry
        partitions = self.consumer.list_topics(topic, timeout=15).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self._eof: set[int] = set()
        self._partitions = len(partitions)

    def catch_up(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        loaded = 0
        while len(self._eof) < self._partitions and time.monotonic() < deadline:
            loaded += self.poll(0.2)
        return loaded

    def poll(self, timeout_s: float = 0.0) -> int:
        loaded = 0
        for message in self.consumer.consume(num_messages=1000, timeout=timeout_s):
            error = message.error()
            if error is not None:
                partition = message.partition()
                if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                    self._eof.add(partition)
                continue
            key = message.key()
            if key is not None:
                project, _, name = key.decode("utf-8").partition("/")
                self.registry.load(project, name)
                loaded += 1
        return loaded

    def close(self) -> None:
        self.consumer.close()

