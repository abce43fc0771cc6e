"""Kafka errors, classified once (confluent-kafka's transactional API): retriable, abortable, fatal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from worker.errors import KafkaCallsHung

T = TypeVar("T")


class ErrorClass(Enum):
    RETRIABLE = "retriable"  # try the same call again
    ABORTABLE = "abortable"  # abort the transaction, rewind, redo the batch
    FATAL = "fatal"  # the producer is unusable (fenced, fatal): recreate it, then redo the batch


def kafka_error(exc: KafkaException) -> KafkaError | None:
    """The KafkaError a KafkaException carries, if it carries one."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


def classify(exc: KafkaException) -> ErrorClass:
    error = kafka_error(exc)
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


class Watchdog:
    """Runs the librdkafka calls that can hang, each in a helper thread (`call`), and keeps the
    ones it gave up on in view.

    librdkafka's send_offsets_to_transaction can block past its own timeout when the group
    coordinator went away mid-transaction (librdkafka#5456, #5511: seen here after a broker
    restart). The caller then abandons the producer and builds a new one, whose init_transactions
    fences the old; the abandoned call's thread stays blocked, holding the old producer (its
    threads, sockets and buffers) until the call returns, if it ever does. So at most `limit` may
    be blocked at once: one more and `call` raises KafkaCallsHung, for a restart (a fresh process
    holds none). `on_abandoned(what)` counts each (a metric).
    """

    def __init__(self, limit: int = 3, on_abandoned: Callable[[str], None] = lambda what: None) -> None:
        self.limit, self.on_abandoned = limit, on_abandoned
        self.abandoned: list[threading.Thread] = []

    def blocked(self) -> int:
        """Abandoned calls still blocked (a call that returned at last has let its client go)."""
        self.abandoned = [thread for thread in self.abandoned if thread.is_alive()]
        return len(self.abandoned)

    def call(self, timeout_s: float, what: str, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)`, or CallHung when it has not returned after `timeout_s`."""
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
            self.abandoned.append(thread)
            self.on_abandoned(what)
            blocked = self.blocked()
            if blocked > self.limit:
                raise KafkaCallsHung(f"{what} did not return within {timeout_s:.0f} s, and {blocked} abandoned "
                                     f"librdkafka calls are blocked (max_hung_calls {self.limit}): exiting for a "
                                     "restart")
            raise CallHung(f"{what} did not return within {timeout_s:.0f} s")
        if failure:
            raise failure[0]
        return outcome[0]

