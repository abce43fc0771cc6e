"""Kafka errors, classified once (confluent-kafka's transactional API): retriable, abortable, fatal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")


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


class CallHung(Exception):
    """A librdkafka call did not return within its timeout."""


def bounded(timeout_s: float, what: str, call: Callable[..., T], *args: Any) -> T:
    """`call(*args)` in a helper thread; CallHung when it has not returned after `timeout_s`.

    librdkafka's send_offsets_to_transaction can block past its own timeout when the group
    coordinator went away mid-transaction (librdkafka#5456, #5511: seen here after a broker
    restart). The caller then abandons the producer (the call's thread stays blocked on it) and
    builds a new one, whose init_transactions fences the old one.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call(*args))
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=run, name=what, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise CallHung(f"{what} did not return within {timeout_s:.0f} s")
    if failure:
        raise failure[0]
    return outcome[0]
