"""Runtime pieces that need no broker: settings, the DLQ limit, dedupe pruning, error classes."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError, KafkaException

from tests.support.workers import idle_worker
from worker.core.billing import EXACT_UP_TO, PRECISION, REGISTERS, MonthlyTrackedUsers, utc_month
from worker.core.dlq_limit import DlqLimit
from worker.errors import ConfigError
from worker.runtime.clients import TRANSACTION_RETRY_BACKOFF_MS, producer_config
from worker.runtime.kafka_errors import ErrorClass, classify
from worker.runtime.runner import PRUNE_MARGIN_MS
from worker.runtime.settings import load_settings
from worker.runtime.topics import group_configs

DAY_MS = 86_400_000


def test_bad_setting_is_one_line_naming_it() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(commit_interval_ms="soon")
    message = str(error.value)
    assert "\n" not in message
    assert "commit_interval_ms" in message and "EXPERIMENT_WORKER_COMMIT_INTERVAL_MS" in message


def test_bad_nested_setting_names_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPERIMENT_WORKER_GUARANTEE", "maybe-once")
    with pytest.raises(ConfigError, match="guarantee"):
        load_settings()


def test_secrets_are_masked_and_refused_in_plain_kafka_settings() -> None:
    settings = load_settings(kafka_secrets={"sasl.password": "hunter2"}, kafka={"linger.ms": "5"})
    assert "hunter2" not in repr(settings.describe())
    assert settings.kafka_config()["sasl.password"] == "hunter2"
    with pytest.raises(ConfigError, match="kafka_secrets"):
        load_settings(kafka={"sasl.password": "hunter2"})


def test_the_producer_compresses_with_lz4_unless_told_otherwise_and_a_bad_codec_names_the_setting() -> None:
    assert producer_config(load_settings())["compression.type"] == "lz4"
    assert producer_config(load_settings(compression_type="zstd"))["compression.type"] == "zstd"
    assert producer_config(load_settings(kafka={"compression.type": "none"}))["compression.type"] == "none"
    with pytest.raises(ConfigError, match="compression_type"):
        load_settings(compression_type="brotli")


def test_a_transactional_producer_retries_a_busy_coordinator_soon_unless_told_otherwise() -> None:
    assert producer_config(load_settings())["retry.backoff.ms"] == TRANSACTION_RETRY_BACKOFF_MS
    assert producer_config(load_settings(kafka={"retry.backoff.ms": "50"}))["retry.backoff.ms"] == "50"
    assert "retry.backoff.ms" not in producer_config(load_settings(guarantee="at-least-once"))


def test_group_side_kafka_settings_name_the_setting_to_use() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(kafka={"session.timeout.ms": "6000"})
    assert "session_timeout_ms" in str(error.value) and "\n" not in str(error.value)


def test_session_timeout_becomes_group_configs_under_kip_848_only() -> None:
    assert group_configs(load_settings()) == {}
    assert group_configs(load_settings(session_timeout_ms=6000)) == {
        "consumer.session.timeout.ms": 6000, "consumer.heartbeat.interval.ms": 2000}
    assert group_configs(load_settings(session_timeout_ms=6000, heartbeat_interval_ms=500)) == {
        "consumer.session.timeout.ms": 6000, "consumer.heartbeat.interval.ms": 500}
    assert group_configs(load_settings(session_timeout_ms=6000, group_protocol="classic")) == {}


def test_missing_projects_file_is_named() -> None:
    with pytest.raises(ConfigError, match="projects_file"):
        load_settings(projects_file="/nonexistent/projects.json")


def test_dlq_limit_ratio_needs_a_full_window() -> None:
    limit = DlqLimit(max_ratio=0.5, window=10)
    limit.record(valid=0, invalid=9)
    assert limit.exceeded() is None  # 9 units: the window is not full yet
    limit.record(valid=0, invalid=1)
    assert limit.exceeded() is not None and "100%" in str(limit.exceeded())


def test_dlq_limit_window_slides() -> None:
    limit = DlqLimit(max_ratio=0.5, window=4)
    limit.record(valid=0, invalid=4)
    limit.record(valid=4, invalid=0)
    assert limit.ratio == 0.0 and limit.exceeded() is None


def test_dlq_limit_off_at_ratio_one() -> None:
    limit = DlqLimit(max_ratio=1.0, window=2)
    limit.record(valid=0, invalid=10)
    assert limit.exceeded() is None


def test_dlq_limit_consecutive_run() -> None:
    limit = DlqLimit(max_ratio=1.0, window=100, max_consecutive=3)
    limit.record(valid=0, invalid=3)
    assert limit.exceeded() is None
    limit.record(valid=1, invalid=0)
    limit.record(valid=0, invalid=3)
    assert limit.exceeded() is None
    limit.record(valid=0, invalid=1)
    assert "4 consecutive" in str(limit.exceeded())


def test_dedupe_entries_past_the_window_are_pruned() -> None:
    worker = idle_worker()
    stores = worker.partitions.factory.open(0)
    now = 100 * DAY_MS
    stores.put_dedupe("u/old", now - 7 * DAY_MS - PRUNE_MARGIN_MS - 1)
    stores.put_dedupe("u/edge", now - 7 * DAY_MS - PRUNE_MARGIN_MS)
    stores.put_dedupe("u/new", now - DAY_MS)
    stores.commit(None, 3, 1)
    worker.partitions.stores[0] = stores
    assert worker.partitions.prune(now - 7 * DAY_MS - PRUNE_MARGIN_MS) == 1
    assert stores.first_seen("u/old") is None
    assert stores.first_seen("u/edge") is not None and stores.first_seen("u/new") is not None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KafkaError(KafkaError._TIMED_OUT, "t", retriable=True), ErrorClass.RETRIABLE),
        (KafkaError(KafkaError._STATE, "s", txn_requires_abort=True), ErrorClass.ABORTABLE),
        (KafkaError(KafkaError._FENCED, "f", fatal=True), ErrorClass.FATAL),
        (KafkaError(KafkaError._FAIL, "other"), ErrorClass.FATAL),
    ],
)
def test_kafka_errors_are_classified_once(error: KafkaError, expected: ErrorClass) -> None:
    assert classify(KafkaException(error)) is expected


def test_monthly_tracked_users_count_each_user_once_per_utc_month() -> None:
    tracked = MonthlyTrackedUsers()
    november, december = 1_763_978_400_000, 1_764_547_200_000  # 2025-11-24, 2025-12-01 UTC
    assert tracked.track("p", "p/u:a", november) and tracked.count("p") == 1
    assert not tracked.track("p", "p/u:a", november + 1)
    assert tracked.track("p", "p/u:b", november + 2) and tracked.count("p") == 2
    assert tracked.track("p", "p/u:a", december) and tracked.count("p") == 1  # a new month starts from zero
    assert not tracked.track("p", "p/u:c", november) and tracked.count("p") == 1  # late: last month's event
    assert tracked.track("q", "q/u:a", december) and tracked.count("q") == 1  # per project
    assert tracked.count("r") == 0


@pytest.mark.parametrize("users", [EXACT_UP_TO, EXACT_UP_TO + 1, 3_000, 40_000, 200_000])
def test_monthly_tracked_users_are_exact_while_few_and_estimated_within_their_error_in_bounded_memory(
        users: int) -> None:
    # Python's salted string hash, as in the worker: each run draws another sketch; 4% is five
    # standard errors of a 2^14-register sketch (0.8%), so a failure means a wrong estimator.
    tracked = MonthlyTrackedUsers()
    for user in range(users):
        tracked.track("p", f"p/u:{user}", 1_763_978_400_000)
    for user in range(0, users, 7):  # seen again: no change
        assert not tracked.track("p", f"p/u:{user}", 1_763_978_400_001)
    project = tracked.users["p"]
    if users <= EXACT_UP_TO:
        assert tracked.count("p") == users and len(project.exact) == users and not project.registers
    else:
        assert abs(tracked.count("p") / users - 1) < 0.04, tracked.count("p")
        assert not project.exact and len(project.registers) == REGISTERS  # 16 KiB, whatever the users


def test_the_sketch_counts_from_its_registers_only() -> None:
    # A fixed hash: user n goes to register n % REGISTERS with a rank of 1 (the first bit after
    # the index set). Every register then holds 1, and Ertl's estimator gives exactly
    # m / ln 2: z = m·τ(1) = 0, halved down to k = 1 where it takes C[1] = m, so z = m/2, plus
    # m·σ(0) = 0; α∞·m²/z = 2·m·α∞. A later user offering no higher rank changes nothing.
    rank_one = 1 << (63 - PRECISION)

    def fixed_hash(key: str) -> int:  # signed 64-bit, as Python's hash is
        unsigned = (int(key) % REGISTERS) << (64 - PRECISION) | rank_one
        return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned

    tracked = MonthlyTrackedUsers(hash_key=fixed_hash)
    for user in range(REGISTERS):
        tracked.track("p", str(user), 1_763_978_400_000)
    project = tracked.users["p"]
    assert set(project.registers) == {1} and project.histogram[1] == REGISTERS
    full = tracked.count("p")
    assert not tracked.track("p", str(REGISTERS + 5), 1_763_978_400_000) and tracked.count("p") == full
    assert full == round(REGISTERS / math.log(2))


@pytest.mark.parametrize("ms", [0, 1, 951_782_400_000, 951_868_799_999, 1_709_164_800_000, 4_102_444_800_000,
                                1_764_547_199_999, 1_764_547_200_000, 253_402_300_799_999])
def test_utc_month_agrees_with_the_calendar(ms: int) -> None:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    assert utc_month(ms) == moment.year * 12 + moment.month - 1
