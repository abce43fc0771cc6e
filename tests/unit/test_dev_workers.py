"""The command line the development tools start workers with: a child `experiment-worker run`
gets exactly the settings of the parent's model, and nothing the parent left at its default."""

from __future__ import annotations

from dev.workers import RUN_SETTINGS, as_flags, settings_for, worker_command
from worker.cli import build_parser, settings_from
from worker.runtime.settings import load_settings


def test_flags_leave_unset_settings_at_their_default() -> None:
    flags = as_flags(load_settings(session_timeout_ms=6000), {"session_timeout_ms", "heartbeat_interval_ms"})
    assert flags == ["--set", "session_timeout_ms=6000"]


def test_a_child_parses_its_command_line_back_into_the_same_settings() -> None:
    settings = settings_for("127.0.0.1:1", "t-flags", instance_id="i3", partitions=4, commit_every_messages=20,
                            session_timeout_ms=6000, guarantee="at-least-once", kafka={"linger.ms": "7"})
    command = worker_command(settings)
    assert command[1:4] == ["-m", "worker.cli", "run"]
    child = settings_from(build_parser().parse_args(command[3:]))
    assert {name: getattr(child, name) for name in RUN_SETTINGS} == {
        name: getattr(settings, name) for name in RUN_SETTINGS}


def test_every_run_of_a_tool_gets_topics_and_a_group_of_its_own() -> None:
    one, two = settings_for("127.0.0.1:1", "run-a"), settings_for("127.0.0.1:1", "run-b")
    names = set(one.topics.model_dump().values())
    assert len(names) == 8 and all(name.startswith("run-a.") for name in names)
    assert names.isdisjoint(two.topics.model_dump().values())
    assert one.group_id == "run-a.worker" != two.group_id
