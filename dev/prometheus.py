"""A throwaway Prometheus server on loopback that scrapes given targets every second: the
integration test proves the worker's /metrics is scraped and queried as an SRE would, and
`python -m dev.prometheus --target 127.0.0.1:9108` gives a developer the same
server (with the alert rules) beside a local worker.

The server is the `prometheus` binary (Debian: `apt-get install prometheus`, or $PROMETHEUS_BIN),
started on a free port with a generated config and a fresh TSDB in a temporary directory, and
stopped with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from dev.children import die_with_caller, free_ports
from dev.errors import PrometheusError

PROMETHEUS_BIN_ENV = "PROMETHEUS_BIN"
INSTALL_HINT = "install it (Debian/Ubuntu: `apt-get install prometheus`) or set PROMETHEUS_BIN=/path/to/prometheus"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def find_prometheus() -> str | None:
    """The prometheus binary: $PROMETHEUS_BIN, else the one on PATH; None when neither exists."""
    configured = os.environ.get(PROMETHEUS_BIN_ENV)
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("prometheus")


def scrape_config(targets: Sequence[str], rule_files: Sequence[Path] = (), interval_s: float = 1.0) -> str:
    """A Prometheus config (JSON is YAML) scraping `targets` as job `experiment-worker`."""
    interval = f"{int(interval_s * 1000)}ms"
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path.resolve()) for path in rule_files],
        "scrape_configs": [{"job_name": "experiment-worker", "static_configs": [{"targets": list(targets)}]}],
    }
    return json.dumps(config, indent=2)


class LocalPrometheus:
    """`with LocalPrometheus(["127.0.0.1:9108"]) as prometheus: prometheus.query("up")`."""

    def __init__(self, targets: Sequence[str], rule_files: Sequence[Path] = (), interval_s: float = 1.0) -> None:
        self.targets = list(targets)
        self.rule_files = list(rule_files)
        self.interval_s = interval_s
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> LocalPrometheus:
        binary = find_prometheus()
        if binary is None:
            raise PrometheusError(f"prometheus not found: {INSTALL_HINT}")
        self._workdir = tempfile.TemporaryDirectory(prefix="experiment-worker-prometheus-")
        workdir = Path(self._workdir.name)
        (workdir / "prometheus.yml").write_text(scrape_config(self.targets, self.rule_files, self.interval_s))
        self.port = free_ports(1)[0]
        command = [
            binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]
        with (workdir / "prometheus.log").open("wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, preexec_fn=die_with_caller())
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as reply:
                if reply.status == 200:
                    return
            time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready after {timeout_s} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self._workdir is None:
            return ""
        with contextlib.suppress(OSError):
            return "\n".join((Path(self._workdir.name) / "prometheus.log").read_text().splitlines()[-lines:])
        return ""

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL if it is still there after `timeout_s`; then the TSDB goes."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        self.process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> LocalPrometheus:
        return self.start() if self.process is None else self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ---- HTTP API -------------------------------------------------------------------------------
    def api(self, path: str, **params: str) -> Any:
        """The `data` of a /api/v1 reply; an error reply raises PrometheusError."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5.0) as reply:
                body = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        except OSError as exc:
            raise PrometheusError(f"GET {url}: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"GET {url}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expression: str) -> dict[frozenset[tuple[str, str]], float]:
        """An instant query: each series' labels (without __name__) → its value."""
        data = self.api("query", query=expression)
        return {
            frozenset((k, v) for k, v in row["metric"].items() if k != "__name__"): float(row["value"][1])
            for row in data["result"]
        }

    def wait_for(self, expression: str, timeout_s: float = 60.0) -> dict[frozenset[tuple[str, str]], float]:
        """Query until `expression` returns at least one series; PrometheusError on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expression)
            if result:
                return result
            if time.monotonic() > deadline:
                targets = "; ".join(self.targets_health())
                raise PrometheusError(f"{expression!r} returned nothing in {timeout_s} s; targets: {targets}")
            time.sleep(0.5)

    def targets_health(self) -> list[str]:
        targets = self.api("targets")["activeTargets"]
        return [f"{t['scrapeUrl']} {t['health']} {t.get('lastError') or ''}".strip() for t in targets]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a local Prometheus scraping the worker, until Ctrl-C")
    parser.add_argument("--target", action="append", default=[], help="host:port of a /metrics (repeatable)")
    parser.add_argument("--rules", action="append", type=Path, default=[], help="an alert-rule file (repeatable)")
    args = parser.parse_args(argv)
    try:
        with LocalPrometheus(args.target or ["127.0.0.1:9108"], args.rules) as prometheus:
            print(f"prometheus at {prometheus.url} scraping {', '.join(prometheus.targets)}; Ctrl-C stops it")
            while prometheus.process is not None and prometheus.process.poll() is None:
                time.sleep(1.0)
            print(f"prometheus exited: {prometheus.log_tail()}", file=sys.stderr)
            return 1
    except PrometheusError as exc:
        print(f"dev.prometheus: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
