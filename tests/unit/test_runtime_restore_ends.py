"""A restore's ListOffsets (worker.runtime.restore.ends) is bounded: an answer that never comes is a
retriable KafkaException after its timeout, so restore_timeout_s keeps its word. No broker."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from worker.runtime.restore import ends

TP = TopicPartition("experiment-worker.user-state", 3)


class Offset:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class FakeAdmin:
    """list_offsets as confluent-kafka's: a future per partition; `answers` (one per call) or none ever."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []

    def list_offsets(self, specs: dict[TopicPartition, Any], **options: Any) -> dict[TopicPartition, Future[Offset]]:
        self.calls.append(options)
        future: Future[Offset] = Future()
        if self.answers is not None:
            future.set_result(Offset(self.answers[len(self.calls) - 1]))
        return {tp: future for tp in specs}


def test_ends_asks_for_the_low_stable_and_high_offsets_each_with_a_request_timeout() -> None:
    admin = FakeAdmin([4, 90, 100])
    assert ends(admin, TP, timeout_s=2.0) == (4, 90, 100)  # type: ignore[arg-type]
    assert [call["request_timeout"] for call in admin.calls] == [2.0, 2.0, 2.0]


def test_an_answer_that_never_comes_is_a_retriable_timeout_not_a_thread_blocked_for_good() -> None:
    failures: list[BaseException] = []

    def ask() -> None:
        try:
            ends(FakeAdmin(), TP, timeout_s=0.05)  # type: ignore[arg-type]
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(10.0)
    assert not thread.is_alive(), "ends() still waits for an answer that never comes"
    assert len(failures) == 1 and isinstance(failures[0], KafkaException)
    error = failures[0].args[0]
    assert error.code() == KafkaError._TIMED_OUT and not error.fatal()
    assert "user-state[3]" in error.str()
