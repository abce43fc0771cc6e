"""`experiment-worker run --processes N`: N group members from one command, one /metrics for all.

Python runs one core per process, so a worker that should use a machine's cores runs several
processes. The supervisor starts N children (`run --processes 1`, instance ids `<id>-0` …
`<id>-N-1`, so each keeps its own transactional id across restarts), restarts a child that
crashes (after a back-off), forwards SIGTERM and SIGINT, and serves the children's metrics
merged (prometheus-client's multiprocess mode: each child writes its samples to files in a
directory the supervisor owns and reads). A child that stops on purpose (exit status 2: a bad
setting, the topics, the DLQ limit) stops them all, with its status: restarting would fail again.
So does a child that found no broker for `startup_timeout_s` (exit status 3): the children share
the bootstrap servers, so restarting it here would only hide the outage from the orchestrator,
whose restart (with its own back-off) a single process gets too.

Children die with the supervisor (PR_SET_PDEATHSIG), so a SIGKILLed supervisor leaves none behind.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from worker.runtime.clock import Clock, SystemClock

log = logging.getLogger(__name__)
SUPERVISED_ENV = "EXPERIMENT_WORKER_SUPERVISED"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DELIBERATE_EXIT = 2  # a WorkerError: the cli's exit status for a stop on purpose
UNREACHABLE_EXIT = 3  # KafkaUnreachable: no broker answered for startup_timeout_s
STOP_ALL = {DELIBERATE_EXIT: "stopped on purpose", UNREACHABLE_EXIT: "could not reach Kafka"}
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0  # a child up this long has its back-off reset
PR_SET_PDEATHSIG = 1


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity, bounded by a cgroup v2 CPU quota (a
    container's limit), at least 1."""
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    def __init__(self, number: int, command: list[str]) -> None:
        self.number, self.command = number, command
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0


class Supervisor:
    def __init__(self, commands: Sequence[list[str]], env: dict[str, str], clock: Clock | None = None,
                 spawn: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen) -> None:
        self.children = [Child(number, command) for number, command in enumerate(commands)]
        self.env, self.clock, self.spawn = env, clock or SystemClock(), spawn
        self.stopping = threading.Event()
        self.exit_status = 0

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def start(self, child: Child) -> None:
        child.process = self.spawn(child.command, env=self.env, preexec_fn=die_with_parent)
        child.started_at = self.clock.monotonic()
        log.info("started worker process %d (pid %d)", child.number, child.process.pid)

    def run(self, poll_s: float = 0.2) -> int:
        for child in self.children:
            self.start(child)
        while not self.stopping.wait(poll_s):
            self.check()
        self.shutdown()
        return self.exit_status

    def check(self) -> None:
        """Restart crashed children (after their back-off); a deliberate stop stops everything."""
        now = self.clock.monotonic()
        for child in self.children:
            process = child.process
            if process is None:
                if now >= child.started_at:  # its back-off is over
                    self.start(child)
                continue
            status = process.poll()
            if status is None:
                if now - child.started_at >= STABLE_AFTER_S:
                    child.restarts = 0
                continue
            if status in STOP_ALL:
                log.error("worker process %d %s (exit status %d): stopping all", child.number, STOP_ALL[status],
                          status)
                self.exit_status = status
                self.stopping.set()
                return
            delay = BACKOFF_S[min(child.restarts, len(BACKOFF_S) - 1)]
            log.warning("worker process %d (pid %d) exited with status %s; restarting in %.0f s",
                        child.number, process.pid, status, delay)
            mark_dead(process.pid)
            child.process, child.restarts = None, child.restarts + 1
            child.started_at = now + delay

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to every child (each commits and leaves the group), SIGKILL after `timeout_s`."""
        running = [child.process for child in self.children if child.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.error("worker process pid %d did not stop in %.0f s: killing it", process.pid, timeout_s)
                process.kill()
                process.wait()

    def alive(self) -> bool:
        return all(child.process is not None and child.process.poll() is None for child in self.children)


def mark_dead(pid: int) -> None:
    """Forget a dead child's live gauges (its counters stay: totals never go back)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def child_commands(argv: Sequence[str], instance_id: str, processes: int) -> list[list[str]]:
    """`run` as given, once per child: one process each, its own instance id, no HTTP port."""
    base = [sys.executable, "-m", "worker.cli", "run", *argv]
    # --set last: it wins over the same setting given earlier, as a flag or as --set.
    return [[*base, "--processes", "1", "--set", f"instance_id={instance_id}-{number}", "--set", "metrics_port=0"]
            for number in range(processes)]


def metrics_dir() -> str:
    """A fresh directory for the children's metric files (the supervisor's own, removed at exit)."""
    return tempfile.mkdtemp(prefix="experiment-worker-metrics-")
