"""Worker settings for tests: with no broker behind them (unit tests that build a `Worker` and
never run it), or on topics and a group unique to one integration test."""

from __future__ import annotations

import uuid
from typing import Any

from dev.workers import settings_for
from worker.runtime.settings import WorkerSettings, load_settings

# Nothing listens on port 1: a client built from these settings can never reach a broker.
NO_BROKER = "127.0.0.1:1"


def offline_settings(**overrides: Any) -> WorkerSettings:
    """Settings for a `Worker` that is built but never run: no broker, no metrics port, stores in memory."""
    return load_settings(**{"bootstrap_servers": NO_BROKER, "metrics_port": 0, "state_store": "memory", **overrides})


def worker_settings(bootstrap: str, prefix: str | None = None, **overrides: Any) -> WorkerSettings:
    """Settings with topic and group names unique to one test; short transactions and commits
    keep the tests quick."""
    base: dict[str, Any] = {"partitions": 3, "transaction_timeout_ms": 10_000, "commit_interval_ms": 50}
    return settings_for(bootstrap, prefix or f"t{uuid.uuid4().hex[:8]}", **{**base, **overrides})
