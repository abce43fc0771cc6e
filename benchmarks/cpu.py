"""CPU seconds from /proc (Linux) over one timed window of the bench: each worker process's
utime+stime (every thread of it), the broker JVM's, and the machine's idle cores (idle+iowait
jiffies of /proc/stat over the window's wall seconds). The bench turns them into ratios (events
per worker CPU-second, 1 process against 2), never into timed assertions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """utime+stime of a live process, all its threads (not its waited-for children); None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


def idle_s() -> float:
    """Idle and iowait seconds summed over every core since boot (the `cpu` line of /proc/stat)."""
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(cpu[4]) + int(cpu[5])) / CLOCK_TICKS


def broker_pid(bootstrap: str) -> int | None:
    """The broker JVM: the one `make kafka-up` recorded when the bench uses it, else the only local
    java process running kafka.Kafka; None when there is none or several (the integration tests'
    brokers may run beside it), and the broker's CPU is then not reported."""
    from dev.kafka import recorded_broker

    recorded = recorded_broker()
    if recorded is not None and recorded.bootstrap == bootstrap:
        return recorded.pid
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found[0] if len(found) == 1 else None


@dataclass
class Window:
    """CPU figures from `Window.open(...)` to `close()`: per watched process, the broker, the idle cores."""

    pids: list[int]
    broker: int | None
    started: float
    idle_at_start: float
    cpu_at_start: list[float | None]
    broker_at_start: float | None

    @classmethod
    def open(cls, pids: list[int], broker: int | None, since: list[float | None] | None = None) -> Window:
        """From now; the processes' CPU from now too, or from `since` (their CPU seconds sampled earlier)."""
        at_start = since if since is not None else [process_cpu_s(pid) for pid in pids]
        broker_at_start = None if broker is None else process_cpu_s(broker)
        return cls(pids, broker, time.monotonic(), idle_s(), at_start, broker_at_start)

    def close(self) -> dict[str, Any]:
        """`cpu_s`: each process's CPU seconds in the window; `broker_cpu_s`; `idle_cores`: the
        mean number of cores nothing ran on."""
        wall_s = time.monotonic() - self.started
        cpu = [delta(process_cpu_s(pid), before) for pid, before in zip(self.pids, self.cpu_at_start, strict=True)]
        broker = None if self.broker is None else delta(process_cpu_s(self.broker), self.broker_at_start)
        return {"wall_s": wall_s, "cpu_s": cpu, "broker_cpu_s": broker,
                "idle_cores": (idle_s() - self.idle_at_start) / max(wall_s, 1e-9)}


def delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before
