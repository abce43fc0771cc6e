"""Where every record the worker writes goes: one producer and, exactly-once, its transactions.

`send` opens the batch's transaction on its first record and retries a full local queue;
`commit` sends the input offsets and commits (retriable errors retried, an abortable one
aborted, a fatal or hung one answered with a new producer, whose init_transactions fences the
old); `abort` drops what the batch wrote. At-least-once, `commit` flushes and checks deliveries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from worker.errors import KafkaCallsHung
from worker.runtime.clients import TRANSACTION_CALL_TIMEOUT_S, Clients
from worker.runtime.kafka_errors import CallHung, ErrorClass, Watchdog, classify

log = logging.getLogger(__name__)
HUNG_MARGIN_S = 10.0  # past its own timeout, a transactional call is taken as hung
COMMIT_ATTEMPTS = 5


class ProduceFailed(Exception):
    """A produce (or begin_transaction) refused by the producer: the batch is redone with a new one."""


class Sink:
    __slots__ = ("_delivery_error", "clients", "delivered", "exactly_once", "in_transaction", "produced", "producer",
                 "watchdog")

    def __init__(self, clients: Clients, exactly_once: bool, max_hung_calls: int = 3,
                 on_abandoned: Callable[[str], None] = lambda what: None) -> None:
        """`max_hung_calls`, `on_abandoned`: the transactional calls' watchdog (runtime/kafka_errors.py)."""
        self.clients, self.exactly_once = clients, exactly_once
        self.watchdog = Watchdog(max_hung_calls, on_abandoned)
        self.producer: Producer = clients.producer()
        self.in_transaction = False
        self.produced: dict[str, int] = {}  # records written this batch, per topic
        # Per changelog partition, the offset after the last record of this batch the broker took.
        self.delivered: dict[tuple[str, int], int] = {}
        self._delivery_error: KafkaError | None = None

    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int = -1,
             headers: list[tuple[str, str | bytes | None]] | None = None, track: bool = False) -> None:
        """`track`: note the record's offset (changelogs, for the store's checkpoint)."""
        if not self.in_transaction:
            self.begin()
        # Exactly-once needs no report of an untracked record: a transaction's commit already fails
        # on any failed delivery.
        callback = self.on_tracked if track else None if self.exactly_once else self.on_delivery
        # Positional arguments only (topic, value, key, partition, callback, on_delivery, timestamp,
        # headers; timestamp 0 is "now"): any keyword makes the binding look up each optional
        # parameter's name in the keywords, a new string each: 1.12 against 0.76 µs a call.
        while True:
            try:
                if callback is None and headers is None:
                    self.producer.produce(topic, value, key, partition)
                else:
                    self.producer.produce(topic, value, key, partition, callback, None, 0, headers)
                break
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as exc:
                raise ProduceFailed(f"produce to {topic} failed: {exc}") from exc
        self.produced[topic] = self.produced.get(topic, 0) + 1

    def begin(self) -> None:
        if self.exactly_once:
            try:
                self.producer.begin_transaction()
            except KafkaException as exc:
                raise ProduceFailed(f"begin_transaction failed: {exc}") from exc
        self.in_transaction = True

    def commit(self, offsets: list[TopicPartition], group: Any, commit_offsets: Any) -> bool:
        """Make the batch durable with its input `offsets`; False when it was aborted instead (the
        caller then rolls back and rewinds). `commit_offsets` is the consumer's commit, for
        at-least-once; exactly-once sends the offsets within the transaction for `group`."""
        committed = self.commit_transaction(offsets, group) if self.exactly_once else self.flush(
            offsets, commit_offsets)
        if committed:
            self.in_transaction = False
            self.producer.poll(0)  # delivery reports not served yet: the checkpoint wants their offsets
        return committed

    def commit_transaction(self, offsets: list[TopicPartition], group: Any) -> bool:
        hung_after = TRANSACTION_CALL_TIMEOUT_S + HUNG_MARGIN_S
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                if not self.in_transaction:
                    self.begin()
                self.watchdog.call(hung_after, "send_offsets_to_transaction",
                                   self.producer.send_offsets_to_transaction, offsets, group,
                                   TRANSACTION_CALL_TIMEOUT_S)
                self.watchdog.call(hung_after, "commit_transaction", self.producer.commit_transaction,
                                   TRANSACTION_CALL_TIMEOUT_S)
                return True
            except KafkaCallsHung:
                self.in_transaction = False  # the hung producer's transaction: the broker's (fenced or timed out)
                raise
            except (CallHung, ProduceFailed) as exc:
                log.error("%s: abandoning this producer for a new one (librdkafka#5456)", exc)
                self.abort(recreate=True)
                return False
            except KafkaException as exc:
                kind = classify(exc)
                log.warning("commit failed (%s, attempt %d): %s", kind.value, attempt + 1, exc)
                if kind is ErrorClass.RETRIABLE:
                    continue
                self.abort(recreate=kind is ErrorClass.FATAL)
                return False
        self.abort(recreate=True)
        return False

    def flush(self, offsets: list[TopicPartition], commit_offsets: Any) -> bool:
        remaining = self.producer.flush(TRANSACTION_CALL_TIMEOUT_S)
        if remaining or self._delivery_error is not None:
            error, self._delivery_error = self._delivery_error, None
            log.warning("at-least-once: %d undelivered, error %s; redoing the batch", remaining, error)
            self.abort(recreate=remaining > 0)
            return False
        try:
            commit_offsets(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed: %s; the batch will be redone after a rebalance", exc)
        return True

    def abort(self, recreate: bool) -> None:
        """Drop what the batch wrote (exactly-once); `recreate` replaces the producer."""
        if self.exactly_once and self.in_transaction and not recreate:
            try:
                self.producer.abort_transaction(TRANSACTION_CALL_TIMEOUT_S)
            except KafkaException as exc:
                log.warning("abort failed (%s); recreating the producer", exc)
                recreate = True
        if recreate:
            self.producer = self.clients.producer()
        self.in_transaction = False
        self.produced = {}
        self.delivered = {}

    def take_delivered(self) -> dict[tuple[str, int], int]:
        delivered, self.delivered = self.delivered, {}
        return delivered

    def take_produced(self) -> dict[str, int]:
        produced, self.produced = self.produced, {}
        return produced

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None and self._delivery_error is None:
            self._delivery_error = error

    def on_tracked(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.on_delivery(error, message)
            return
        key = (message.topic() or "", message.partition() or 0)
        after = (message.offset() or 0) + 1
        if after > self.delivered.get(key, 0):
            self.delivered[key] = after

    def poll(self) -> None:
        self.producer.poll(0)

    def close(self, timeout_s: float) -> None:
        self.producer.flush(timeout_s)
