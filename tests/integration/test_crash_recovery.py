"""Exactly-once through crashes (short form of the stress suite): a worker process is killed with
SIGKILL at random points, again and again, and restarted; at the end the read_committed outputs
and the compacted state still equal process-file on the same raw records."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

from dev.loadgen import StreamGenerator
from dev.verify import (
    count_records,
    expected_counts,
    kafka_outputs,
    offline_outputs,
    produce_raw,
    read_topic,
    wait_for_outputs,
)
from dev.workers import worker_command
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
    raw = read_topic(kafka_bootstrap, settings.topics.raw)
    expected = offline_outputs(raw, tmp_path, settings.core_config())
    counts = count_records(expected)
    chance = random.Random(21)
    log = (tmp_path / "worker.log").open("ab")
    for _ in range(KILLS):
        worker = subprocess.Popen(worker_command(settings), stdout=log, stderr=log)
        time.sleep(chance.uniform(1.5, 4.0))  # start-up, restore, mid-batch or mid-commit
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    partial = len(read_topic(kafka_bootstrap, settings.topics.enriched))
    worker = subprocess.Popen(worker_command(settings), stdout=log, stderr=log)
    try:
        wait_for_outputs(settings, expected_counts(settings, expected), timeout_s=180)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    got = kafka_outputs(settings)
    assert partial < counts["events"], "the kills should have happened before the end of the stream"
    assert count_records(got) == counts, "records lost or duplicated"
    assert got.events == expected.events
    assert got.deltas == expected.deltas
    assert got.dlq == expected.dlq
    assert got.state == expected.state
