"""The HTTP endpoints SREs and Kubernetes probe: /metrics, /healthz (process alive, loop not
stuck) and /readyz (every assigned partition restored). A daemon thread; stdlib only.

A restore runs in a thread of its own while the loop keeps turning (the runner's `Restoring`),
so no restore, however long, holds the loop: a loop that has not turned for `stuck_after_s` is
stuck, restore or not, and /healthz says so (a restore has its own deadline, `restore_timeout_s`,
and readiness waits for it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class HealthState:
    """What the endpoints report; the runner updates it."""

    def __init__(self, stuck_after_s: float = 60.0) -> None:
        self.stuck_after_s = stuck_after_s
        self.last_loop: Callable[[], float] = time.monotonic
        self.is_ready: Callable[[], bool] = lambda: False

    def healthy(self) -> bool:
        return time.monotonic() - self.last_loop() < self.stuck_after_s


def serve(port: int, registry: CollectorRegistry, state: HealthState, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self.reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok = state.healthy()
                self.reply(200 if ok else 503, b"ok\n" if ok else b"processing loop stuck\n")
            elif self.path == "/readyz":
                ok = state.is_ready()
                self.reply(200 if ok else 503, b"ready\n" if ok else b"restoring or not started\n")
            else:
                self.reply(404, b"not found\n")

        def reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # probes are not news
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
