"""Kafka errors, classified once (confluent-kafka's transactional API): retriable, abortable, fatal."""

from __future__ import annotations

from enum import Enum

from confluent_kafka import KafkaError, KafkaException


class ErrorClass(Enum):
    RETRIABLE = "retriable"  # try the same call again
    ABORTABLE = "abortable"  # abort the transaction, rewind, redo the batch
    FATAL = "fatal"  # the producer is unusable (fenced, fatal): recreate it, then redo the batch


def classify(exc: KafkaException) -> ErrorClass:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if error is None:
        return ErrorClass.FATAL
    if error.fatal():
        return ErrorClass.FATAL
    if error.txn_requires_abort():
        return ErrorClass.ABORTABLE
    if error.retriable():
        return ErrorClass.RETRIABLE
    return ErrorClass.FATAL
