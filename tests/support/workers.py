"""Workers for tests: one built but never run (unit tests of its parts), or one running in a
thread of the test process against a real broker, with its own metrics registry."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from tests.support.settings import offline_settings
from worker.runtime.metrics import Metrics
from worker.runtime.runner import Worker
from worker.runtime.settings import WorkerSettings


def idle_worker() -> Worker:
    """A Worker that never connects: for the parts of it that need no broker."""
    return Worker(offline_settings(), Metrics(CollectorRegistry()))


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

    def sample(self, name: str, **labels: str) -> float:
        """A metric's current value in this worker's own registry (0 when it has no such series)."""
        return self.worker.metrics.registry.get_sample_value(name, labels) or 0.0
