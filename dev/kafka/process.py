"""One local broker as an operating-system process: launching `kafka.Kafka` in its own session,
telling it from a reused pid, waiting until it answers a metadata request, and stopping it
(SIGTERM to its process group, SIGKILL when it does not go). `LocalBroker` is the handle.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from dev.children import die_with_caller
from dev.errors import LocalBrokerError, PortInUseError
from dev.kafka import java as jvm

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 20
BROKER_RECORD = "broker.json"
BROKER_OUTPUT = "broker.out"
JAVA_EXCEPTION = re.compile(r"^\S*(Exception|Error)\b.*: ")


@dataclass
class LocalBroker:
    """A running local broker. `stop()` (or leaving the `with` block) ends it and removes its data dir."""

    bootstrap: str
    pid: int
    data_dir: Path
    started_at: str
    format_s: float = 0.0
    start_s: float = 0.0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    # Behind a fault proxy (`bootstrap` is the proxy's address): the listener that bypasses it.
    direct: str = ""

    @property
    def reachable(self) -> str:
        """The address to reach the broker itself at, whatever a proxy in front of it does."""
        return self.direct or self.bootstrap

    def is_alive(self) -> bool:
        return is_broker_process(self.pid, self.data_dir)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        terminate(self, timeout_s)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def record(self) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap,
            "pid": self.pid,
            "data_dir": str(self.data_dir),
            "started_at": self.started_at,
        }

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def is_broker_process(pid: int, data_dir: Path) -> bool:
    """True when `pid` is a live kafka.Kafka started on `data_dir` (not a reused pid, not a zombie)."""
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS)
        ps = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False)
        command_line = ps.stdout
    return "kafka.Kafka" in command_line and str(data_dir) in command_line


def launch(
    command: list[str], data_dir: Path, tie_to_caller: bool, append: bool = False
) -> subprocess.Popen[bytes]:
    with (data_dir / BROKER_OUTPUT).open("ab" if append else "wb") as output:
        return subprocess.Popen(
            command,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the caller's terminal does not reach the broker
            preexec_fn=die_with_caller() if tie_to_caller else None,
        )


def terminate(broker: LocalBroker, timeout_s: float, signum: signal.Signals = signal.SIGTERM) -> None:
    """Signal the broker's process group (SIGTERM by default), then SIGKILL if it is still there
    after `timeout_s`."""
    if broker.is_alive():
        signal_group(broker.pid, signum)
        if not wait_gone(broker, timeout_s):
            signal_group(broker.pid, signal.SIGKILL)
            wait_gone(broker, 5.0)
    if broker.process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            broker.process.wait(timeout=1.0)  # reap our own child


def signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)  # started with start_new_session: the group id is the broker's pid


def wait_gone(broker: LocalBroker, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if broker.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                broker.process.wait(timeout=0.1)
        if not broker.is_alive():
            return True
        time.sleep(0.1)
    return False


def answers(bootstrap: str, timeout_s: float) -> bool:
    """True when a broker at `bootstrap` answers a metadata request with at least one broker."""
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout_s, 1.0)).close()
    except OSError:
        return False  # not listening yet: skip the client, whose connect errors would fill stderr
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return False


def wait_ready(broker: LocalBroker, deadline: float) -> None:
    assert broker.process is not None
    while time.monotonic() < deadline:
        exit_code = broker.process.poll()
        if exit_code is not None:
            raise start_failure(broker, f"the broker exited with code {exit_code} while starting")
        if answers(broker.reachable, timeout_s=1.0):
            return
        time.sleep(0.2)
    raise start_failure(broker, f"the broker did not answer within {READY_TIMEOUT_S:.0f} s")


def start_failure(broker: LocalBroker, what: str) -> LocalBrokerError:
    output = read_output(broker.data_dir)
    # The first exception message names the cause; the stack trace and shutdown lines follow it.
    cause = next((line.strip() for line in output.splitlines() if JAVA_EXCEPTION.search(line)), "")
    tail = "\n".join("  " + line for line in output.splitlines()[-LOG_TAIL_LINES:]) or "  (no output)"
    summary = f"{what}: {cause}" if cause else what
    if "Address already in use" in output:
        return PortInUseError(f"{summary}\n(a port was taken meanwhile: retry, or look with `ss -ltnp`)")
    if "OutOfMemoryError" in output:
        return LocalBrokerError(f"{summary}\n(out of heap: raise -Xmx in {jvm.__name__}.JVM_OPTIONS to 1g)")
    return LocalBrokerError(f"{summary}\nlast {LOG_TAIL_LINES} lines of its output:\n{tail}")


def read_output(data_dir: Path) -> str:
    try:
        return (data_dir / BROKER_OUTPUT).read_text(errors="replace")
    except OSError:
        return ""
