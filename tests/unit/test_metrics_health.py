"""The HTTP endpoints on a loopback port: /metrics, /healthz (the loop turns), /readyz, and 404
for anything else. No broker."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from worker.runtime.health import HealthState, serve
from worker.runtime.metrics import Metrics


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def endpoint() -> Iterator[tuple[str, HealthState, Metrics]]:
    metrics = Metrics(CollectorRegistry())
    state = HealthState(stuck_after_s=5.0)
    server = serve(0, metrics.registry, state, host="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state, metrics
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_endpoint_serves_the_registry(endpoint: tuple[str, HealthState, Metrics]) -> None:
    base, _, metrics = endpoint
    metrics.dlq_records.labels("malformed_json").inc(2)
    status, body = get(f"{base}/metrics")
    assert status == 200
    assert b'experiment_worker_dlq_records_total{reason="malformed_json"} 2.0' in body


def test_ready_only_when_the_worker_says_so(endpoint: tuple[str, HealthState, Metrics]) -> None:
    base, state, _ = endpoint
    assert get(f"{base}/readyz")[0] == 503
    state.is_ready = lambda: True
    assert get(f"{base}/readyz") == (200, b"ready\n")


def test_a_stuck_loop_is_unhealthy_restore_or_not(endpoint: tuple[str, HealthState, Metrics]) -> None:
    """Restores run in threads beside the loop (tests/integration/test_worker.py shows the loop
    turning through one), so nothing excuses a loop that stopped: no restore exemption."""
    base, state, _ = endpoint
    assert get(f"{base}/healthz") == (200, b"ok\n")
    stuck_since = time.monotonic() - 10.0
    state.last_loop = lambda: stuck_since
    assert get(f"{base}/healthz") == (503, b"processing loop stuck\n")
    assert not hasattr(state, "is_restoring"), "a restore must not excuse a stuck loop"
    state.last_loop = time.monotonic  # the loop turns again
    assert get(f"{base}/healthz") == (200, b"ok\n")


def test_unknown_paths_are_404(endpoint: tuple[str, HealthState, Metrics]) -> None:
    base, _, _ = endpoint
    assert get(f"{base}/")[0] == 404
