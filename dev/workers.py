"""Worker processes for the development tools: settings on topics of their own (a prefix per run,
so runs never share a topic or a group), and the `experiment-worker run` command line that gives
a child process exactly those settings, and a handle on one such process that can be killed,
stopped and started again under the same instance id. The demo, the stress suite, the crash-recovery test and
the benchmarks start their workers this way.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from worker.runtime.settings import Topics, WorkerSettings, load_settings

# What a child worker is told; every other setting keeps its default (or its environment value).
# Where the tools' workers keep their stores: outside the checkout, one directory per prefix.
STATE_ROOT = Path(tempfile.gettempdir()) / "experiment-worker-dev-state"

RUN_SETTINGS = frozenset({
    "bootstrap_servers", "group_id", "instance_id", "topics", "kafka", "transaction_timeout_ms",
    "commit_interval_ms", "commit_every_messages", "commit_idle_ms", "partitions", "group_protocol",
    "session_timeout_ms", "heartbeat_interval_ms", "guarantee", "metrics_port", "dlq_max_ratio", "linger_ms",
    "flags_file", "state_store", "state_dir", "state_cache_bytes", "by_user_shortcut",
})


def settings_for(bootstrap: str, prefix: str, **overrides: Any) -> WorkerSettings:
    """Settings whose topics and group are `<prefix>.<name>`; no metrics port, no DLQ ratio limit
    (generated streams hold bad input on purpose); stores on disk under a temporary directory of
    the prefix's own (STATE_ROOT). `overrides` win."""
    topics = {name: f"{prefix}.{name}" for name in Topics.model_fields}
    base: dict[str, Any] = {"bootstrap_servers": bootstrap, "group_id": f"{prefix}.worker", "instance_id": "i0",
                            "topics": topics, "metrics_port": 0, "dlq_max_ratio": 1.0,
                            "state_dir": str(STATE_ROOT / prefix)}
    return load_settings(**{**base, **overrides})


def worker_command(settings: WorkerSettings) -> list[str]:
    """`experiment-worker run` as one process (the tools count, kill and restart processes
    themselves) with these settings (RUN_SETTINGS of them)."""
    return [sys.executable, "-m", "worker.cli", "run", "--processes", "1", *as_flags(settings, RUN_SETTINGS)]


def as_flags(settings: WorkerSettings, names: frozenset[str] | set[str]) -> list[str]:
    """`--set` flags that give a child `experiment-worker run` these settings."""
    flags: list[str] = []
    for name, value in settings.model_dump(mode="json", include=set(names)).items():
        if value is None:
            continue  # the default
        if name == "topics":
            flags += [part for topic, topic_name in value.items() for part in ("--set", f"topics.{topic}={topic_name}")]
        elif isinstance(value, dict | list):
            flags += ["--set", f"{name}={orjson.dumps(value).decode()}"]
        else:
            flags += ["--set", f"{name}={value}"]
    return flags


@dataclass
class Instance:
    """One worker process; restarted under the same instance id, so the same transactional id."""

    name: str
    command: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=output, stderr=output)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, signum: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def kill(self) -> None:
        self.send(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)
        self.process = None

    def leave(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait: the exit status (0 for a clean shutdown), None when it hung and was killed."""
        if self.process is None:
            return 0
        self.send(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGUSR1)  # the worker writes every thread's stack to its log
            time.sleep(1.0)
            self.kill()
            code = None
        self.process = None
        return code
