"""librdkafka's log in the worker's stream (runtime/kafka_log.py) and the one-line Kafka errors
(runtime/broker.py): the rate limit, the redaction of secrets, waiting for a broker. No broker."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from tests.support.clock import FakeClock
from tests.support.settings import offline_settings
from worker.errors import ConfigError, KafkaFatalError, KafkaUnreachable
from worker.runtime import broker, kafka_log
from worker.runtime.clients import admin_config, consumer_config, producer_config, reader_config
from worker.runtime.logs import JsonFormatter
from worker.runtime.topics import configure_group


def test_the_rate_limit_lets_one_of_a_kind_through_per_interval_and_counts_the_rest() -> None:
    clock = FakeClock()
    limit = kafka_log.RateLimit(30.0, clock.monotonic)
    assert limit.admit(("FAIL", 40)) == 0
    assert [limit.admit(("FAIL", 40)) for _ in range(5)] == [None] * 5
    assert limit.admit(("REQTMOUT", 40)) == 0  # another kind has its own budget
    clock.now += 29.9
    assert limit.admit(("FAIL", 40)) is None
    clock.now += 0.1
    assert limit.admit(("FAIL", 40)) == 6  # let through, with the count held back since the last one
    assert limit.admit(("FAIL", 40)) is None


def test_an_interval_of_zero_lets_everything_through() -> None:
    limit = kafka_log.RateLimit(0.0, FakeClock().monotonic)
    assert [limit.admit("k") for _ in range(3)] == [0, 0, 0]


@pytest.mark.parametrize("text", [
    "sasl.password=hunter2 and more", "ssl.key.password: hunter2", 'sasl.oauthbearer.client.secret="hunter2"',
    "Configuration property sasl.password=hunter2,", "client_secret=hunter2;", "it says hunter2 in the middle",
])
def test_secrets_are_redacted_by_value_and_by_name(text: str) -> None:
    redacted = kafka_log.redact(text, ["hunter2"])
    assert "hunter2" not in redacted and kafka_log.MASK in redacted


def test_redaction_by_name_alone_hides_a_secret_it_was_not_told() -> None:
    assert "s3cr3t" not in kafka_log.redact("sasl.password=s3cr3t, sasl.username=alice", [])
    assert "alice" in kafka_log.redact("sasl.password=s3cr3t, sasl.username=alice", [])


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Any:
    logger = kafka_log.kafka_logger(offline_settings(kafka_secrets={"sasl.password": "hunter2"}))
    handler = Capture()
    logger.addHandler(handler)
    found = kafka_log.log_filter()
    found.limit = kafka_log.RateLimit(60.0, FakeClock().monotonic)
    yield logger, handler
    logger.removeHandler(handler)
    found.limit = kafka_log.RateLimit(30.0)
    kafka_log.take_problem()


def as_confluent_kafka_logs(logger: logging.Logger, level: int, facility: str, text: str) -> None:
    logger.log(level, "%s [%s] %s", facility, "rdkafka#consumer-1", f"[thrd:127.0.0.1:1/bootstrap]: {text}")


def test_librdkafka_lines_are_one_per_kind_redacted_and_json_when_asked(captured: Any) -> None:
    logger, handler = captured
    for _ in range(50):
        as_confluent_kafka_logs(logger, logging.ERROR, "FAIL", "Connect to ipv4#127.0.0.1:1 failed (hunter2)")
    as_confluent_kafka_logs(logger, logging.WARNING, "CONFWARN", "sasl.password=hunter2 is not used")
    assert len(handler.records) == 2
    first = handler.records[0]
    assert first.getMessage() == "FAIL rdkafka#consumer-1: Connect to ipv4#127.0.0.1:1 failed (**********)"
    assert all("hunter2" not in record.getMessage() for record in handler.records)
    line = orjson.loads(JsonFormatter().format(first))
    assert line["logger"] == "librdkafka" and line["facility"] == "FAIL" and line["level"] == "ERROR"
    assert kafka_log.take_problem() == "sasl.password=********** is not used"
    assert kafka_log.take_problem() is None


def test_while_absorbed_lines_are_kept_for_the_caller_but_not_logged(captured: Any) -> None:
    logger, handler = captured
    with kafka_log.absorbed():
        as_confluent_kafka_logs(logger, logging.ERROR, "FAIL", "Connection refused")
    assert handler.records == []
    assert kafka_log.take_problem() == "Connection refused"


def test_every_client_logs_through_the_one_logger() -> None:
    settings = offline_settings()
    for config in (admin_config(settings), consumer_config(settings), producer_config(settings),
                   reader_config(settings, "restore")):
        assert config["logger"] is logging.getLogger(kafka_log.LOGGER_NAME)


class DeadAdmin:
    """An admin client whose broker never answers."""

    def __init__(self, clock: FakeClock, answer_after: int | None = None) -> None:
        self.clock, self.answer_after, self.calls = clock, answer_after, 0

    def list_topics(self, timeout: float) -> object:
        self.calls += 1
        self.clock.now += timeout
        if self.answer_after is not None and self.calls > self.answer_after:
            return object()
        kafka_log.log_filter().problem = "Connect to ipv4#127.0.0.1:1 failed: Connection refused"
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Broker transport failure"))

    def poll(self, timeout: float) -> int:
        return 0


def test_run_waits_for_a_broker_one_line_per_attempt_then_gives_up_in_one_line(caplog: Any) -> None:
    clock = FakeClock()
    settings = offline_settings(startup_timeout_s=20)
    ticks: list[float] = []
    with caplog.at_level(logging.WARNING, logger=broker.__name__), pytest.raises(KafkaUnreachable) as error:
        broker.wait_for_kafka(DeadAdmin(clock), settings, clock, threading.Event(), lambda: ticks.append(clock.now))
    lines = [record.getMessage() for record in caplog.records if record.name == broker.__name__]
    assert len(lines) == len(ticks) - 1 == 3  # every attempt but the last is a line; the last is the error
    assert all("127.0.0.1:1" in line and "Connection refused" in line for line in lines)
    message = str(error.value)
    assert "\n" not in message and "127.0.0.1:1" in message and "Connection refused" in message
    assert "startup_timeout_s" in message and error.value.exit_status == 3


def test_run_goes_on_when_the_broker_answers_and_stops_waiting_on_sigterm() -> None:
    clock = FakeClock()
    assert broker.wait_for_kafka(DeadAdmin(clock, answer_after=2), offline_settings(), clock, threading.Event())
    stopping = threading.Event()
    stopping.set()
    assert not broker.wait_for_kafka(DeadAdmin(clock), offline_settings(), clock, stopping)


def test_a_broker_that_goes_away_during_the_first_calls_is_waited_for_again_and_a_refusal_is_not() -> None:
    """Seen in the chaos test: the broker answered, then restarted while the group's settings were
    being set; that is one more attempt, not a refused config (exit 2)."""
    clock, calls = FakeClock(), []

    def first_calls() -> None:
        calls.append(clock.now)
        if len(calls) == 1:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))

    assert broker.wait_for_kafka(DeadAdmin(clock, answer_after=0), offline_settings(), clock, threading.Event(),
                                 then=first_calls)
    assert len(calls) == 2

    def refused() -> None:
        raise KafkaException(KafkaError(KafkaError.INVALID_CONFIG, "Invalid config"))

    with pytest.raises(KafkaFatalError):
        broker.wait_for_kafka(DeadAdmin(clock, answer_after=0), offline_settings(), clock, threading.Event(),
                              then=refused)


class GroupAdmin:
    """An admin client whose group-config change fails with `code`."""

    def __init__(self, code: int) -> None:
        self.code = code

    def incremental_alter_configs(self, resources: list[object]) -> dict[object, Future[None]]:
        future: Future[None] = Future()
        future.set_exception(KafkaException(KafkaError(self.code, "it failed")))
        return {resources[0]: future}


def test_a_group_config_the_broker_refuses_is_a_config_error_but_no_answer_is_not() -> None:
    settings = offline_settings(session_timeout_ms=6000)
    with pytest.raises(ConfigError, match="session_timeout_ms"):
        configure_group(GroupAdmin(KafkaError.INVALID_CONFIG), settings)  # type: ignore[arg-type]
    with pytest.raises(KafkaException):
        configure_group(GroupAdmin(KafkaError._TRANSPORT), settings)  # type: ignore[arg-type]


def test_a_kafka_error_in_a_command_is_one_line_naming_the_servers() -> None:
    settings = offline_settings()

    def fails(code: int) -> Any:
        def call() -> None:
            raise KafkaException(KafkaError(code, "it went wrong"))
        return call

    with pytest.raises(KafkaUnreachable, match=r"^Kafka at 127\.0\.0\.1:1: it went wrong"):
        broker.translated(settings, fails(KafkaError._TRANSPORT))
    with pytest.raises(KafkaFatalError, match=r"127\.0\.0\.1:1"):
        broker.translated(settings, fails(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert broker.translated(settings, lambda: 7) == 7


@pytest.mark.parametrize("command", [["lag"], ["topics", "check"], ["dlq", "stats"], ["state", "get", "p/u:user-1"],
                                     ["experiments", "report"]])
def test_a_command_against_no_broker_prints_one_line_and_exits_3(command: list[str], capsys: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.cli import main

    monkeypatch.setattr(broker, "ATTEMPT_TIMEOUT_S", 1.0)
    logger = logging.getLogger(kafka_log.LOGGER_NAME)
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    assert main([*command, "--bootstrap-servers", "127.0.0.1:1"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("experiment-worker: Kafka at 127.0.0.1:1 unreachable: ") and "Connection refused" in err
