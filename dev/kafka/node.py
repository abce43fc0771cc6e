"""Starting the local broker: a fresh data dir under a root (stale ones of killed runs swept
first), formatted as a standalone KRaft node with a new cluster id, then `kafka.Kafka` on free
loopback ports until it answers; and restarting one in place (same data dir and ports), as the
stress suite does to a broker.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dev.children import free_ports
from dev.errors import LocalBrokerError, PortInUseError
from dev.files import RUN_DIR, write_json
from dev.kafka.config import choose_ports, new_cluster_id, render_server_properties
from dev.kafka.jars import fetch_jars
from dev.kafka.java import java_command, require_java
from dev.kafka.process import (
    BROKER_RECORD,
    LOG_TAIL_LINES,
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    LocalBroker,
    is_broker_process,
    launch,
    terminate,
    wait_ready,
)

FORMAT_TIMEOUT_S = 120.0
DATA_DIR_PREFIX = "kafka-data-"
# A data dir without a broker record may belong to a start in progress in another process.
UNRECORDED_DIR_GRACE_S = 600.0


def start_broker(data_root: Path | None = None, port: int | None = None,
                 advertised_port: int | None = None) -> LocalBroker:
    """Start a new broker in a fresh data dir under `data_root` (default .run/) on free loopback ports.

    `advertised_port`: clients are sent to that port, where a fault proxy (dev/netproxy.py) forwards
    to the broker's `port`; the broker's `direct` address bypasses it. Independent of the broker
    `up` records. On Linux the broker ends when the calling thread dies.
    """
    return start(data_root or RUN_DIR, port, tie_to_caller=True, advertised_port=advertised_port)


def start(data_root: Path, port: int | None, tie_to_caller: bool, advertised_port: int | None = None) -> LocalBroker:
    java = require_java()
    lib_dir = fetch_jars()
    data_root = data_root.resolve()  # absolute: log.dirs, and how a broker's command line names its dir
    data_root.mkdir(parents=True, exist_ok=True)
    sweep_stale_data_dirs(data_root)
    if port is None:  # a free port can be taken by another process before the broker binds it: retry once
        with contextlib.suppress(PortInUseError):
            return start_once(java, lib_dir, data_root, port, tie_to_caller, advertised_port)
    return start_once(java, lib_dir, data_root, port, tie_to_caller, advertised_port)


def start_once(java: str, lib_dir: Path, data_root: Path, port: int | None, tie_to_caller: bool,
               advertised_port: int | None = None) -> LocalBroker:
    started = time.monotonic()
    broker_port, controller_port = choose_ports(port)
    direct_port = free_ports(1)[0] if advertised_port is not None else None
    data_dir = Path(tempfile.mkdtemp(prefix=DATA_DIR_PREFIX, dir=data_root))
    broker: LocalBroker | None = None
    try:
        properties = data_dir / "server.properties"
        proxy = None if advertised_port is None or direct_port is None else (advertised_port, direct_port)
        properties.write_text(render_server_properties(broker_port, controller_port, data_dir / "logs", proxy))
        command = java_command(java, lib_dir, data_dir)
        format_storage(command, data_dir, properties)
        format_s = time.monotonic() - started
        process = launch([*command, "kafka.Kafka", str(properties)], data_dir, tie_to_caller)
        broker = LocalBroker(
            f"127.0.0.1:{advertised_port or broker_port}",
            process.pid,
            data_dir,
            datetime.now(UTC).isoformat(timespec="seconds"),
            format_s,
            process=process,
            direct=f"127.0.0.1:{direct_port}" if direct_port is not None else "",
        )
        write_json(data_dir / BROKER_RECORD, broker.record())
        wait_ready(broker, started + READY_TIMEOUT_S)
    except BaseException:
        if broker is not None:
            terminate(broker, 5.0)
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    broker.start_s = time.monotonic() - started
    return broker


def restart(broker: LocalBroker, signum: signal.Signals = signal.SIGTERM, down_s: float = 0.0) -> None:
    """Stop `broker` with `signum` (SIGTERM: a controlled shutdown; SIGKILL: a crash), leave it down
    for `down_s`, then start it again on the same data dir and ports. For the chaos suite."""
    terminate(broker, STOP_TIMEOUT_S, signum)
    time.sleep(down_s)
    started = time.monotonic()
    properties = broker.data_dir / "server.properties"
    command = java_command(require_java(), fetch_jars(), broker.data_dir)
    process = launch([*command, "kafka.Kafka", str(properties)], broker.data_dir, tie_to_caller=True, append=True)
    broker.pid, broker.process = process.pid, process
    write_json(broker.data_dir / BROKER_RECORD, broker.record())
    wait_ready(broker, started + READY_TIMEOUT_S)


def format_storage(java_command: list[str], data_dir: Path, properties: Path) -> None:
    command = [
        *java_command,
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        "-t",
        new_cluster_id(),
        "-c",
        str(properties),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S, check=False)
    if result.returncode != 0:
        output = "\n".join("  " + line for line in (result.stdout + result.stderr).splitlines()[-LOG_TAIL_LINES:])
        raise LocalBrokerError(f"formatting the data dir failed (exit {result.returncode}):\n{output}")


def sweep_stale_data_dirs(data_root: Path) -> list[Path]:
    """Remove data dirs under `data_root` whose broker is gone (left by killed runs)."""
    removed = []
    for data_dir in data_root.glob(DATA_DIR_PREFIX + "*"):
        try:
            pid = int(json.loads((data_dir / BROKER_RECORD).read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                if time.time() - data_dir.stat().st_mtime < UNRECORDED_DIR_GRACE_S:
                    continue
        else:
            if is_broker_process(pid, data_dir):
                continue
        shutil.rmtree(data_dir, ignore_errors=True)
        removed.append(data_dir)
    return removed
