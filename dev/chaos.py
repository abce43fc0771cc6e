"""The stress suite (`make chaos`, `python -m dev.chaos`): exactly-once under crashes, rebalances,
broker restarts and zombies, checked record by record against process-file.

A producer writes a generated stream (many users, experiment events, user-property operations,
some bad input) into the raw topic for `duration_s` while 2-3 worker processes in one group are
killed with SIGKILL, stopped with SIGTERM, started again, frozen with SIGSTOP until their
partitions move (zombies) and resumed, and the broker itself is restarted with SIGTERM and SIGKILL.
With network faults in the plan, the workers reach the broker through a fault proxy
(dev/netproxy.py) that cuts their connections for less and for more than the session timeout,
blackholes them, and slows them down. A seeded schedule decides what happens when. At the end
the read_committed outputs and the compacted state are compared with `process-file` on the raw
topic's records: lost, duplicated and wrong records are counted, and each must be 0. A worker
that exits by itself (a crash: it should ride out every one of these faults) is counted too, and
restarted as a supervisor would.

The short form runs in `make test` (tests/integration/test_chaos.py); the long form is `make chaos`.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from dev import kafka
from dev.kafka import LocalBroker
from dev.loadgen import StreamGenerator
from dev.netproxy import NETWORK_ACTIONS, FaultProxy, network_fault, proxied_broker
from dev.verify import (
    StreamWriter,
    count_records,
    damage_report,
    diff,
    expected_counts,
    kafka_outputs,
    offline_outputs,
    read_topic,
    wait_for_outputs,
)
from dev.workers import Instance, settings_for, worker_command
from worker.runtime.topics import admin_client, create_topics

ACTIONS = ("kill", "restore-kill", "wipe", "leave", "join", "zombie", "broker-term", "broker-kill", *NETWORK_ACTIONS)


@dataclass(frozen=True)
class ChaosPlan:
    seed: int = 1
    events: int = 20_000
    users: int = 500
    duration_s: float = 40.0  # the producer spreads the stream over this; faults happen meanwhile
    instances: int = 3
    partitions: int = 6
    kills: int = 4
    restore_kills: int = 1  # SIGKILL again right after a restart: in the middle of its restore
    wipes: int = 1  # SIGKILL, its state_dir removed, restarted: a full restore from the changelogs
    leaves: int = 1  # SIGTERM: a clean leave, joined again later
    zombies: int = 1
    broker_sigterms: int = 0
    broker_sigkills: int = 0
    net_cuts_short: int = 0  # connections reset and refused for less than the session timeout
    net_cuts_long: int = 0  # ... for longer: every member is fenced and joins again
    net_blackholes: int = 0  # nothing gets through, nothing is refused, for about a session timeout
    net_latency: int = 0  # 50-300 ms each way for 5-10 s
    session_timeout_ms: int = 6000
    finish_timeout_s: float = 300.0

    @property
    def network_faults(self) -> int:
        return self.net_cuts_short + self.net_cuts_long + self.net_blackholes + self.net_latency

    def schedule(self) -> list[tuple[float, str]]:
        """(seconds from the start, action), spread over the run with a seeded jitter."""
        actions = (["kill"] * self.kills + ["restore-kill"] * self.restore_kills + ["wipe"] * self.wipes
                   + ["leave"] * self.leaves + ["zombie"] * self.zombies
                   + ["broker-term"] * self.broker_sigterms + ["broker-kill"] * self.broker_sigkills
                   + ["net-cut-short"] * self.net_cuts_short + ["net-cut-long"] * self.net_cuts_long
                   + ["net-blackhole"] * self.net_blackholes + ["net-latency"] * self.net_latency)
        chance = random.Random(self.seed)
        chance.shuffle(actions)
        step = self.duration_s / (len(actions) + 1)
        return [(step * (n + 1) + chance.uniform(-step / 3, step / 3), action) for n, action in enumerate(actions)]


@dataclass
class Tally:
    """What happened and what was checked; `ok` when nothing was lost, duplicated or wrong."""

    kills: int = 0
    restore_kills: int = 0
    wipes: int = 0
    leaves: int = 0
    joins: int = 0
    zombies: int = 0
    broker_restarts: dict[str, int] = field(default_factory=lambda: {"SIGTERM": 0, "SIGKILL": 0})
    network: dict[str, int] = field(default_factory=dict)  # network faults by action
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


class Chaos:
    def __init__(self, plan: ChaosPlan, bootstrap: str, workdir: Path, broker: LocalBroker | None,
                 proxy: FaultProxy | None = None) -> None:
        self.plan, self.workdir, self.broker, self.proxy = plan, workdir, broker, proxy
        self.settings = settings_for(
            bootstrap, f"chaos{uuid.uuid4().hex[:6]}", partitions=plan.partitions, transaction_timeout_ms=10_000,
            commit_interval_ms=100, session_timeout_ms=plan.session_timeout_ms, heartbeat_interval_ms=1000)
        # The producer and the checks reach the broker itself, never through the fault proxy.
        self.harness = self.settings.model_copy(
            update={"bootstrap_servers": broker.reachable if broker is not None else bootstrap})
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
        elif action == "restore-kill" and running:
            self.kill_restoring(self.chance.choice(running))
        elif action == "wipe" and running:
            self.wipe(self.chance.choice(running))
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
            kafka.restart(self.broker, how, down_s)
            self.tally.broker_restarts[how.name] += 1
            self.say("broker back")
        elif action.startswith("net-") and self.proxy is not None:
            self.network(self.proxy, action)
        for instance in self.stopped():  # whoever left joins again at the next step
            instance.start()
            self.tally.joins += 1
            self.say(f"{instance.name} joined")

    def network(self, proxy: FaultProxy, action: str) -> None:
        """A network fault between the workers and the broker, watched to its end."""
        what, seconds = network_fault(proxy, action, self.chance, self.plan.session_timeout_ms / 1000)
        self.say(f"network: {what}")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.2)
            self.supervise()
        proxy.set_latency(0.0)
        self.tally.network[action] = self.tally.network.get(action, 0) + 1
        self.say("network: healed")

    def kill_restoring(self, victim: Instance) -> None:
        """SIGKILL, restart, and SIGKILL again while it restores (its stores half written), restart."""
        victim.kill()
        victim.start()
        time.sleep(self.chance.uniform(0.5, 2.0))  # started, joined, restoring
        victim.kill()
        self.tally.kills += 2
        self.tally.restore_kills += 1
        victim.start()
        self.say(f"SIGKILL {victim.name}, restarted, SIGKILL again while it restored, restarted")

    def wipe(self, victim: Instance) -> None:
        """SIGKILL, remove the instance's state_dir (a lost volume), restart: it restores in full."""
        victim.kill()
        self.tally.kills += 1
        shutil.rmtree(self.settings.state_dir / self.settings.group_id / victim.name, ignore_errors=True)
        self.tally.wipes += 1
        victim.start()
        self.say(f"SIGKILL {victim.name}, its state_dir wiped, restarted")

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
        create_topics(admin_client(self.harness), self.harness)
        generator = StreamGenerator(seed=self.plan.seed, users=self.plan.users, bad_share=0.01)
        records = list(generator.records(self.plan.events))
        writer = StreamWriter(self.harness, records, self.plan.duration_s)
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
        raw = read_topic(self.harness.bootstrap_servers, self.settings.topics.raw, timeout_s=120)
        self.tally.raw_records = len(raw)
        expected = offline_outputs(raw, Path(tempfile.mkdtemp(dir=self.workdir)), self.settings.core_config())
        counts = count_records(expected)
        self.say(f"waiting for {counts} outputs")
        deadline = time.monotonic() + self.plan.finish_timeout_s
        while True:
            self.supervise()
            try:
                wait_for_outputs(self.harness, expected_counts(self.settings, expected), timeout_s=5)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    self.say("outputs incomplete at the deadline: counting what is missing")
                    break
        time.sleep(1.0)  # anything late (a zombie's write) would land now
        got = kafka_outputs(self.harness)
        self.tally.records_checked = sum(counts.values()) + len(expected.state)
        self.tally.lost, self.tally.duplicated, self.tally.wrong = diff(expected, got)
        if not self.tally.ok:  # which users, and how: beside the worker logs
            report = self.workdir / "damage.json"
            report.write_bytes(orjson.dumps(damage_report(expected, got), option=orjson.OPT_INDENT_2))
            self.say(f"damaged users, first of each kind: {report}")


def run_chaos(plan: ChaosPlan, bootstrap: str | None, workdir: Path) -> Tally:
    """Run `plan`; on `bootstrap` when given (no broker restarts nor network faults then), else on a
    broker of its own (behind a fault proxy when the plan has network faults)."""
    broker, proxy = None, None
    if bootstrap is None:
        if plan.network_faults:
            broker, proxy = proxied_broker(workdir / "broker")
        else:
            broker = kafka.start_broker(workdir / "broker")
        bootstrap = broker.bootstrap
    elif plan.broker_sigterms or plan.broker_sigkills or plan.network_faults:
        raise ValueError("broker restarts and network faults need the suite's own broker: do not pass a bootstrap")
    try:
        return Chaos(plan, bootstrap, workdir, broker, proxy).run()
    finally:
        if broker is not None:
            broker.stop()
        if proxy is not None:
            proxy.stop()


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
    print(f"\n{tally.kills} SIGKILLs ({tally.restore_kills} in a restore, {tally.wipes} with state_dir wiped), "
          f"{tally.leaves} leaves, {tally.joins} joins, {tally.zombies} zombies, "
          f"{restarts['SIGTERM']} broker SIGTERMs, {restarts['SIGKILL']} broker SIGKILLs, "
          f"network faults {tally.network or 'none'} in {tally.seconds:.0f} s")
    print(f"{tally.raw_records:,} raw records; {tally.records_checked:,} output records and states checked: "
          f"{tally.lost} lost, {tally.duplicated} duplicated, {tally.wrong} wrong; {len(tally.crashes)} crashes")
    for crash in tally.crashes:
        print(f"  crash: {crash}")
    print(f"{'PASS' if tally.ok else 'FAIL'}; details in {results}, worker logs in {workdir}")
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
