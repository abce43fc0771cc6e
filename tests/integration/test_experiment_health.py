"""Experiment health end to end (issue 17): two worker instances with a flags file, scraped by a
real Prometheus that loads deploy/prometheus/alerts.yml. A flag whose users split 70/30 on a
50/50 design raises the SRM alert's expression, over the sum of both instances; a balanced flag
does not. Custom exposures sent before the variant raise the early-exposure alert's expression
on the first flag only. `experiments report` reads the same users from the user-state topic.

The alerts' `for:` durations cannot elapse in a test: their expressions are evaluated through
the query API, and the rules API shows the SRM alert pending for the skewed flag alone
(alerts.test.yml checks the durations with promtool).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dev.children import free_ports
from dev.loadgen import RawRecord
from dev.prometheus import LocalPrometheus
from dev.verify import produce_raw
from tests.integration.test_prometheus import ALERTS, require_prometheus
from tests.support.settings import worker_settings
from tests.support.topics import create_all_topics
from tests.support.workers import WorkerThread
from worker.cli import main
from worker.runtime.health import HealthState, serve

USERS = 1200
FLAGS = {"default": {
    "skewed": {"allocation": {"control": 50, "treatment": 50}, "exposure_event": "Checkout Viewed"},
    "balanced": {"allocation": {"control": 50, "treatment": 50}, "exposure_event": "Search Viewed"},
}}


def alert_expression(name: str) -> str:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    return str(next(rule["expr"] for rule in rules if rule.get("alert") == name))


def user_message(i: int) -> RawRecord:
    """One user's events: 70% of the skewed flag's users in control, exactly half of the balanced
    one's; a fifth of the users view checkout before their exposure (too early), all after it."""
    user = f"user-{i:05d}"

    def exposure(flag: str, variant: str) -> dict[str, Any]:
        return {"event_type": "$exposure", "event_properties": {"flag_key": flag, "variant": variant}}

    events = [{"event_type": "Checkout Viewed"}] if i % 5 == 0 else []
    events += [exposure("skewed", "control" if i % 10 < 7 else "treatment"),
               exposure("balanced", "control" if i % 2 else "treatment"),
               {"event_type": "Checkout Viewed"}, {"event_type": "Search Viewed"}]
    return RawRecord(f"default/u:{user}", {"api_key": "k", "events": [{"user_id": user, **e} for e in events]})


@pytest.fixture
def two_scraped_workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[list[WorkerThread], LocalPrometheus]]:
    require_prometheus()
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(FLAGS))
    ports, prefix = free_ports(2), f"t{uuid.uuid4().hex[:8]}"  # one set of topics and one group for both
    first, second = (worker_settings(kafka_bootstrap, prefix, partitions=4, metrics_port=port, flags_file=str(flags),
                                     instance_id=f"i{n}") for n, port in enumerate(ports))
    create_all_topics(first)
    workers = [WorkerThread(first), WorkerThread(second)]
    servers = []
    for port, thread in zip(ports, workers, strict=True):
        state = HealthState()
        state.last_loop = lambda thread=thread: thread.worker.last_loop  # type: ignore[misc]
        state.is_ready = lambda thread=thread: thread.worker.ready  # type: ignore[misc]
        servers.append(serve(port, thread.worker.metrics.registry, state, host="127.0.0.1"))
    try:
        with LocalPrometheus([f"127.0.0.1:{port}" for port in ports], rule_files=[ALERTS]) as prometheus:
            for thread in workers:
                thread.start()
            try:
                yield workers, prometheus
            finally:
                for thread in workers:
                    thread.stop()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def stateful_partitions(thread: WorkerThread) -> set[int]:
    return set(thread.worker.partitions.stores)


def test_a_skewed_flag_raises_the_alerts_and_a_balanced_one_does_not(
    two_scraped_workers: tuple[list[WorkerThread], LocalPrometheus], capsys: pytest.CaptureFixture[str]
) -> None:
    workers, prometheus = two_scraped_workers
    deadline = time.monotonic() + 120
    while not all(thread.worker.ready and stateful_partitions(thread) for thread in workers):
        assert time.monotonic() < deadline, "the two instances did not share the stateful partitions"
        time.sleep(0.2)
    settings = workers[0].worker.settings
    produce_raw(settings, [user_message(i) for i in range(USERS)])

    # Users per variant, summed over the instances: each holds a part, together exactly everyone.
    prometheus.wait_for(f'sum(experiment_worker_experiment_users{{flag="skewed"}}) == {USERS}', timeout_s=120)
    by_instance = prometheus.query('sum by (instance) (experiment_worker_experiment_users{flag="skewed"})')
    assert len(by_instance) == 2 and all(0 < users < USERS for users in by_instance.values())
    # The recording rules run on the scrapes before the last one: wait until they have caught up.
    prometheus.wait_for(f"count(experiment_worker:experiment_users_allocated:sum == {USERS}) == 2", timeout_s=30)
    totals = prometheus.query("experiment_worker:experiment_users:sum")
    assert {(dict(labels)["flag"], dict(labels)["variant"]): users for labels, users in totals.items()} == {
        ("skewed", "control"): 840, ("skewed", "treatment"): 360,
        ("balanced", "control"): 600, ("balanced", "treatment"): 600}
    assert prometheus.query('experiment_worker:srm_chi_square:sum{flag="skewed"}') == {
        frozenset({("project", "default"), ("flag", "skewed")}): pytest.approx(192.0)}

    # The alerts' expressions, as Prometheus evaluates them: the skewed flag only.
    srm = prometheus.query(alert_expression("ExperimentSampleRatioMismatch"))
    assert [dict(labels)["flag"] for labels in srm] == ["skewed"]
    prometheus.wait_for('sum(experiment_worker_exposure_before_property_total{flag="skewed"}) == 240')
    early = prometheus.wait_for(alert_expression("ExperimentCustomExposuresBeforeProperty"))
    assert [dict(labels)["flag"] for labels in early] == ["skewed"]
    assert next(iter(early.values())) == pytest.approx(240 / 1440, rel=0.05)
    pending = prometheus.wait_for('ALERTS{alertname="ExperimentSampleRatioMismatch"}')
    assert [(dict(labels)["flag"], dict(labels)["alertstate"]) for labels in pending] == [("skewed", "pending")]
    # Each instance's own p-value sees only its users: still far below 0.001 at this skew.
    assert all(p < 0.001 for p in prometheus.query('experiment_worker_srm_p_value{flag="skewed"}').values())
    assert all(p > 0.001 for p in prometheus.query('experiment_worker_srm_p_value{flag="balanced"}').values())

    # The report reads the same users back from the user-state topic.
    flags_file = str(settings.flags_file)
    topics = [part for name, topic in settings.topics.model_dump().items()
              for part in ("--set", f"topics.{name}={topic}")]
    assert main(["experiments", "report", "--bootstrap-servers", settings.bootstrap_servers,
                 "--set", f"flags_file={flags_file}", *topics]) == 0
    report = capsys.readouterr().out
    assert "default/skewed                   control                840   70.0%       50.0%" in report
    assert "(chi-square 192.00, 1 dof, 1,200 users): MISMATCH" in report
    assert "SRM p-value 1 (chi-square 0.00, 1 dof, 1,200 users): no mismatch" in report
