"""`experiment-worker run --processes 2` on a real broker: two group members from one command,
a child SIGKILLed mid-stream is restarted, one /metrics counts for both, SIGTERM stops them all,
and the outputs still equal process-file's."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dev.children import free_ports
from dev.loadgen import StreamGenerator
from dev.verify import expected_counts, expected_outputs, produce_raw, wait_for_outputs
from dev.workers import RUN_SETTINGS, as_flags
from tests.support.outputs import assert_same_outputs
from tests.support.settings import worker_settings
from tests.support.topics import create_all_topics

STARTED = re.compile(r"started worker process (\d) \(pid (\d+)\)")


def started(log: Path) -> list[tuple[int, int]]:
    return [(int(number), int(pid)) for number, pid in STARTED.findall(log.read_text(errors="replace"))]


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_two_supervised_processes_survive_a_killed_child_and_agree(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = worker_settings(kafka_bootstrap, partitions=4, commit_every_messages=50,
                               session_timeout_ms=6000, heartbeat_interval_ms=1000)
    create_all_topics(settings)
    produce_raw(settings, list(StreamGenerator(seed=41, users=200, bad_share=0.02).records(6000)))
    expected = expected_outputs(settings, tmp_path)
    (port,) = free_ports(1)
    log = tmp_path / "supervisor.log"
    command = [sys.executable, "-m", "worker.cli", "run", "--processes", "2",
               *as_flags(settings, RUN_SETTINGS - {"metrics_port"}), "--set", f"metrics_port={port}"]
    with log.open("wb") as output:
        supervisor = subprocess.Popen(command, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + 60
        while len(started(log)) < 2:
            assert time.monotonic() < deadline and supervisor.poll() is None, log.read_text()[-2000:]
            time.sleep(0.1)
        time.sleep(3)  # mid-stream
        victim = started(log)[0][1]
        subprocess.run(["kill", "-9", str(victim)], check=True)
        while len(started(log)) < 3:
            assert time.monotonic() < deadline + 60, "the killed child was not restarted"
            time.sleep(0.1)
        wait_for_outputs(settings, expected_counts(settings, expected), timeout_s=180)
        merged = scrape(port)
        consumed = [float(line.rsplit(" ", 1)[1]) for line in merged.splitlines()
                    if line.startswith("experiment_worker_messages_in_total{")]
        assert sum(consumed) > 0, merged[:2000]
    finally:
        supervisor.send_signal(signal.SIGTERM)
        status = supervisor.wait(90)
    assert status == 0, log.read_text()[-3000:]
    children = {pid for _, pid in started(log)}
    alive = subprocess.run(["ps", "-o", "pid=", "-p", ",".join(map(str, children))], capture_output=True, text=True)
    assert alive.stdout.split() == [], "children outlived the supervisor"
    assert_same_outputs(settings, expected)
