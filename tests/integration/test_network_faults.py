"""Network faults between the workers and a real broker (the short form; `make chaos` has more):
through the fault proxy of dev/netproxy.py the workers' connections are cut for less and for
more than the session timeout and slowed down, while a producer writes; the committed outputs and
the state must still equal process-file on the raw topic (0 lost, 0 duplicated, 0 wrong), and no
worker may exit on its own. Before that, the proxy is checked on its own: it forwards, delays,
holds and refuses as told."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev.chaos import ChaosPlan, run_chaos
from dev.children import free_ports
from dev.netproxy import FaultProxy


@pytest.fixture
def echo_proxy() -> Iterator[FaultProxy]:
    """A proxy in front of an echo server."""
    proxy_port, echo_port = free_ports(2)
    server = socket.create_server(("127.0.0.1", echo_port))

    def echo(connection: socket.socket) -> None:
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data)

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    proxy = FaultProxy(proxy_port, ("127.0.0.1", echo_port)).start()
    yield proxy
    proxy.stop()
    server.close()


def round_trip(connection: socket.socket) -> float:
    started = time.monotonic()
    connection.sendall(b"ping")
    assert connection.recv(16) == b"ping"
    return time.monotonic() - started


def test_the_proxy_forwards_delays_holds_and_refuses(echo_proxy: FaultProxy) -> None:
    host, port = echo_proxy.address.split(":")
    connection = socket.create_connection((host, int(port)), timeout=5)
    assert round_trip(connection) < 0.1
    echo_proxy.set_latency(0.2)
    assert 0.35 < round_trip(connection) < 1.0  # 0.2 s each way
    echo_proxy.set_latency(0.0)
    echo_proxy.blackhole(1.0)
    assert 0.9 < round_trip(connection) < 2.0  # held, not lost
    echo_proxy.cut(1.0)
    assert connection.recv(16) == b""  # reset
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1)
    time.sleep(1.2)
    assert round_trip(socket.create_connection((host, int(port)), timeout=5)) < 0.1
    assert echo_proxy.stats.reset == 2  # both sides of the one connection


def test_exactly_once_through_cuts_shorter_and_longer_than_the_session_and_latency(tmp_path: Path) -> None:
    # Its own broker, behind the proxy; a 4 s session so that the long cut (5-8 s) fences every member.
    plan = ChaosPlan(seed=11, events=3000, users=200, duration_s=24, instances=2, kills=0, restore_kills=0,
                     wipes=0, leaves=0, zombies=0, net_cuts_short=1, net_cuts_long=1, net_latency=1,
                     session_timeout_ms=4000, finish_timeout_s=120)
    tally = run_chaos(plan, None, tmp_path)
    assert tally.network == {"net-cut-short": 1, "net-cut-long": 1, "net-latency": 1}, "every fault happened"
    assert tally.records_checked > 3000
    assert (tally.lost, tally.duplicated, tally.wrong) == (0, 0, 0)
    assert tally.crashes == []
