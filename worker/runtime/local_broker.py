"""A real single-node Apache Kafka broker (KRaft) for dev, demo and integration tests, without Docker.

`fetch_jars` copies the broker's jars from Maven Central into .cache/kafka/lib once per
deploy/local-kafka/pom.xml; `start_broker` formats a fresh data dir and starts `kafka.Kafka` on free
loopback ports. `up`, `down` and `status` keep one such broker for the developer, recorded in
.run/kafka.json. Run as `python -m worker.runtime.local_broker fetch|up|down|status`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from worker.errors import WorkerError

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "deploy" / "local-kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "deploy" / "local-kafka" / "log4j2.properties"
LIB_DIR = REPO_ROOT / ".cache" / "kafka" / "lib"
MAVEN_REPO = REPO_ROOT / ".cache" / "maven-repo"
RUN_DIR = REPO_ROOT / ".run"
RUN_FILE = RUN_DIR / "kafka.json"

COMMAND = "python -m worker.runtime.local_broker"
COPY_DEPENDENCIES = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
# Small and quick to start on a 2-core machine; an OOM exits instead of leaving a hung broker.
JVM_OPTIONS = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:+ExitOnOutOfMemoryError")
MIN_JAVA = 17
FETCH_TIMEOUT_S = 900.0
FORMAT_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 20
FETCH_MARKER = ".fetched.json"
DATA_DIR_PREFIX = "kafka-data-"
BROKER_RECORD = "broker.json"
BROKER_OUTPUT = "broker.out"
# A data dir without a broker record may belong to a start in progress in another process.
UNRECORDED_DIR_GRACE_S = 600.0
JAVA_EXCEPTION = re.compile(r"^\S*(Exception|Error)\b.*: ")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
MAVEN_NETWORK_SIGNS = (
    "could not transfer",
    "unknown host",
    "unknownhost",
    "connection refused",
    "connect timed out",
    "read timed out",
    "network is unreachable",
    "no route to host",
    "pkix",
    "failed to connect",
)


class LocalBrokerError(WorkerError):
    """The local broker cannot be fetched, started or stopped; str(error) names the problem and the fix."""


class PortInUseError(LocalBrokerError):
    """A port the broker needs is taken."""


@dataclass
class LocalBroker:
    """A running local broker. `stop()` (or leaving the `with` block) ends it and removes its data dir."""

    bootstrap: str
    pid: int
    data_dir: Path
    started_at: str
    format_s: float = 0.0
    start_s: float = 0.0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def is_alive(self) -> bool:
        return is_broker_process(self.pid, self.data_dir)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        terminate(self, timeout_s)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def record(self) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap,
            "pid": self.pid,
            "data_dir": str(self.data_dir),
            "started_at": self.started_at,
        }

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


# --- jars --------------------------------------------------------------------------------------


def fetch_jars() -> Path:
    """Copy the broker's runtime jars into LIB_DIR unless they already match pom.xml; return LIB_DIR."""
    pom_sha256 = hashlib.sha256(POM.read_bytes()).hexdigest()
    if jars_ready(LIB_DIR, pom_sha256):
        return LIB_DIR
    with locked(LIB_DIR.parent / "fetch.lock"):
        if not jars_ready(LIB_DIR, pom_sha256):  # another process may have fetched while we waited
            download_jars(pom_sha256)
    return LIB_DIR


def jars_ready(lib_dir: Path, pom_sha256: str) -> bool:
    """True when the marker written after the last complete fetch matches this pom and every jar is there."""
    try:
        marker = json.loads((lib_dir / FETCH_MARKER).read_text())
        jars = list(marker["jars"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return marker.get("pom_sha256") == pom_sha256 and bool(jars) and all((lib_dir / jar).is_file() for jar in jars)


def download_jars(pom_sha256: str) -> None:
    # Into a staging dir, swapped in whole: an interrupted fetch never looks complete, and a pom
    # change never leaves old jar versions beside the new ones on the class path.
    require_java()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalBrokerError(
            "mvn not found on PATH: install Apache Maven 3.6+ (e.g. `apt-get install maven`), which fetches the "
            f"Kafka jars from Maven Central once, then run `{COMMAND} fetch`"
        )
    staging = LIB_DIR.with_name(LIB_DIR.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(POM),
        COPY_DEPENDENCIES,
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
        f"-Dmaven.repo.local={MAVEN_REPO}",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LocalBrokerError(f"mvn took over {FETCH_TIMEOUT_S:.0f} s: {maven_fix()}") from exc
    jars = sorted(jar.name for jar in staging.glob("*.jar"))
    if result.returncode != 0 or not jars:
        raise LocalBrokerError(describe_mvn_failure(result.stdout + result.stderr))
    (staging / FETCH_MARKER).write_text(json.dumps({"pom_sha256": pom_sha256, "jars": jars}))
    previous = LIB_DIR.with_name(LIB_DIR.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if LIB_DIR.exists():
        LIB_DIR.rename(previous)
    staging.rename(LIB_DIR)
    shutil.rmtree(previous, ignore_errors=True)


def maven_fix() -> str:
    return (
        "check access to https://repo.maven.apache.org (or set a proxy or mirror in ~/.m2/settings.xml), "
        f"then run `{COMMAND} fetch` again"
    )


def describe_mvn_failure(output: str) -> str:
    """One line from mvn's output: what failed and what to do about it."""
    lines = [ANSI_ESCAPE.sub("", line).strip() for line in output.splitlines()]
    errors = [line.removeprefix("[ERROR]").removesuffix("-> [Help 1]").strip() for line in lines if "[ERROR]" in line]
    first = next((line for line in errors if line), next((line for line in reversed(lines) if line), "no output"))
    # The root cause is at the end of Maven's long chained message.
    detail = first if len(first) <= 240 else f"{first[:100]} … {first[-130:]}"
    if any(sign in output.lower() for sign in MAVEN_NETWORK_SIGNS):
        return f"cannot download the Kafka jars from Maven Central ({detail}): {maven_fix()}"
    return f"mvn could not copy the Kafka jars ({detail}): check {POM.relative_to(REPO_ROOT)}, then {maven_fix()}"


# --- pure parts ----------------------------------------------------------------------------------


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding (22 chars), as `kafka-storage random-uuid`."""
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # the tool's argument parser would read it as an option
            return cluster_id


def render_server_properties(broker_port: int, controller_port: int, log_dir: Path) -> str:
    """server.properties for one node that is both broker and KRaft controller, on 127.0.0.1."""
    listeners = f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": listeners,  # `format --standalone` reads the controller's address here
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir.resolve()),
        "num.partitions": "1",
        "default.replication.factor": "1",
        # One replica, and one partition per internal topic: the default 50 makes the first
        # consumer group or transaction wait for 50 partitions to be created.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # KIP-848 groups take their session timeout from the broker (45 s at least by default); the
        # tests set a few seconds per group (`session_timeout_ms`), so a killed member goes quickly.
        "group.consumer.min.session.timeout.ms": "1000",
        "group.consumer.min.heartbeat.interval.ms": "500",
        # An abandoned transaction would otherwise block read_committed readers for minutes.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        "log.cleaner.dedupe.buffer.size": "16777216",  # the 128 MiB default would take a quarter of the heap
        "auto.create.topics.enable": "false",  # topics come from the project's own tooling, as in production
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def free_ports(count: int = 2) -> list[int]:
    """Distinct loopback ports that were free a moment ago (all held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def parse_java_major(version_output: str) -> int | None:
    """17 from `openjdk version "17.0.15"`, 8 from `java version "1.8.0_392"`."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match[1])
    return int(match[2] or 0) if major == 1 else major


def require_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    home_java = Path(java_home, "bin", "java") if java_home else None
    java = str(home_java) if home_java and home_java.is_file() else shutil.which("java")
    if java is None:
        raise LocalBrokerError(
            "java not found on PATH: install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`) "
            "or put its bin/ directory on PATH"
        )
    output = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    major = parse_java_major(output)
    if major is not None and major < MIN_JAVA:
        raise LocalBrokerError(f"{java} is Java {major}, Kafka 4 needs 17+: install a JDK 17+ and put it first on PATH")
    return java


# --- processes -----------------------------------------------------------------------------------


def is_broker_process(pid: int, data_dir: Path) -> bool:
    """True when `pid` is a live kafka.Kafka started on `data_dir` (not a reused pid, not a zombie)."""
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS)
        ps = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False)
        command_line = ps.stdout
    return "kafka.Kafka" in command_line and str(data_dir) in command_line


def terminate(broker: LocalBroker, timeout_s: float, signum: signal.Signals = signal.SIGTERM) -> None:
    """Signal the broker's process group (SIGTERM by default), then SIGKILL if it is still there
    after `timeout_s`."""
    if broker.is_alive():
        signal_group(broker.pid, signum)
        if not wait_gone(broker, timeout_s):
            signal_group(broker.pid, signal.SIGKILL)
            wait_gone(broker, 5.0)
    if broker.process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            broker.process.wait(timeout=1.0)  # reap our own child


def signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)  # started with start_new_session: the group id is the broker's pid


def wait_gone(broker: LocalBroker, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if broker.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                broker.process.wait(timeout=0.1)
        if not broker.is_alive():
            return True
        time.sleep(0.1)
    return False


def die_with_caller() -> Callable[[], None] | None:
    """Linux: the broker gets SIGTERM when the thread that started it dies, even by SIGKILL, so a
    killed test run leaves no broker behind. Elsewhere the sweep in `start_broker` cleans up later."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    caller = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() != caller:  # the caller died before prctl took effect
            os._exit(1)

    return preexec


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


def answers(bootstrap: str, timeout_s: float) -> bool:
    """True when a broker at `bootstrap` answers a metadata request with at least one broker."""
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout_s, 1.0)).close()
    except OSError:
        return False  # not listening yet: skip the client, whose connect errors would fill stderr
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return False


def read_output(data_dir: Path) -> str:
    try:
        return (data_dir / BROKER_OUTPUT).read_text(errors="replace")
    except OSError:
        return ""


# --- start ---------------------------------------------------------------------------------------


def start_broker(data_root: Path | None = None, port: int | None = None) -> LocalBroker:
    """Start a new broker in a fresh data dir under `data_root` (default .run/) on free loopback ports.

    Independent of the broker `up` records. On Linux the broker ends when the calling thread dies.
    """
    return start(data_root or RUN_DIR, port, tie_to_caller=True)


def start(data_root: Path, port: int | None, tie_to_caller: bool) -> LocalBroker:
    java = require_java()
    lib_dir = fetch_jars()
    data_root = data_root.resolve()  # absolute: log.dirs, and how a broker's command line names its dir
    data_root.mkdir(parents=True, exist_ok=True)
    sweep_stale_data_dirs(data_root)
    if port is None:  # a free port can be taken by another process before the broker binds it: retry once
        with contextlib.suppress(PortInUseError):
            return start_once(java, lib_dir, data_root, port, tie_to_caller)
    return start_once(java, lib_dir, data_root, port, tie_to_caller)


def choose_ports(port: int | None) -> tuple[int, int]:
    if port is None:
        broker_port, controller_port = free_ports(2)
        return broker_port, controller_port
    if port_in_use(port):
        raise PortInUseError(
            f"port 127.0.0.1:{port} is already in use: stop what listens there (`ss -ltnp 'sport = :{port}'`) "
            "or choose another --port"
        )
    return port, next(p for p in free_ports(2) if p != port)


def start_once(java: str, lib_dir: Path, data_root: Path, port: int | None, tie_to_caller: bool) -> LocalBroker:
    started = time.monotonic()
    broker_port, controller_port = choose_ports(port)
    data_dir = Path(tempfile.mkdtemp(prefix=DATA_DIR_PREFIX, dir=data_root))
    broker: LocalBroker | None = None
    try:
        properties = data_dir / "server.properties"
        properties.write_text(render_server_properties(broker_port, controller_port, data_dir / "logs"))
        command = java_command(java, lib_dir, data_dir)
        format_storage(command, data_dir, properties)
        format_s = time.monotonic() - started
        process = launch([*command, "kafka.Kafka", str(properties)], data_dir, tie_to_caller)
        broker = LocalBroker(
            f"127.0.0.1:{broker_port}",
            process.pid,
            data_dir,
            datetime.now(UTC).isoformat(timespec="seconds"),
            format_s,
            process=process,
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


def java_command(java: str, lib_dir: Path, data_dir: Path) -> list[str]:
    return [
        java,
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={data_dir}",
        "-cp",
        f"{lib_dir}/*",
    ]


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


def launch(
    command: list[str], data_dir: Path, tie_to_caller: bool, append: bool = False
) -> subprocess.Popen[bytes]:
    with (data_dir / BROKER_OUTPUT).open("ab" if append else "wb") as output:
        return subprocess.Popen(
            command,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the caller's terminal does not reach the broker
            preexec_fn=die_with_caller() if tie_to_caller else None,
        )


def wait_ready(broker: LocalBroker, deadline: float) -> None:
    assert broker.process is not None
    while time.monotonic() < deadline:
        exit_code = broker.process.poll()
        if exit_code is not None:
            raise start_failure(broker, f"the broker exited with code {exit_code} while starting")
        if answers(broker.bootstrap, timeout_s=1.0):
            return
        time.sleep(0.2)
    raise start_failure(broker, f"the broker did not answer within {READY_TIMEOUT_S:.0f} s")


def start_failure(broker: LocalBroker, what: str) -> LocalBrokerError:
    output = read_output(broker.data_dir)
    # The first exception message names the cause; the stack trace and shutdown lines follow it.
    cause = next((line.strip() for line in output.splitlines() if JAVA_EXCEPTION.search(line)), "")
    tail = "\n".join("  " + line for line in output.splitlines()[-LOG_TAIL_LINES:]) or "  (no output)"
    summary = f"{what}: {cause}" if cause else what
    if "Address already in use" in output:
        return PortInUseError(f"{summary}\n(a port was taken meanwhile: retry, or look with `ss -ltnp`)")
    if "OutOfMemoryError" in output:
        return LocalBrokerError(f"{summary}\n(out of heap: raise -Xmx in {__name__}.JVM_OPTIONS to 1g)")
    return LocalBrokerError(f"{summary}\nlast {LOG_TAIL_LINES} lines of its output:\n{tail}")


# --- the recorded developer broker (up / down / status) ------------------------------------------


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def write_json(path: Path, content: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    partial.replace(path)


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


def run_command(args: argparse.Namespace) -> int:
    if args.command == "fetch":
        started = time.monotonic()
        lib_dir = fetch_jars()
        jar_count = len(list(lib_dir.glob("*.jar")))
        say(f"{jar_count} jars ready in {lib_dir} ({time.monotonic() - started:.1f} s)")
    elif args.command == "up":
        print(up(args.port).bootstrap)  # alone on stdout: `export KAFKA_BOOTSTRAP_SERVERS=$(... up)`
    elif args.command == "down":
        down()
    else:
        status()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="A local single-node Kafka broker (KRaft).")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="copy the Kafka jars from Maven Central into .cache/kafka/lib (once)")
    up_parser = commands.add_parser("up", help="start the broker (or reuse the running one); prints its address")
    up_parser.add_argument("--port", type=int, help="broker port on 127.0.0.1 (default: a free one)")
    commands.add_parser("down", help="stop the broker and remove its data")
    commands.add_parser("status", help="say whether the broker runs, and where")
    try:
        return run_command(parser.parse_args(argv))
    except LocalBrokerError as exc:
        say(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
