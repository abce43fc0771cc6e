"""What the development tools need to run servers as child processes: loopback ports that are free,
and (on Linux) a child that ends when the thread that started it dies, so a killed test run leaves
no broker or Prometheus behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable


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


def die_with_caller() -> Callable[[], None] | None:
    """Linux: a `preexec_fn` that gives the child SIGTERM when the thread that started it dies, even
    by SIGKILL. Elsewhere None: the tools' sweeps of stale data dirs clean up later."""
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
