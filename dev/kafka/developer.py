"""The developer's broker: one local broker kept running between commands (`up`, `down`,
`status`), recorded in .run/kafka.json so the demo, the benchmarks and a shell find it. A record
whose broker is gone is cleaned up on sight.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from dev import files
from dev.files import locked, write_json
from dev.kafka.config import COMMAND
from dev.kafka.node import DATA_DIR_PREFIX, start
from dev.kafka.process import LocalBroker, answers

RUN_DIR = files.RUN_DIR
RUN_FILE = RUN_DIR / "kafka.json"


def say(message: str) -> None:
    print(f"local-kafka: {message}", file=sys.stderr)


def recorded_broker() -> LocalBroker | None:
    """The broker `up` recorded in .run/kafka.json if it still runs; a stale record is cleaned up."""
    try:
        record = json.loads(RUN_FILE.read_text())
        broker = LocalBroker(
            str(record["bootstrap"]), int(record["pid"]), Path(record["data_dir"]), str(record["started_at"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        RUN_FILE.unlink(missing_ok=True)
        say(f"removed the unreadable run file {RUN_FILE}")
        return None
    if broker.is_alive():
        return broker
    # Only our own data dirs are removed, whatever the file says.
    if broker.data_dir.parent == RUN_DIR and broker.data_dir.name.startswith(DATA_DIR_PREFIX):
        shutil.rmtree(broker.data_dir, ignore_errors=True)
    RUN_FILE.unlink(missing_ok=True)
    say(f"the recorded broker (pid {broker.pid}) was not running: removed its stale data dir and run file")
    return None


def up(port: int | None = None) -> LocalBroker:
    """Reuse the recorded broker if it answers, else start one and record it in .run/kafka.json."""
    with locked(RUN_DIR / "kafka.lock"):
        broker = recorded_broker()
        if broker is not None and answers(broker.bootstrap, timeout_s=5.0):
            say(f"already running at {broker.bootstrap} (pid {broker.pid}, since {broker.started_at})")
            return broker
        if broker is not None:
            say(f"the recorded broker (pid {broker.pid}) does not answer: stopping it and starting a new one")
            broker.stop()
            RUN_FILE.unlink(missing_ok=True)
        broker = start(RUN_DIR, port, tie_to_caller=False)
        write_json(RUN_FILE, broker.record())
        say(
            f"started at {broker.bootstrap} in {broker.start_s:.1f} s (format {broker.format_s:.1f} s), "
            f"pid {broker.pid}, data {broker.data_dir}"
        )
        return broker


def down() -> bool:
    """Stop the recorded broker and remove its data; False when none was running."""
    with locked(RUN_DIR / "kafka.lock"):
        broker = recorded_broker()
        if broker is None:
            say("no local broker is running")
            return False
        started = time.monotonic()
        broker.stop()
        RUN_FILE.unlink(missing_ok=True)
        say(f"stopped the broker at {broker.bootstrap} (pid {broker.pid}) in {time.monotonic() - started:.1f} s")
        return True


def status() -> LocalBroker | None:
    broker = recorded_broker()
    if broker is None:
        print("not running")
    elif answers(broker.bootstrap, timeout_s=3.0):
        print(f"running at {broker.bootstrap} (pid {broker.pid}, since {broker.started_at}, data {broker.data_dir})")
    else:
        print(f"running but not answering at {broker.bootstrap} (pid {broker.pid}); `{COMMAND} up` restarts it")
    return broker
