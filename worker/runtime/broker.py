"""Reaching Kafka: `run` waits for a broker at start; every other command tries once, briefly.

An unreachable broker is one line, naming the bootstrap servers and the error behind it (the
last problem librdkafka logged, e.g. "Connect to ipv4#127.0.0.1:1 failed: Connection refused"),
and `KafkaUnreachable` (exit status 3), never a traceback nor pages of librdkafka lines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from worker.errors import KafkaFatalError, KafkaUnreachable, WorkerError
from worker.runtime.clock import Clock
from worker.runtime.kafka_errors import kafka_error
from worker.runtime.kafka_log import absorbed, quiet, take_problem
from worker.runtime.settings import WorkerSettings

log = logging.getLogger(__name__)
ATTEMPT_TIMEOUT_S = 5.0  # one metadata request: a reachable broker answers in well under a second
PAUSE_S = 1.0
T = TypeVar("T")
# Errors that mean no broker answered (rather than one that answered no).
UNREACHABLE_CODES = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
                               KafkaError._RESOLVE, KafkaError._MSG_TIMED_OUT, KafkaError.REQUEST_TIMED_OUT})


def problem_of(exc: KafkaException, admin: Any = None) -> str:
    """The error of a failed call, with the librdkafka line that says why (served by `admin.poll`)."""
    if admin is not None:
        admin.poll(0)
    error = kafka_error(exc)
    text = error.str() if error is not None else str(exc)
    problem = take_problem()
    return f"{text} ({problem})" if problem and problem not in text else text


def reach(admin: AdminClient, settings: WorkerSettings, timeout_s: float | None = None) -> None:
    """One metadata request; KafkaUnreachable, in one line, when no broker answers within `timeout_s`."""
    take_problem()
    try:
        admin.list_topics(timeout=ATTEMPT_TIMEOUT_S if timeout_s is None else timeout_s)
    except KafkaException as exc:
        raise KafkaUnreachable(f"Kafka at {settings.bootstrap_servers} unreachable: {problem_of(exc, admin)}") from None


def wait_for_kafka(admin: AdminClient, settings: WorkerSettings, clock: Clock, stopping: threading.Event,
                   tick: Callable[[], None] = lambda: None, then: Callable[[], None] = lambda: None) -> bool:
    """Ask until a broker answers and `then()` (the first calls of a run) is done (True), SIGTERM
    comes (False) or `startup_timeout_s` is over (KafkaUnreachable); one warning per failed attempt,
    `tick` after each (the loop's liveness). A broker that goes away during `then()` (a restart just
    after it answered) is waited for again, not taken for a refusal."""
    deadline = clock.monotonic() + settings.startup_timeout_s
    attempt = 0
    with absorbed():
        while True:
            attempt += 1
            try:
                reach(admin, settings, min(ATTEMPT_TIMEOUT_S, max(deadline - clock.monotonic(), 0.5)))
                translated(settings, then)
                if attempt > 1:
                    log.info("Kafka at %s answered (attempt %d)", settings.bootstrap_servers, attempt)
                return True
            except KafkaUnreachable as exc:
                tick()
                left = deadline - clock.monotonic()
                if left <= 0:
                    raise KafkaUnreachable(f"{exc}; gave up after {settings.startup_timeout_s:g} s "
                                           f"(startup_timeout_s), {attempt} attempts") from None
                log.warning("%s; attempt %d, trying again for %.0f s more", exc, attempt, left)
            if stopping.wait(min(PAUSE_S, max(left, 0.0))):
                return False


def translated(settings: WorkerSettings, call: Callable[[], T]) -> T:
    """`call()`, with a Kafka error turned into one line: KafkaUnreachable (exit status 3) when no
    broker answered, KafkaFatalError (2) when one refused."""
    try:
        return call()
    except WorkerError:
        raise
    except KafkaException as exc:
        error = kafka_error(exc)
        line = f"Kafka at {settings.bootstrap_servers}: {problem_of(exc)}"
        if error is None or error.code() in UNREACHABLE_CODES:
            raise KafkaUnreachable(line) from None
        raise KafkaFatalError(line) from None


def kafka_command(settings: WorkerSettings, call: Callable[[], int]) -> int:
    """A command that talks to Kafka: one short try first, then `call()` with any Kafka error as one line."""
    from worker.runtime.topics import admin_client

    quiet()  # the command's own line names the error librdkafka logged
    reach(admin_client(settings), settings)
    return translated(settings, call)
