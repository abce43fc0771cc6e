"""Exactly-once through crashes (short form of the stress suite): a worker process is killed with
SIGKILL at random points, again and again, and restarted; at the end the read_committed outputs
and the compacted state still equal process-file on the same raw records."""

from __future__ import annotations

import random
import time
from pathlib import Path

from dev.loadgen import StreamGenerator
from dev.verify import (
    count_records,
    expected_counts,
    expected_outputs,
    produce_raw,
    read_topic,
    wait_for_outputs,
)
from dev.workers import Instance, worker_command
from tests.support.outputs import assert_same_outputs
from tests.support.settings import worker_settings
from tests.support.topics import create_all_topics

KILLS = 3


def test_sigkill_at_random_points_loses_and_duplicates_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Small transactions: the run lasts long enough for every kill to land mid-stream.
    # A killed member holds its partitions until its session times out: keep that short here.
    settings = worker_settings(kafka_bootstrap, commit_every_messages=20,
                               session_timeout_ms=6000, heartbeat_interval_ms=1000)
    create_all_topics(settings)
    produce_raw(settings, list(StreamGenerator(seed=21, users=200, bad_share=0.02).records(4000)))
    expected = expected_outputs(settings, tmp_path)
    chance = random.Random(21)
    worker = Instance("i0", worker_command(settings), tmp_path / "worker.log")
    for _ in range(KILLS):
        worker.start()
        time.sleep(chance.uniform(1.5, 4.0))  # start-up, restore, mid-batch or mid-commit
        worker.kill()
    partial = len(read_topic(kafka_bootstrap, settings.topics.enriched))
    worker.start()
    try:
        wait_for_outputs(settings, expected_counts(settings, expected), timeout_s=180)
    finally:
        assert worker.leave() == 0, "the last worker did not shut down cleanly on SIGTERM"
    assert partial < count_records(expected)["events"], "the kills should have happened before the end of the stream"
    assert_same_outputs(settings, expected)
