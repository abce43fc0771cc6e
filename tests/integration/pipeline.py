"""Helpers for end-to-end tests: unique settings, and the worker running in a thread.
Reading topics back and comparing with process-file lives in worker.verify."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from prometheus_client import CollectorRegistry

from worker.runtime.metrics import Metrics
from worker.runtime.runner import Worker
from worker.runtime.settings import WorkerSettings, load_settings
from worker.runtime.topics import admin_client, create_topics


def worker_settings(bootstrap: str, prefix: str | None = None, **overrides: Any) -> WorkerSettings:
    """Settings with topic and group names unique to one test."""
    prefix = prefix or f"t{uuid.uuid4().hex[:8]}"
    topics = {name: f"{prefix}.{name}" for name in
              ("raw", "by_user", "enriched", "deltas", "state", "dlq", "registry", "dedupe")}
    base: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "group_id": f"{prefix}.group", "instance_id": "i0", "topics": topics,
        "partitions": 3, "transaction_timeout_ms": 10_000, "metrics_port": 0, "dlq_max_ratio": 1.0,
        "commit_interval_ms": 50,
    }
    base.update(overrides)
    return load_settings(**base)


def create_all_topics(settings: WorkerSettings) -> None:
    create_topics(admin_client(settings), settings)


class WorkerThread:
    """A worker running in a thread of the test process; `stop()` is a clean shutdown."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.worker = Worker(settings, Metrics(CollectorRegistry()))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        self.worker.stop()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error




from worker.verify import (  # noqa: E402  re-exported for the tests
    Outputs,
    count_records,
    kafka_outputs,
    offline_outputs,
    produce_raw,
    read_topic,
    wait_for_outputs,
)

__all__ = ["Outputs", "WorkerThread", "count_records", "create_all_topics", "kafka_outputs", "offline_outputs",
           "produce_raw", "read_topic", "wait_for_outputs", "worker_settings"]
