"""Command-line entry point: one `experiment-worker` command with a subcommand per job.

A bad setting or input file, the topics, the DLQ limit, an unreachable broker: each ends a command
with one line naming it and the exit status worker/errors.py gives it (2 stop on purpose, 3 Kafka
unreachable, 4 hung librdkafka calls).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from worker.core.config import CoreConfig
from worker.errors import ConfigError, WorkerError

if TYPE_CHECKING:
    from worker.runtime.settings import WorkerSettings


def int_at_least(setting: str, minimum: int) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{setting} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{setting} must be >= {minimum}, got {value}")
        return value

    return parse  # type: ignore[return-value]


def add_process_file(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("process-file", help="run the pipeline over a JSON Lines file (SPEC §11)")
    parser.add_argument("input", type=Path, help="JSON Lines, one raw message per line")
    parser.add_argument("--out", type=Path, required=True, help="directory for events/deltas/dlq/state.jsonl")
    parser.add_argument("--state-in", type=Path, help="JSON Lines of {key, user_properties}")
    parser.add_argument("--projects", type=Path, help="JSON object api_key -> project_id")
    parser.add_argument("--experiment-property-limit", type=int_at_least("--experiment-property-limit", 0),
                        default=CoreConfig().experiment_property_limit)
    parser.add_argument("--min-id-length", type=int_at_least("--min-id-length", 0),
                        default=CoreConfig().min_id_length)
    parser.add_argument("--now", type=int_at_least("--now", 0), help="ms for records without a timestamp")
    parser.add_argument("--flags", type=Path, help="flags file: prints the experiment-health report at the end")
    parser.set_defaults(handler=run_process_file)


def run_process_file(args: argparse.Namespace) -> int:
    from worker.config_files import read_flags, read_projects
    from worker.core.experiment_health import ExperimentHealth
    from worker.experiment_report import counted_lines
    from worker.offline import process_file

    if not args.input.is_file():
        raise ConfigError(f"input {args.input}: no such file")
    if args.state_in is not None and not args.state_in.is_file():
        raise ConfigError(f"--state-in {args.state_in}: no such file")
    config = CoreConfig(
        min_id_length=args.min_id_length,
        experiment_property_limit=args.experiment_property_limit,
        projects=None if args.projects is None else read_projects(args.projects, "--projects"),
    )
    now_ms = args.now if args.now is not None else int(time.time() * 1000)
    started = time.monotonic()
    progress = sys.stderr if sys.stderr.isatty() else None
    health = None if args.flags is None else ExperimentHealth(read_flags(args.flags, "--flags"))
    summary = process_file(args.input, args.out, config, now_ms, args.state_in, progress, health)
    print(summary.line(time.monotonic() - started), file=sys.stderr)
    if health is not None:
        print("\n".join(counted_lines(health)), file=sys.stderr)
    return 0


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (EXPERIMENT_WORKER_BOOTSTRAP_SERVERS)")
    parser.add_argument("--group-id", help="consumer group (EXPERIMENT_WORKER_GROUP_ID)")
    parser.add_argument("--instance-id", help="stable per instance; names the transactional producer")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any setting, e.g. --set commit_interval_ms=200 --set topics.raw=my.raw")


def settings_from(args: argparse.Namespace) -> WorkerSettings:
    from worker.runtime.settings import load_settings

    overrides: dict[str, Any] = {
        "bootstrap_servers": args.bootstrap_servers, "group_id": args.group_id, "instance_id": args.instance_id,
    }
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        target = overrides
        *parents, leaf = name.strip().split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = orjson.loads(value) if value[:1] in ("{", "[") else value
    return load_settings(**overrides)


def run_check_config(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    from worker.build import describe

    settings.core_config()  # reads and checks the projects file
    settings.flags()  # and the flags file
    print(orjson.dumps({**settings.describe(), "build": describe()}, option=orjson.OPT_INDENT_2).decode())
    return 0


def run_kafka_command(args: argparse.Namespace) -> int:
    """`topics`, `state`, `dlq`, `lag`: worker/runtime/commands.py, any Kafka error one line."""
    from worker.runtime import commands
    from worker.runtime.broker import kafka_command

    settings = settings_from(args)
    return kafka_command(settings, lambda: int(getattr(commands, args.kafka_handler)(args, settings)))


def run_worker_command(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from worker.runtime.health import HealthState, serve
    from worker.runtime.logs import configure_logging
    from worker.runtime.metrics import Metrics
    from worker.runtime.runner import Worker
    from worker.runtime.supervisor import usable_cpus

    settings = settings_from(args)
    configure_logging(settings.log_level, settings.log_format == "json")
    processes = args.processes if args.processes is not None else usable_cpus()
    if processes > 1:
        return run_supervisor(args, settings, processes)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    worker = Worker(settings, metrics)
    state = HealthState()
    state.last_loop = lambda: worker.last_loop
    state.is_ready = lambda: worker.ready
    if settings.metrics_port:
        serve(settings.metrics_port, registry, state)
    worker.install_signal_handlers()
    worker.run()
    return 0


def run_supervisor(args: argparse.Namespace, settings: WorkerSettings, processes: int) -> int:
    """`run --processes N`: N worker processes, supervised, their metrics merged on one port."""
    import os
    import shutil
    import signal
    import time

    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from worker.runtime import supervisor as sv
    from worker.runtime.health import HealthState, serve

    directory = sv.metrics_dir()
    env = {**os.environ, sv.MULTIPROC_ENV: directory, sv.SUPERVISED_ENV: "1"}
    os.environ[sv.MULTIPROC_ENV] = directory
    registry = CollectorRegistry()
    MultiProcessCollector(registry, directory)  # type: ignore[no-untyped-call]
    argv = args.argv[args.argv.index("run") + 1:]
    supervisor = sv.Supervisor(sv.child_commands(argv, settings.instance_id, processes), env)

    def last_loop() -> float:  # the oldest child's loop, on the monotonic clock HealthState reads
        shown = registry.get_sample_value("experiment_worker_loop_timestamp_seconds")
        return time.monotonic() - (time.time() - shown) if shown else time.monotonic()

    state = HealthState()
    state.last_loop = last_loop
    state.is_ready = lambda: supervisor.alive() and registry.get_sample_value("experiment_worker_ready") == 1
    if settings.metrics_port:
        serve(settings.metrics_port, registry, state)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    try:
        return supervisor.run()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_experiments(args: argparse.Namespace) -> int:
    from worker.experiment_report import print_report
    from worker.runtime.broker import kafka_command

    settings = settings_from(args)
    if args.state is not None:  # from a file: no Kafka
        print_report(settings, args.flags, args.state)
        return 0

    def report() -> int:
        print_report(settings, args.flags, None)
        return 0

    return kafka_command(settings, report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="experiment-worker", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_process_file(commands)
    run = commands.add_parser("run", help="run the streaming worker on Kafka")
    add_settings_flags(run)
    run.add_argument("--processes", type=int_at_least("--processes", 1),
                     help="worker processes, each a group member (default: the usable CPU count)")
    run.set_defaults(handler=run_worker_command)
    topics = commands.add_parser("topics", help="create, check or describe the topics of SPEC §1")
    topics.add_argument("action", choices=("create", "check", "describe"))
    add_settings_flags(topics)
    topics.set_defaults(handler=run_kafka_command, kafka_handler="run_topics")
    state = commands.add_parser("state", help="read a user's state from the compacted user-state topic")
    state.add_argument("action", choices=("get",))
    state.add_argument("user_key", help="<project_id>/u:<user_id> or <project_id>/d:<device_id>")
    add_settings_flags(state)
    state.set_defaults(handler=run_kafka_command, kafka_handler="run_state")
    dlq = commands.add_parser("dlq", help="count DLQ records by reason, or republish them to the raw topic")
    dlq.add_argument("action", choices=("stats", "replay"))
    dlq.add_argument("--reason", help="replay only records with this reason")
    dlq.add_argument("--dry-run", action="store_true", help="count what would be replayed")
    add_settings_flags(dlq)
    dlq.set_defaults(handler=run_kafka_command, kafka_handler="run_dlq")
    lag = commands.add_parser("lag", help="the consumer group's lag per input partition")
    add_settings_flags(lag)
    lag.set_defaults(handler=run_kafka_command, kafka_handler="run_lag")
    experiments = commands.add_parser("experiments", help="experiment health: users per variant, SRM p-value")
    experiments.add_argument("action", choices=("report",))
    experiments.add_argument("--state", type=Path, help="a process-file output directory or state.jsonl "
                             "(default: the user-state topic)")
    experiments.add_argument("--flags", type=Path, help="flags file (default: the flags_file setting)")
    add_settings_flags(experiments)
    experiments.set_defaults(handler=run_experiments)
    check = commands.add_parser("check-config", help="print the effective settings (secrets masked)")
    add_settings_flags(check)
    check.set_defaults(handler=run_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `run --processes N` hands it to its children
    try:
        return int(args.handler(args))
    except WorkerError as exc:
        print(f"experiment-worker: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
