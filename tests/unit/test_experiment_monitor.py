"""Experiment health in the running worker (worker/runtime/experiment_monitor.py), without a
broker: the series each configured flag gets, counters that grow only at commit, gauges that
follow commits and partitions coming and going, and the sampled log line that never names a
user. How the runner's pieces call it: tests/unit/test_runtime_runner.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.support.clock import FakeClock
from worker.core.flags import parse_flags
from worker.core.pipeline import Outcome
from worker.core.records import Source, UserEvent
from worker.runtime.experiment_monitor import LOG_EVERY_S, NO_EVIDENCE_P_VALUE, ExperimentMonitor
from worker.runtime.metrics import Metrics

FLAGS = parse_flags({"default": {
    "checkout": {"allocation": {"control": 50, "treatment": 50}, "exposure_event": "Checkout Viewed"},
    "pricing": {"allocation": {"a": 1, "b": 1, "c": 2}},
}})
CHECKOUT = {"project": "default", "flag": "checkout"}


def monitor(flags: Any = FLAGS) -> tuple[ExperimentMonitor, CollectorRegistry, FakeClock]:
    registry, clock = CollectorRegistry(), FakeClock()
    return ExperimentMonitor(flags, Metrics(registry), clock), registry, clock


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(f"experiment_worker_{name}", {**CHECKOUT, **labels})


def users(n: int, variant: str, prefix: str = "u") -> list[tuple[str, dict[str, Any]]]:
    return [(f"default/u:{prefix}{i}", {"[Experiment] checkout": variant}) for i in range(n)]


def custom_exposure(user_properties: dict[str, Any], delta: dict[str, Any] | None = None) -> tuple[UserEvent, Outcome]:
    """A processed custom exposure: the event as split, and its outcome (the emitted event, a delta)."""
    event = {"event_type": "Checkout Viewed", "project_id": "default", "user_id": "secret-user-42",
             "user_properties": user_properties, "ingested_at": 1}
    return UserEvent("default/u:secret-user-42", event, Source("t", 0, 0, None)), Outcome(event, delta)


def test_every_configured_flag_has_its_series_from_the_start() -> None:
    _, registry, _ = monitor()
    assert value(registry, "experiment_allocation", variant="control") == 0.5
    assert registry.get_sample_value("experiment_worker_experiment_allocation",
                                     {"project": "default", "flag": "pricing", "variant": "c"}) == 0.5
    assert value(registry, "srm_critical_chi_square") == pytest.approx(10.828, abs=1e-3)
    assert registry.get_sample_value("experiment_worker_srm_critical_chi_square",
                                     {"project": "default", "flag": "pricing"}) == pytest.approx(13.816, abs=1e-3)
    for counter in ("variant_switches_total", "custom_exposures_total", "exposure_before_property_total"):
        assert value(registry, counter) == 0.0
    assert value(registry, "experiment_users", variant="treatment") == 0.0
    assert value(registry, "srm_p_value") is None  # nobody to test yet


def test_without_flags_nothing_is_created_and_hooks_do_nothing() -> None:
    health, registry, _ = monitor(parse_flags({}))
    health.install(0, users(5, "control"))
    health.observe(0, *custom_exposure({}))
    health.commit()
    assert health.partitions == {}
    names = {sample.name for family in registry.collect() for sample in family.samples}
    assert not any("experiment_users" in name or "srm" in name for name in names)


def test_partitions_sum_and_a_dropped_partition_leaves_the_sums() -> None:
    health, registry, _ = monitor()
    health.install(0, users(350, "control") + users(150, "treatment"))
    health.install(1, users(350, "control", "x") + users(150, "treatment", "x") + users(2, "off", "y"))
    assert value(registry, "experiment_users", variant="control") == 700
    assert value(registry, "experiment_users", variant="_other") == 2
    assert value(registry, "srm_p_value") == pytest.approx(1.5e-36, rel=0.05)  # 700/300 on 50/50
    health.drop(1)
    assert value(registry, "experiment_users", variant="control") == 350
    health.drop(0)
    assert value(registry, "experiment_users", variant="control") == 0
    assert value(registry, "srm_p_value") is None  # gone with the users, not a stale value


def test_counters_and_gauges_move_at_commit_only() -> None:
    health, registry, _ = monitor()
    health.install(0, [("default/u:secret-user-42", {"[Experiment] checkout": "control"})])
    delta = {"changes": [{"property": "[Experiment] checkout", "old": "control", "new": "treatment"}]}
    health.observe(0, *custom_exposure({}, delta))
    health.rollback()  # an aborted batch counts nothing
    health.commit()
    assert value(registry, "custom_exposures_total") == 0
    health.observe(0, *custom_exposure({}, delta))
    health.observe(7, *custom_exposure({}, delta))  # a partition this instance does not own
    assert value(registry, "experiment_users", variant="treatment") == 0  # not committed yet
    health.commit()
    assert (value(registry, "custom_exposures_total"), value(registry, "exposure_before_property_total"),
            value(registry, "variant_switches_total")) == (1, 1, 1)
    assert value(registry, "experiment_users", variant="treatment") == 1  # the commit moved a user
    assert value(registry, "experiment_users", variant="control") == 0
    assert value(registry, "srm_p_value") == pytest.approx(0.3173, abs=1e-4)  # 0/1 on 50/50


def test_under_processes_a_process_without_users_shows_no_evidence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merged across processes a series cannot be removed; the merge keeps the lowest p-value,
    so a process that has nobody to test shows p = 1 rather than its last one."""
    health, registry, _ = monitor()
    health.install(0, users(30, "control"))
    assert value(registry, "srm_p_value") < 0.001
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent")  # read per call; this registry stays local
    health.drop(0)
    assert value(registry, "srm_p_value") == NO_EVIDENCE_P_VALUE


def test_early_exposures_are_logged_sampled_without_the_user(caplog: pytest.LogCaptureFixture) -> None:
    health, _, clock = monitor()
    health.install(0, [])
    user_event, outcome = custom_exposure({"plan": "pro"})
    with caplog.at_level(logging.INFO, logger="worker.runtime.experiment_monitor"):
        for _ in range(3):
            health.observe(0, user_event, outcome)
            health.commit()
            clock.now += 1
        clock.now += LOG_EVERY_S
        health.observe(0, user_event, outcome)
        health.commit()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert "1 custom exposure(s) 'Checkout Viewed' of flag checkout in project default" in lines[0]
    assert lines[1].startswith("3 custom exposure(s)")  # the two held back, and the new one
    assert not any("secret-user-42" in line for line in lines)
