"""A TCP fault proxy between Kafka clients and the local broker (`FaultProxy`).

The broker advertises its client listener at the proxy's port and listens on another one
(`dev.kafka.start_broker(..., advertised_port=...)`), so every connection a client opens after
its first metadata request goes through the proxy too. The proxy forwards bytes and, on command:

- `set_latency(s)`: every chunk, both ways, is delivered `s` seconds after it arrived (order kept);
- `blackhole(s)`: for `s` seconds nothing gets through and nothing is refused, as in a network
  partition: open connections stall (their bytes are held, then delivered), new ones connect and
  stall, and the clients' own timeouts decide what happens;
- `cut(s)`: every connection is reset at once and the port refuses new ones for `s` seconds.

Asyncio in a thread of its own, driven in-process by the chaos suite (dev/chaos.py) and
tests/integration/test_network_faults.py; `python -m dev.netproxy --listen P --target H:P` runs one
that takes the same commands on stdin (`latency 0.2`, `blackhole 10`, `cut 5`, `heal`, `stats`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dev.children import free_ports
from dev.kafka import LocalBroker, start_broker

CHUNK = 1 << 16
T = TypeVar("T")


@dataclass
class ProxyStats:
    connections: int = 0  # accepted and forwarded
    reset: int = 0  # open connections a cut reset
    refused_s: float = 0.0  # seconds the port refused connections
    held_s: float = 0.0  # seconds of blackhole
    bytes: int = 0


class FaultProxy:
    def __init__(self, listen_port: int, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.host, self.port, self.target = host, listen_port, target
        self.latency_s = 0.0
        self.stats = ProxyStats()
        self._held_until = 0.0  # loop time until which nothing is delivered
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.WriteTransport] = set()
        self._reopen: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="netproxy", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ---- control, from any thread -------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def set_latency(self, seconds: float) -> None:
        self.latency_s = max(0.0, seconds)

    def blackhole(self, seconds: float) -> None:
        """Hold every byte, both ways, for `seconds` (from now)."""
        async def hold() -> None:
            self._held_until = max(self._held_until, self._loop.time() + seconds)
            self.stats.held_s += seconds
        self._call(hold())

    def cut(self, seconds: float) -> None:
        """Reset every connection now and refuse new ones for `seconds`."""
        self.stats.refused_s += seconds
        self._call(self._close_all(listen_again_after_s=seconds))

    def heal(self) -> None:
        """No latency, nothing held, listening."""
        async def heal() -> None:
            self.latency_s, self._held_until = 0.0, 0.0
            if self._reopen is not None:
                self._reopen.cancel()
                self._reopen = None
            if self._server is None:
                await self._listen()
        self._call(heal())

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # ---- the loop's side ------------------------------------------------------------------------
    async def _listen(self) -> None:
        self._reopen = None
        self._server = await asyncio.start_server(self._forward, self.host, self.port, reuse_address=True)

    async def _shutdown(self) -> None:
        await self._close_all(listen_again_after_s=None)
        for task in asyncio.all_tasks(self._loop):
            if task is not asyncio.current_task():
                task.cancel()

    async def _close_all(self, listen_again_after_s: float | None) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.stats.reset += len(self._open)
        for transport in list(self._open):
            transport.abort()  # an RST, as when a link or a middlebox drops the connection
        self._open.clear()
        if listen_again_after_s is not None:
            if self._reopen is not None:
                self._reopen.cancel()
            self._reopen = self._loop.call_later(
                listen_again_after_s, lambda: self._loop.create_task(self._listen()))

    async def _forward(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        try:
            broker_in, broker_out = await asyncio.open_connection(*self.target)
        except OSError:
            client_out.transport.abort()
            return
        if self._server is None:  # cut while it connected
            client_out.transport.abort()
            broker_out.transport.abort()
            return
        transports: set[asyncio.WriteTransport] = {client_out.transport, broker_out.transport}
        self._open |= transports
        self.stats.connections += 1
        pipes = [asyncio.ensure_future(self._pipe(client_in, broker_out)),
                 asyncio.ensure_future(self._pipe(broker_in, client_out))]
        with contextlib.suppress(asyncio.CancelledError):  # stop(): end quietly
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        for transport in transports:  # Kafka never half-closes: one side gone, both go
            transport.abort()
        self._open -= transports

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Copy `source` to `sink`, each chunk no sooner than its latency and the blackhole allow."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        deliver = asyncio.ensure_future(self._deliver(queue, sink))
        try:
            while data := await source.read(CHUNK):
                queue.put_nowait((self._loop.time() + self.latency_s, data))
            queue.put_nowait(None)
            await deliver
        except OSError:  # reset: by a cut, or by the other end
            pass
        finally:
            deliver.cancel()

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes] | None], sink: asyncio.StreamWriter) -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            while (wait := max(due, self._held_until) - self._loop.time()) > 0:
                await asyncio.sleep(min(wait, 0.1))  # a blackhole may start or end meanwhile
            sink.write(data)
            self.stats.bytes += len(data)
            with contextlib.suppress(OSError):
                await sink.drain()


# The network faults the chaos suite schedules (dev/chaos.py), their lengths relative to the group's
# session timeout: a cut the members outlive, one that outlives them, a partition, slow links.
NETWORK_ACTIONS = ("net-cut-short", "net-cut-long", "net-blackhole", "net-latency")


def network_fault(proxy: FaultProxy, action: str, chance: random.Random, session_s: float) -> tuple[str, float]:
    """Start the fault `action` on `proxy`; (what it is, how long it lasts). Cuts and blackholes end
    by themselves; latency lasts until the caller calls `proxy.set_latency(0)`."""
    if action == "net-cut-short":
        seconds = chance.uniform(0.2, 0.6) * session_s
        proxy.cut(seconds)
        return f"connections cut, refused for {seconds:.1f} s (under the {session_s:.0f} s session)", seconds
    if action == "net-cut-long":
        seconds = chance.uniform(1.3, 2.0) * session_s
        proxy.cut(seconds)
        return f"connections cut, refused for {seconds:.1f} s (past the {session_s:.0f} s session)", seconds
    if action == "net-blackhole":
        seconds = chance.uniform(0.5, 1.5) * session_s
        proxy.blackhole(seconds)
        return f"blackhole for {seconds:.1f} s", seconds
    if action == "net-latency":
        latency, seconds = chance.uniform(0.05, 0.3), chance.uniform(5.0, 10.0)
        proxy.set_latency(latency)
        return f"{latency * 1000:.0f} ms latency each way for {seconds:.1f} s", seconds
    raise ValueError(f"no network fault {action!r}; faults: {', '.join(NETWORK_ACTIONS)}")


def proxied_broker(data_root: Path) -> tuple[LocalBroker, FaultProxy]:
    """A local broker whose clients all go through a new FaultProxy (the broker's `direct` does not)."""
    proxy_port, broker_port = free_ports(2)
    proxy = FaultProxy(proxy_port, ("127.0.0.1", broker_port)).start()
    try:
        return start_broker(data_root, port=broker_port, advertised_port=proxy_port), proxy
    except BaseException:
        proxy.stop()
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", type=int, required=True, help="the port clients connect to (advertised)")
    parser.add_argument("--target", required=True, help="host:port of the broker's real listener")
    args = parser.parse_args(argv)
    host, port = args.target.rsplit(":", 1)
    proxy = FaultProxy(args.listen, (host, int(port))).start()
    print(f"proxy {proxy.address} -> {args.target}; commands: latency S, blackhole S, cut S, heal, stats", flush=True)
    commands = {"latency": proxy.set_latency, "blackhole": proxy.blackhole, "cut": proxy.cut}
    with contextlib.suppress(KeyboardInterrupt):
        for line in sys.stdin:
            word, *rest = line.split() or [""]
            if word in commands and rest:
                commands[word](float(rest[0]))
            elif word == "heal":
                proxy.heal()
            elif word == "stats":
                print(proxy.stats, flush=True)
            elif word:
                print(f"unknown command {line.strip()!r}", flush=True)
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
