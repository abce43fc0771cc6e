"""The stress suite (`make chaos`, `python -m worker.chaos`): exactly-once under crashes, rebalances,
broker restarts and zombies, checked record by record against process-file.

A producer writes a generated stream (many users, experiment events, user-property operations,
some bad input) into the raw topic for `duration_s` while 2-3 worker processes in one group are
killed with SIGKILL, stopped with SIGTERM, started again, frozen with SIGSTOP until their
partitions move (zombies) and resumed, and the broker itself is restarted with SIGTERM and SIGKILL.
A seeded schedule decides what happens when. At the end the read_committed outputs and the
compacted state are compared with `process-file` on the raw topic's records: lost, duplicated
and wrong records are counted, and each must be 0. A worker that exits by itself (a crash: it
should ride out every one of these faults) is counted too, and restarted as a supervisor would.

The short form runs in `make test` (tests/integration/test_chaos.py); the long form is `make chaos`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from worker.loadgen import RawRecord, StreamGenerator
from worker.runtime import local_broker
from worker.runtime.local_broker import LocalBroker
from worker.runtime.settings import WorkerSettings, as_flags, load_settings
from worker.runtime.topics import admin_client, create_topics
from worker.verify import Outputs, count_records, kafka_outputs, offline_outputs, read_topic, wait_for_outputs

RUN_SETTINGS = {"bootstrap_servers", "group_id", "instance_id", "topics", "kafka", "transaction_timeout_ms",
                "commit_interval_ms", "commit_every_messages", "partitions", "group_protocol",
                "session_timeout_ms", "heartbeat_interval_ms", "guarantee"}
ACTIONS = ("kill", "leave", "join", "zombie", "broker-term", "broker-kill")


def worker_command(settings: WorkerSettings) -> list[str]:
    """`experiment-worker run` in a child process with these settings."""
    return [sys.executable, "-m", "worker.cli", "run", "--processes", "1", *as_flags(settings, RUN_SETTINGS),
            "--set", "metrics_port=0"]


@dataclass(frozen=True)
class ChaosPlan:
    seed: int = 1
    events: int = 20_000
    users: int = 500
    duration_s: float = 40.0  # the producer spreads the stream over this; faults happen meanwhile
    instances: int = 3
    partitions: int = 6
    kills: int = 4
    leaves: int = 1  # SIGTERM: a clean leave, joined again later
    zombies: int = 1
    broker_sigterms: int = 0
    broker_sigkills: int = 0
    session_timeout_ms: int = 6000
    finish_timeout_s: float = 300.0

    def schedule(self) -> list[tuple[float, str]]:
        """(seconds from the start, action), spread over the run with a seeded jitter."""
        actions = (["kill"] * self.kills + ["leave"] * self.leaves + ["zombie"] * self.zombies
                   + ["broker-term"] * self.broker_sigterms + ["broker-kill"] * self.broker_sigkills)
        chance = random.Random(self.seed)
        chance.shuffle(actions)
        step = self.duration_s / (len(actions) + 1)
        return [(step * (n + 1) + chance.uniform(-step / 3, step / 3), action) for n, action in enumerate(actions)]


@dataclass
class Tally:
    """What happened and what was checked; `ok` when nothing was lost, duplicated or wrong."""

    kills: int = 0
    leaves: int = 0
    joins: int = 0
    zombies: int = 0
    broker_restarts: dict[str, int] = field(default_factory=lambda: {"SIGTERM": 0, "SIGKILL": 0})
    crashes: list[str] = field(default_factory=list)  # instances that exited without being told to
    raw_records: int = 0
    records_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.wrong == 0 and not self.crashes


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


def diff(expected: Outputs, got: Outputs) -> tuple[int, int, int]:
    """(lost, duplicated, wrong) records of `got` against `expected`, as multisets per user and
    topic; a user whose records are all there but in another order counts them as wrong, and so
    does a user whose final state differs."""
    lost = duplicated = wrong = 0
    for kind in ("events", "deltas"):
        want, have = getattr(expected, kind), getattr(got, kind)
        for user in want.keys() | have.keys():
            a = Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in want.get(user, []))
            b = Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in have.get(user, []))
            lost += sum((a - b).values())
            duplicated += sum(count for record, count in (b - a).items() if record in a)
            wrong += sum(count for record, count in (b - a).items() if record not in a)
            if a == b and want.get(user) != have.get(user):
                wrong += len(want[user])
    want_dlq, have_dlq = Counter(map(repr, expected.dlq)), Counter(map(repr, got.dlq))
    lost += sum((want_dlq - have_dlq).values())
    duplicated += sum(count for record, count in (have_dlq - want_dlq).items() if record in want_dlq)
    wrong += sum(count for record, count in (have_dlq - want_dlq).items() if record not in want_dlq)
    wrong += sum(1 for key in expected.state.keys() | got.state.keys()
                 if expected.state.get(key) != got.state.get(key))
    return lost, duplicated, wrong


class StreamWriter(threading.Thread):
    """Writes the generated raw stream at an even pace over `duration_s`; an idempotent producer
    with a long delivery timeout rides out broker restarts without losing or repeating a record."""

    def __init__(self, settings: WorkerSettings, records: list[RawRecord], duration_s: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.records, self.duration_s = settings, records, duration_s
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = Producer({"bootstrap.servers": self.settings.bootstrap_servers, "enable.idempotence": True,
                                 "linger.ms": 5, "delivery.timeout.ms": 600_000})
            started = time.monotonic()
            for n, record in enumerate(self.records):
                value = record.encoded()
                producer.produce(self.settings.topics.raw, key=None if record.key is None else record.key.encode(),
                                 value=value)
                producer.poll(0)
                ahead = started + self.duration_s * (n + 1) / len(self.records) - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if producer.flush(600) != 0:
                raise RuntimeError("the raw stream was not fully delivered")
        except BaseException as exc:  # reported by the driver
            self.error = exc


class Chaos:
    def __init__(self, plan: ChaosPlan, bootstrap: str, workdir: Path, broker: LocalBroker | None) -> None:
        self.plan, self.workdir, self.broker = plan, workdir, broker
        prefix = f"chaos{uuid.uuid4().hex[:6]}"
        topics = {name: f"{prefix}.{name}" for name in
                  ("raw", "by_user", "enriched", "deltas", "state", "dlq", "registry", "dedupe")}
        self.settings = load_settings(
            bootstrap_servers=bootstrap, group_id=f"{prefix}.worker", instance_id="i0", topics=topics,
            partitions=plan.partitions, transaction_timeout_ms=10_000, commit_interval_ms=100,
            session_timeout_ms=plan.session_timeout_ms, heartbeat_interval_ms=1000, dlq_max_ratio=1.0,
            metrics_port=0)
        self.instances = [
            Instance(f"i{n}", worker_command(self.settings.model_copy(update={"instance_id": f"i{n}"})),
                     workdir / f"i{n}.log")
            for n in range(plan.instances)
        ]
        self.chance = random.Random(plan.seed)
        self.tally = Tally()

    def say(self, message: str) -> None:
        print(f"chaos {time.strftime('%H:%M:%S')} {message}", flush=True)

    def supervise(self) -> None:
        """A worker that exited on its own is a crash: count it, and start it again."""
        for instance in self.instances:
            if instance.process is not None and instance.process.poll() is not None:
                code = instance.process.returncode
                self.tally.crashes.append(f"{instance.name} exited with {code} (see {instance.log})")
                self.say(f"{instance.name} CRASHED with exit {code}; restarting it")
                instance.start()

    def running(self) -> list[Instance]:
        return [instance for instance in self.instances if instance.running]

    def stopped(self) -> list[Instance]:
        return [instance for instance in self.instances if instance.process is None]

    def act(self, action: str) -> None:
        running = self.running()
        if action == "kill" and running:
            victim = self.chance.choice(running)
            victim.kill()
            self.tally.kills += 1
            time.sleep(self.chance.uniform(0.0, 2.0))
            victim.start()
            self.say(f"SIGKILL {victim.name}, restarted")
        elif action == "leave" and len(running) > 1:
            leaver = self.chance.choice(running)
            code = leaver.leave()
            if code != 0:
                self.tally.crashes.append(f"{leaver.name} did not shut down cleanly on SIGTERM (exit {code})")
            self.tally.leaves += 1
            self.say(f"SIGTERM {leaver.name} (left the group, exit {code})")
        elif action == "zombie" and len(running) > 1:
            self.zombie(self.chance.choice(running))
        elif action.startswith("broker-") and self.broker is not None:
            how = signal.SIGTERM if action == "broker-term" else signal.SIGKILL
            down_s = self.chance.uniform(1.0, 5.0)
            self.say(f"broker {how.name}, down for {down_s:.1f} s")
            local_broker.restart(self.broker, how, down_s)
            self.tally.broker_restarts[how.name] += 1
            self.say("broker back")
        for instance in self.stopped():  # whoever left joins again at the next step
            instance.start()
            self.tally.joins += 1
            self.say(f"{instance.name} joined")

    def zombie(self, instance: Instance) -> None:
        """Freeze an instance until its session expires and its partitions move, then let it run
        on: its late writes must be fenced (they would show up as duplicates)."""
        instance.send(signal.SIGSTOP)
        frozen_s = self.plan.session_timeout_ms / 1000 + self.chance.uniform(3.0, 8.0)
        self.say(f"SIGSTOP {instance.name} for {frozen_s:.1f} s")
        deadline = time.monotonic() + frozen_s
        while time.monotonic() < deadline:
            time.sleep(0.2)
            self.supervise()
        instance.send(signal.SIGCONT)
        self.tally.zombies += 1
        self.say(f"SIGCONT {instance.name}")

    def run(self) -> Tally:
        started = time.monotonic()
        create_topics(admin_client(self.settings), self.settings)
        generator = StreamGenerator(seed=self.plan.seed, users=self.plan.users, bad_share=0.01)
        records = list(generator.records(self.plan.events))
        writer = StreamWriter(self.settings, records, self.plan.duration_s)
        live = self.instances[: max(2, self.plan.instances - 1)]  # the last one joins later
        for instance in live:
            instance.start()
        writer.start()
        self.say(f"{len(records):,} raw records ({self.plan.events:,} events) over {self.plan.duration_s:.0f} s, "
                 f"{len(live)} of {len(self.instances)} instances running")
        try:
            for at, action in self.plan.schedule():
                while time.monotonic() - started < at:
                    time.sleep(0.2)
                    self.supervise()
                self.act(action)
            writer.join()
            if writer.error is not None:
                raise writer.error
            for instance in self.stopped():
                instance.start()
            self.check()
        finally:
            for instance in self.instances:
                if instance.running:
                    instance.send(signal.SIGCONT)
                    code = instance.leave()
                    if code != 0:
                        self.tally.crashes.append(f"{instance.name} did not shut down cleanly at the end ({code})")
        self.tally.seconds = time.monotonic() - started
        return self.tally

    def check(self) -> None:
        raw = read_topic(self.settings.bootstrap_servers, self.settings.topics.raw, timeout_s=120)
        self.tally.raw_records = len(raw)
        expected = offline_outputs(raw, Path(tempfile.mkdtemp(dir=self.workdir)), self.settings.core_config())
        counts = count_records(expected)
        topics = self.settings.topics
        self.say(f"waiting for {counts} outputs")
        deadline = time.monotonic() + self.plan.finish_timeout_s
        while True:
            self.supervise()
            try:
                wait_for_outputs(self.settings, {topics.enriched: counts["events"], topics.deltas: counts["deltas"],
                                                 topics.dlq: counts["dlq"]}, timeout_s=5)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    self.say("outputs incomplete at the deadline: counting what is missing")
                    break
        time.sleep(1.0)  # anything late (a zombie's write) would land now
        got = kafka_outputs(self.settings)
        self.tally.records_checked = sum(counts.values()) + len(expected.state)
        self.tally.lost, self.tally.duplicated, self.tally.wrong = diff(expected, got)


def run_chaos(plan: ChaosPlan, bootstrap: str | None, workdir: Path) -> Tally:
    """Run `plan`; on `bootstrap` when given (no broker restarts then), else on a broker of its own."""
    broker = None
    if bootstrap is None:
        broker = local_broker.start_broker(workdir / "broker")
        bootstrap = broker.bootstrap
    elif plan.broker_sigterms or plan.broker_sigkills:
        raise ValueError("broker restarts need the suite's own broker: do not pass a bootstrap")
    try:
        return Chaos(plan, bootstrap, workdir, broker).run()
    finally:
        if broker is not None:
            broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    defaults = ChaosPlan()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--bootstrap", help="an existing broker (then no broker restarts)")
    parser.add_argument("--results", type=Path, default=Path("chaos-results.json"))
    args = vars(parser.parse_args(argv))
    bootstrap, results = args.pop("bootstrap"), args.pop("results")
    plan = ChaosPlan(**args)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    tally = run_chaos(plan, bootstrap, workdir)
    summary: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "plan": asdict(plan), **asdict(tally),
                               "ok": tally.ok, "logs": str(workdir)}
    results.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    restarts = tally.broker_restarts
    print(f"\n{tally.kills} SIGKILLs, {tally.leaves} leaves, {tally.joins} joins, {tally.zombies} zombies, "
          f"{restarts['SIGTERM']} broker SIGTERMs, {restarts['SIGKILL']} broker SIGKILLs in {tally.seconds:.0f} s")
    print(f"{tally.raw_records:,} raw records; {tally.records_checked:,} output records and states checked: "
          f"{tally.lost} lost, {tally.duplicated} duplicated, {tally.wrong} wrong; {len(tally.crashes)} crashes")
    for crash in tally.crashes:
        print(f"  crash: {crash}")
    print(f"{'PASS' if tally.ok else 'FAIL'}; details in {results}, worker logs in {workdir}")
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
