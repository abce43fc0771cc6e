"""The stress suite's short form (the long form is `make chaos`): worker processes killed (also
in the middle of a restore, and with their state_dir wiped), stopped, frozen and restarted, and
the broker restarted, while a producer writes; the committed outputs and the state must still
equal process-file on the raw topic: 0 lost, 0 duplicated, 0 wrong, and no worker exits on its
own."""

from __future__ import annotations

from pathlib import Path

from dev.chaos import ChaosPlan, run_chaos


def test_instances_die_leave_join_and_come_back_as_zombies(kafka_bootstrap: str, tmp_path: Path) -> None:
    plan = ChaosPlan(seed=6, events=8000, users=300, duration_s=30, instances=3, kills=3, restore_kills=1, wipes=1,
                     leaves=1, zombies=1)
    tally = run_chaos(plan, kafka_bootstrap, tmp_path)
    # a kill in a restore is two SIGKILLs; a wipe is one
    assert (tally.kills, tally.restore_kills, tally.wipes) == (3 + 2 + 1, 1, 1), "every fault of the plan happened"
    assert (tally.leaves, tally.zombies) == (1, 1), "every fault of the plan happened"
    assert tally.records_checked > 8000
    assert (tally.lost, tally.duplicated, tally.wrong) == (0, 0, 0)
    assert tally.crashes == []


def test_the_workers_ride_out_broker_restarts(tmp_path: Path) -> None:
    # Its own broker: the suite restarts it in place (SIGTERM, then SIGKILL) on the same data dir.
    plan = ChaosPlan(seed=7, events=6000, users=300, duration_s=30, instances=2, kills=1, restore_kills=0, wipes=0,
                     leaves=0, zombies=0, broker_sigterms=1, broker_sigkills=1)
    tally = run_chaos(plan, None, tmp_path)
    assert tally.broker_restarts == {"SIGTERM": 1, "SIGKILL": 1}
    assert tally.records_checked > 6000
    assert (tally.lost, tally.duplicated, tally.wrong) == (0, 0, 0)
    assert tally.crashes == []
