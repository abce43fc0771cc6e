"""The local broker's pure parts (dev.kafka), with no broker and no JVM: settings, ids, ports, and
the one-line errors for a bad set-up."""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from dev.children import free_ports
from dev.errors import LocalBrokerError, PortInUseError
from dev.kafka import __main__ as cli
from dev.kafka import developer, jars, node
from dev.kafka.config import choose_ports, new_cluster_id, render_server_properties
from dev.kafka.jars import describe_mvn_failure, jars_ready
from dev.kafka.java import parse_java_major, require_java
from worker.errors import WorkerError


def parse_properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_server_properties_hold_the_single_node_kraft_settings(tmp_path: Path) -> None:
    settings = parse_properties(render_server_properties(40001, 40002, tmp_path / "logs"))
    assert settings["process.roles"] == "broker,controller"
    assert settings["node.id"] == "1"
    assert settings["controller.quorum.bootstrap.servers"] == "127.0.0.1:40002"
    listeners = "PLAINTEXT://127.0.0.1:40001,CONTROLLER://127.0.0.1:40002"
    assert settings["listeners"] == settings["advertised.listeners"] == listeners
    assert settings["controller.listener.names"] == "CONTROLLER"
    assert settings["inter.broker.listener.name"] == "PLAINTEXT"
    assert Path(settings["log.dirs"]).is_absolute()
    for key in ("offsets.topic", "transaction.state.log"):
        assert settings[f"{key}.replication.factor"] == "1"
        assert settings[f"{key}.num.partitions"] == "1"
    assert settings["transaction.state.log.min.isr"] == "1"
    assert settings["group.initial.rebalance.delay.ms"] == "0"
    assert settings["transaction.abort.timed.out.transaction.cleanup.interval.ms"] == "1000"
    assert settings["log.cleaner.dedupe.buffer.size"] == "16777216"
    assert settings["auto.create.topics.enable"] == "false"
    assert "transaction.max.timeout.ms" not in settings  # the broker default is kept


def test_behind_a_fault_proxy_clients_are_sent_to_the_proxy_and_the_broker_talks_to_itself_directly(
        tmp_path: Path) -> None:
    settings = parse_properties(render_server_properties(40001, 40002, tmp_path / "logs", proxy=(40003, 40004)))
    assert settings["listeners"] == (
        "PLAINTEXT://127.0.0.1:40001,CONTROLLER://127.0.0.1:40002,DIRECT://127.0.0.1:40004")
    assert settings["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:40003,CONTROLLER://127.0.0.1:40002,DIRECT://127.0.0.1:40004")
    assert settings["inter.broker.listener.name"] == "DIRECT"
    assert "DIRECT:PLAINTEXT" in settings["listener.security.protocol.map"]


def test_cluster_id_is_16_random_bytes_in_urlsafe_base64() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert not cluster_id.startswith("-")  # would be read as an option by the storage tool
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(2)
    assert len(set(ports)) == 2
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_chosen_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port} is already in use.*another --port"):
            choose_ports(port)


def test_missing_java_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LocalBrokerError, match=r"java not found on PATH: install a JDK 17\+"):
        require_java()


def test_main_prints_one_line_and_fails_without_java(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java, no mvn
    monkeypatch.setattr(developer, "RUN_DIR", tmp_path)
    monkeypatch.setattr(developer, "RUN_FILE", tmp_path / "kafka.json")
    assert cli.main(["up"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("local-kafka: java not found on PATH: install a JDK 17+")


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(LocalBrokerError, match=r"Java 8, Kafka 4 needs 17\+"):
        require_java()


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ("something else", None),
    ],
)
def test_java_major_version(output: str, major: int | None) -> None:
    assert parse_java_major(output) == major


def test_missing_mvn_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(jars, "LIB_DIR", tmp_path / "kafka" / "lib")
    monkeypatch.setattr(jars, "require_java", lambda: "java")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LocalBrokerError, match=r"mvn not found on PATH: install Apache Maven.*`python -m dev.kafka"):
        jars.fetch_jars()


def test_unreachable_maven_central_is_told_apart_from_other_mvn_failures() -> None:
    network = (
        "\x1b[0m[ERROR] Plugin org.apache.maven.plugins:maven-dependency-plugin:3.8.1 could not be resolved: "
        "Could not transfer artifact ... from/to central (https://repo.maven.apache.org/maven2): "
        "Connect to repo.maven.apache.org:443 failed: Connection refused -> [Help 1]\n[ERROR] \n"
    )
    message = describe_mvn_failure(network)
    assert message.startswith("cannot download the Kafka jars from Maven Central (")
    assert "Connection refused" in message
    assert "repo.maven.apache.org" in message and "fetch` again" in message
    assert "\n" not in message and "\x1b" not in message
    other = describe_mvn_failure("[ERROR] Non-parseable POM pom.xml: unexpected markup\n")
    assert other.startswith("mvn could not copy the Kafka jars (Non-parseable POM")


def test_jars_are_ready_only_for_the_same_pom_and_every_jar(tmp_path: Path) -> None:
    (tmp_path / "a.jar").write_bytes(b"")
    (tmp_path / "b.jar").write_bytes(b"")
    assert not jars_ready(tmp_path, "hash-1")  # no marker: an interrupted or never-run fetch
    (tmp_path / jars.FETCH_MARKER).write_text(json.dumps({"pom_sha256": "hash-1", "jars": ["a.jar", "b.jar"]}))
    assert jars_ready(tmp_path, "hash-1")
    assert not jars_ready(tmp_path, "hash-2")  # pom.xml changed
    (tmp_path / "b.jar").unlink()
    assert not jars_ready(tmp_path, "hash-1")


def test_a_dead_recorded_broker_is_cleaned_up_and_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    data_dir = tmp_path / "kafka-data-old"
    data_dir.mkdir()
    run_file = tmp_path / "kafka.json"
    record = {"bootstrap": "127.0.0.1:1", "pid": dead.pid, "data_dir": str(data_dir), "started_at": "then"}
    run_file.write_text(json.dumps(record))
    monkeypatch.setattr(developer, "RUN_DIR", tmp_path)
    monkeypatch.setattr(developer, "RUN_FILE", run_file)
    assert cli.main(["status"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "not running"
    assert "was not running: removed its stale data dir and run file" in captured.err
    assert not run_file.exists() and not data_dir.exists()


def test_stale_data_dirs_are_swept_but_live_or_new_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "kafka-data-stale"
    stale.mkdir()
    (stale / "broker.json").write_text(json.dumps({"pid": dead.pid}))
    starting = tmp_path / "kafka-data-starting"  # no record yet: another process is formatting it
    starting.mkdir()
    assert node.sweep_stale_data_dirs(tmp_path) == [stale]
    assert starting.exists()


def test_the_tools_errors_are_not_the_workers() -> None:
    """The product's CLI catches WorkerError; a dev tool's failure must never pass for one."""
    assert not issubclass(LocalBrokerError, WorkerError)
    assert issubclass(PortInUseError, LocalBrokerError)
