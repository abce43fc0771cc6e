"""`run --processes N`: the supervisor's rules, with fake child processes and a fake clock."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from worker.runtime import supervisor as sv


class FakeProcess:
    pids = iter(range(1000, 2000))

    def __init__(self, command: list[str], **_: Any) -> None:
        self.command, self.pid = command, next(self.pids)
        self.status: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.status

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        self.status = 0

    def wait(self, timeout: float | None = None) -> int:
        return self.status or 0

    def kill(self) -> None:
        self.status = -9


class Clock:
    now = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def supervised(processes: int = 2, start: bool = True) -> tuple[sv.Supervisor, list[FakeProcess], Clock]:
    spawned: list[FakeProcess] = []

    def spawn(command: list[str], **kwargs: Any) -> FakeProcess:
        spawned.append(FakeProcess(command, **kwargs))
        return spawned[-1]

    clock = Clock()
    supervisor = sv.Supervisor(sv.child_commands(["--set", "instance_id=x"], "pod-7", processes), {}, clock,
                               spawn)  # type: ignore[arg-type]
    for child in supervisor.children if start else ():
        supervisor.start(child)
    return supervisor, spawned, clock


def test_children_are_single_processes_with_their_own_instance_id_given_last() -> None:
    commands = sv.child_commands(["--bootstrap-servers", "b:9092", "--set", "instance_id=pod-7"], "pod-7", 2)
    for number, command in enumerate(commands):
        assert command[command.index("run"):][:5] == ["run", "--bootstrap-servers", "b:9092", "--set",
                                                      "instance_id=pod-7"]
        # The last --set of a setting wins, so each child's id overrides the inherited one.
        assert command[-6:] == ["--processes", "1", "--set", f"instance_id=pod-7-{number}", "--set",
                                "metrics_port=0"]


def test_a_crashed_child_is_restarted_after_its_back_off_and_the_others_are_left_alone() -> None:
    supervisor, spawned, clock = supervised()
    spawned[0].status = -9  # SIGKILLed
    supervisor.check()
    assert len(spawned) == 2 and supervisor.children[0].process is None and not supervisor.alive()
    clock.now += sv.BACKOFF_S[0] - 0.1
    supervisor.check()
    assert len(spawned) == 2
    clock.now += 0.2
    supervisor.check()
    assert len(spawned) == 3 and spawned[2].command == spawned[0].command and supervisor.alive()
    assert spawned[1].signals == []


def test_the_back_off_grows_with_each_crash_in_a_row() -> None:
    supervisor, spawned, clock = supervised(1)
    delays = []
    for _ in range(3):
        spawned[-1].status = 1
        supervisor.check()
        delays.append(supervisor.children[0].started_at - clock.now)
        clock.now = supervisor.children[0].started_at
        supervisor.check()
    assert delays == list(sv.BACKOFF_S[:3])


@pytest.mark.parametrize("status", [sv.DELIBERATE_EXIT, sv.UNREACHABLE_EXIT])
def test_a_child_that_stops_on_purpose_or_found_no_broker_stops_them_all_with_its_status(status: int) -> None:
    supervisor, spawned, _ = supervised()
    spawned[1].status = status  # e.g. the DLQ limit, a bad setting, or no broker for startup_timeout_s
    supervisor.check()
    assert supervisor.stopping.is_set() and supervisor.exit_status == status
    supervisor.shutdown()
    assert spawned[0].signals == [signal.SIGTERM] and len(spawned) == 2


def test_sigterm_is_forwarded_to_every_child() -> None:
    supervisor, spawned, _ = supervised(3, start=False)
    supervisor.stop()
    assert supervisor.run(poll_s=0) == 0
    assert len(spawned) == 3 and all(process.signals == [signal.SIGTERM] for process in spawned)


@pytest.mark.parametrize(("quota", "expected"), [("max 100000", 8), ("150000 100000", 2), ("50000 100000", 1)])
def test_usable_cpus_honours_a_cgroup_quota(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, quota: str,
                                            expected: int) -> None:
    monkeypatch.setattr(sv.os, "sched_getaffinity", lambda pid: set(range(8)))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(quota)
    real_path = sv.Path
    monkeypatch.setattr(sv, "Path", lambda name: cpu_max if name == "/sys/fs/cgroup/cpu.max" else real_path(name))
    assert sv.usable_cpus() == expected
