"""A real Prometheus scrapes a worker that runs against a real broker: the metrics an SRE
queries hold the values the stream should give, the alert rules load and evaluate, every
dashboard query parses, and /healthz and /readyz answer as Kubernetes expects.

Needs the `prometheus` binary (Debian: `apt-get install prometheus`): skipped without it, and a
failure when REQUIRE_KAFKA=1 or CI=true (CI must not pass by skipping).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev.children import free_ports
from dev.loadgen import RawRecord, StreamGenerator
from dev.prometheus import INSTALL_HINT, LocalPrometheus, find_prometheus
from dev.verify import produce_raw, read_topic, wait_for_outputs
from tests.support.settings import worker_settings
from tests.support.topics import create_all_topics
from tests.support.workers import WorkerThread
from worker.runtime.health import HealthState, serve

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "experiment-worker.json"


def require_prometheus() -> None:
    if find_prometheus() is None:
        message = f"prometheus not found: {INSTALL_HINT}"
        if os.environ.get("REQUIRE_KAFKA") == "1" or os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_status(url: str, status: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (got := http_status(url)) != status:
        assert time.monotonic() < deadline, f"{url} answered {got}, not {status}, for {timeout_s} s"
        time.sleep(0.2)


def bad_records() -> list[RawRecord]:
    return [
        RawRecord(None, value_raw="{not json"),
        RawRecord(None, value_raw="[1, 2"),
        RawRecord(None, value={"user_id": "user-000001"}),  # no event_type
    ]


@pytest.fixture
def scraped_worker(kafka_bootstrap: str) -> Iterator[tuple[WorkerThread, str, LocalPrometheus]]:
    """A worker with its HTTP endpoints, as `experiment-worker run` wires them, and a Prometheus
    scraping it every second with the project's alert rules loaded."""
    require_prometheus()
    port = free_ports(1)[0]
    settings = worker_settings(kafka_bootstrap, metrics_port=port)
    create_all_topics(settings)
    worker = WorkerThread(settings)
    state = HealthState()
    state.last_loop = lambda: worker.worker.last_loop
    state.is_ready = lambda: worker.worker.ready
    server = serve(port, worker.worker.metrics.registry, state, host="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    try:
        assert http_status(f"{base}/readyz") == 503, "ready before the worker started"
        with LocalPrometheus([f"127.0.0.1:{port}"], rule_files=[ALERTS]) as prometheus:
            worker.start()
            try:
                yield worker, base, prometheus
            finally:
                worker.stop()
    finally:
        server.shutdown()
        server.server_close()


def test_prometheus_scrapes_the_worker(scraped_worker: tuple[WorkerThread, str, LocalPrometheus]) -> None:
    worker, base, prometheus = scraped_worker
    settings = worker.worker.settings
    wait_status(f"{base}/readyz", 200)
    assert http_status(f"{base}/healthz") == 200
    produce_raw(settings, [*StreamGenerator(seed=31, users=40, bad_share=0.0).records(400), *bad_records()])
    dlq_count = len(bad_records())
    wait_for_outputs(settings, {settings.topics.dlq: dlq_count, settings.topics.enriched: 1})

    up = prometheus.wait_for('up{job="experiment-worker"} == 1')
    assert len(up) == 1
    enriched = prometheus.wait_for(
        f'experiment_worker_records_out_total{{topic="{settings.topics.enriched}"}} > 0')
    assert next(iter(enriched.values())) > 0
    for reason in ("malformed_json", "missing_event_type"):
        prometheus.wait_for(f'experiment_worker_dlq_records_total{{reason="{reason}"}} > 0')
    prometheus.wait_for('experiment_worker_transactions_total{outcome="committed"} > 0')
    prometheus.wait_for("experiment_worker_ready == 1")
    prometheus.wait_for('experiment_worker_billable_events_total{project="default"} > 0')
    prometheus.wait_for("sum by (flag, variant) (experiment_worker_exposures_total) > 0")
    prometheus.wait_for("experiment_worker_commit_seconds_count > 0")
    prometheus.wait_for("time() - experiment_worker_last_commit_timestamp_seconds < 60")
    prometheus.wait_for(f'experiment_worker_messages_in_total{{topic="{settings.topics.raw}"}} > 0')

    # Once the worker is idle, Prometheus holds exactly the worker's own count, and that count
    # covers every DLQ record in Kafka (more only if a transaction aborted and was redone).
    in_kafka = len(read_topic(settings.bootstrap_servers, settings.topics.dlq))
    in_worker = sum(sample.value for family in worker.worker.metrics.registry.collect()
                    if family.name == "experiment_worker_dlq_records"
                    for sample in family.samples if sample.name.endswith("_total"))
    assert in_worker >= in_kafka >= dlq_count
    prometheus.wait_for(f"sum(experiment_worker_dlq_records_total) == {in_worker}")
    assert http_status(f"{base}/healthz") == 200
    assert http_status(f"{base}/readyz") == 200


def test_alert_rules_evaluate_and_stay_quiet_on_a_healthy_worker(
    scraped_worker: tuple[WorkerThread, str, LocalPrometheus],
) -> None:
    worker, base, prometheus = scraped_worker
    wait_status(f"{base}/readyz", 200)
    produce_raw(worker.worker.settings, list(StreamGenerator(seed=32, users=20, bad_share=0.0).records(100)))
    prometheus.wait_for('experiment_worker_transactions_total{outcome="committed"} > 0')
    deadline = time.monotonic() + 30
    while True:  # every rule evaluated at least once against real series
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules):
            break
        assert time.monotonic() < deadline, f"rules not evaluated: {rules}"
        time.sleep(0.5)
    assert {rule["name"] for rule in rules} >= {
        "ExperimentWorkerDown", "ExperimentWorkerConsumerLagGrowing", "ExperimentWorkerDlqRatioHigh",
        "ExperimentWorkerRestoreStuck", "ExperimentWorkerNoCommits",
    }
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    assert [r["name"] for r in rules if r.get("type") == "alerting" and r["state"] != "inactive"] == []


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def grafana_to_promql(expression: str) -> str:
    """What Grafana sends: its variables replaced by values that select everything."""
    replaced = expression.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$instance", ".*")
    assert "$" not in re.sub(r"\{\{.*?\}\}", "", replaced), f"unknown variable in {expression}"
    return replaced


def test_every_dashboard_query_runs(scraped_worker: tuple[WorkerThread, str, LocalPrometheus]) -> None:
    _, base, prometheus = scraped_worker
    wait_status(f"{base}/readyz", 200)
    prometheus.wait_for('up{job="experiment-worker"} == 1')
    expressions = dashboard_expressions()
    assert expressions
    for expression in expressions:
        prometheus.query(grafana_to_promql(expression))  # PrometheusError on a parse or evaluation error
    # The panels on data every running worker has are not empty.
    for name in ("experiment_worker_ready", "up", "experiment_worker_restoring_partitions"):
        chosen = [e for e in expressions if re.search(rf"\b{name}\{{", e)]
        assert chosen, name
        assert prometheus.query(grafana_to_promql(chosen[0])), f"no data for {chosen[0]}"
