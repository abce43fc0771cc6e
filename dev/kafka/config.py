"""How the local broker is configured: one node that is both broker and KRaft controller on
127.0.0.1, its `server.properties`, its ports and its cluster id. Pure but for choosing free ports.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from dev.children import free_ports, port_in_use
from dev.errors import PortInUseError

COMMAND = "python -m dev.kafka"


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding (22 chars), as `kafka-storage random-uuid`."""
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # the tool's argument parser would read it as an option
            return cluster_id


def render_server_properties(broker_port: int, controller_port: int, log_dir: Path,
                             proxy: tuple[int, int] | None = None) -> str:
    """server.properties for one node that is both broker and KRaft controller, on 127.0.0.1.

    `proxy` (advertised port, direct port): the client listener is advertised at a fault proxy's
    port (dev/netproxy.py), which forwards to `broker_port`; a second listener, DIRECT, is
    advertised as itself for what must not go through the proxy: the broker's own inter-broker
    traffic (transaction markers) and the test harness's producer and readers. A client is told the
    addresses of the listener it asked on, so each stays on its own path."""
    listeners = f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}"
    advertised, inter_broker = listeners, "PLAINTEXT"
    if proxy is not None:
        proxy_port, direct_port = proxy
        listeners += f",DIRECT://127.0.0.1:{direct_port}"
        advertised = listeners.replace(f"PLAINTEXT://127.0.0.1:{broker_port}", f"PLAINTEXT://127.0.0.1:{proxy_port}")
        inter_broker = "DIRECT"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": advertised,  # `format --standalone` reads the controller's address here
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,DIRECT:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": inter_broker,
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


def choose_ports(port: int | None) -> tuple[int, int]:
    """(broker port, controller port): `port` for the broker when given and free, else free ones."""
    if port is None:
        broker_port, controller_port = free_ports(2)
        return broker_port, controller_port
    if port_in_use(port):
        raise PortInUseError(
            f"port 127.0.0.1:{port} is already in use: stop what listens there (`ss -ltnp 'sport = :{port}'`) "
            "or choose another --port"
        )
    return port, next(p for p in free_ports(2) if p != port)
