"""The soak test (`make soak`, `python -m dev.soak`): one worker under a steady load for a long time,
to catch what only time shows (a leak of memory, threads or file descriptors; lag or commit
latency that creeps up).

For SOAK_SECONDS (default 3600) a producer writes the generated stream (dev/loadgen.py) at SOAK_RATE
raw messages a second into a worker on a broker of its own (or on SOAK_BOOTSTRAP). By default the
rate is half the worker's maximum, measured first on the same broker, worker and stream: a backlog of
CALIBRATION_MESSAGES written as fast as the producer goes, timed until the worker has caught up (the
machine's speed varies by 2x from hour to hour here, so a figure from another run is no maximum).
Every SOAK_INTERVAL_S (10 s) the worker process's RSS, threads
and open file descriptors (/proc) and its consumer lag and mean commit latency (its /metrics) go
into soak.csv, drawn in soak.svg (no plotting library: plain SVG). Then the check: after the warm-up
(SOAK_WARMUP_S, default a quarter of the run, at most 10 minutes) no figure may grow by more than
10% from the first third of the samples to the last (medians), nor by more than its noise floor
(FLOORS).
Exit status 0 when nothing grew, 1 when something did; files in SOAK_DIR (default .run/soak-<time>).
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from dev import kafka
from dev.children import free_ports
from dev.files import RUN_DIR
from dev.loadgen import StreamGenerator
from dev.verify import send
from dev.workers import Instance, settings_for, worker_command
from worker.runtime.topics import admin_client, create_topics

FIGURES = ("rss_mb", "threads", "open_fds", "lag", "commit_ms")
# Growth below these is noise, whatever its share (10% of a lag of 30 messages means nothing).
FLOORS = {"rss_mb": 8.0, "threads": 2.0, "open_fds": 4.0, "lag": 500.0, "commit_ms": 25.0}
MAX_GROWTH = 0.10
READY_TIMEOUT_S = 180.0
CALIBRATION_MESSAGES = 60_000  # about 240,000 events: a minute or more of the worker at its maximum
# The bench's population, so that "half the measured maximum" is half of the same workload's maximum.
# With a few thousand users, each user's lists ($append) and properties grow all hour long, and with
# them every state record and enriched event: the cost per event then rises with time, which is the
# workload changing, not the worker leaking (the first hour-long soak, with 2,000 users, showed it).
SOAK_USERS = 100_000
# The worker's memory bounds (the decoded-user cache; RocksDB's block cache and write buffers, 64 MiB
# each) must be reached within the warm-up, or the growth check cannot tell a cache filling up from a
# leak: 100,000 users' growing states fill the default 256 MiB cache slowly, so the soak sets 64 MiB.
SOAK_CACHE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class SoakPlan:
    seconds: float = 3600.0
    interval_s: float = 10.0
    rate: float | None = None  # raw messages a second; None: half the calibrated maximum
    warmup_s: float = 600.0
    out: Path = field(default_factory=lambda: RUN_DIR / time.strftime("soak-%Y%m%d-%H%M%S"))
    bootstrap: str | None = None
    cache_bytes: int = SOAK_CACHE_BYTES

    @classmethod
    def from_env(cls) -> SoakPlan:
        env = os.environ
        seconds = float(env.get("SOAK_SECONDS", 3600))
        warmup = float(env.get("SOAK_WARMUP_S", min(600.0, seconds / 4)))
        out = Path(env["SOAK_DIR"]) if env.get("SOAK_DIR") else cls().out
        rate = float(env["SOAK_RATE"]) if env.get("SOAK_RATE") else None
        return cls(seconds, float(env.get("SOAK_INTERVAL_S", 10)), rate, warmup, out,
                   env.get("SOAK_BOOTSTRAP") or None, int(env.get("SOAK_CACHE_BYTES", SOAK_CACHE_BYTES)))


class Load(threading.Thread):
    """The generated stream at `rate` messages a second, until `stop`."""

    def __init__(self, bootstrap: str, topic: str, rate: float, limit: float = math.inf, seed: int = 11) -> None:
        super().__init__(name="soak-load", daemon=True)
        self.bootstrap, self.topic, self.rate, self.limit, self.seed = bootstrap, topic, rate, limit, seed
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "partitioner": "murmur2_random", "linger.ms": 20})
        started = time.monotonic()
        for record in StreamGenerator(seed=self.seed, users=SOAK_USERS, bad_share=0.005).messages():
            if self.stopping.is_set() or self.sent >= self.limit:
                break
            send(producer, self.topic, record)
            self.sent += 1
            ahead = self.sent / self.rate - (time.monotonic() - started)
            if ahead > 0:
                self.stopping.wait(ahead)
        producer.flush(30)


def process_figures(pid: int) -> tuple[float, float, float]:
    """(RSS in MB, threads, open file descriptors) of process `pid`, from /proc."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    rss_kb = float(status["VmRSS"].split()[0])
    return rss_kb / 1024, float(status["Threads"]), float(len(os.listdir(f"/proc/{pid}/fd")))


class Scraper:
    """Lag and the mean commit latency since the last scrape, from the worker's /metrics."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.commits = (0.0, 0.0)  # (sum of seconds, count) at the last scrape

    def scrape(self) -> tuple[float, float]:
        text = urllib.request.urlopen(self.url, timeout=5).read().decode()
        lag, total, count = 0.0, 0.0, 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "experiment_worker_consumer_lag":
                    lag += sample.value
                elif sample.name == "experiment_worker_commit_seconds_sum":
                    total = sample.value
                elif sample.name == "experiment_worker_commit_seconds_count":
                    count = sample.value
        done = count - self.commits[1]
        mean_ms = (total - self.commits[0]) / done * 1000 if done > 0 else 0.0
        self.commits = (total, count)
        return lag, mean_ms


def grown(rows: list[dict[str, float]], warmup_s: float) -> list[str]:
    """The figures that grew after the warm-up: median of the last third of the samples against the
    first third's, by more than MAX_GROWTH and more than the figure's floor."""
    steady = [row for row in rows if row["t_s"] >= warmup_s]
    third = len(steady) // 3
    if third == 0:
        return [f"only {len(steady)} samples after the warm-up: nothing to compare"]
    problems = []
    for figure in FIGURES:
        before = statistics.median(row[figure] for row in steady[:third])
        after = statistics.median(row[figure] for row in steady[-third:])
        if after - before > max(MAX_GROWTH * before, FLOORS[figure]):
            problems.append(f"{figure} grew from {before:.1f} to {after:.1f}")
    return problems


def svg(rows: list[dict[str, float]], warmup_s: float) -> str:
    """One small line chart per figure, the warm-up shaded."""
    width, height, pad = 640, 110, 40
    end = max((row["t_s"] for row in rows), default=1.0) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height * len(FIGURES)}" '
             'font-family="sans-serif" font-size="11">']
    for n, figure in enumerate(FIGURES):
        top, values = n * height, [row[figure] for row in rows]
        low, high = min(values, default=0.0), max(values, default=1.0)
        span = (high - low) or 1.0

        def x(t: float) -> float:
            return pad + (width - 2 * pad) * t / end

        def y(v: float, top: int = top, low: float = low, span: float = span) -> float:
            return top + height - 20 - (height - 40) * (v - low) / span

        points = " ".join(f"{x(row['t_s']):.1f},{y(row[figure]):.1f}" for row in rows)
        parts += [f'<rect x="{pad}" y="{top + 20}" width="{x(min(warmup_s, end)) - pad:.1f}" height="{height - 40}" '
                  'fill="#eee"/>',
                  f'<text x="{pad}" y="{top + 14}">{figure}: {low:.1f} to {high:.1f} (warm-up shaded)</text>',
                  f'<polyline fill="none" stroke="#36c" stroke-width="1.5" points="{points}"/>']
    parts.append(f'<text x="{width - pad}" y="{height * len(FIGURES) - 4}" text-anchor="end">{end:.0f} s</text>')
    return "\n".join([*parts, "</svg>"]) + "\n"


def calibrate(bootstrap: str, topic: str, scraper: Scraper, worker: Instance) -> float:
    """The worker's maximum in raw messages a second: CALIBRATION_MESSAGES produced at once, timed
    from the first until the worker's consumers are at the end of raw and by-user again."""
    load = Load(bootstrap, topic, math.inf, CALIBRATION_MESSAGES, seed=12)
    started = time.monotonic()
    load.start()
    load.join()
    deadline = started + READY_TIMEOUT_S + CALIBRATION_MESSAGES / 100
    while scraper.scrape()[0] > 0 or time.monotonic() - started < 2.0:
        if not worker.running or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not catch up with the calibration backlog (see {worker.log})")
        time.sleep(0.5)
    return CALIBRATION_MESSAGES / (time.monotonic() - started)


def wait_ready(port: int, worker: Instance) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not worker.running:
            raise RuntimeError(f"the worker exited while starting (see {worker.log})")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"the worker was not ready in {READY_TIMEOUT_S:.0f} s (see {worker.log})")


def sample(plan: SoakPlan, worker: Instance, scraper: Scraper, load: Load,
           out: csv.DictWriter[str], flush: Callable[[], None]) -> list[dict[str, float]]:
    """Every `interval_s` until `seconds` are over: one row, written at once (a killed soak keeps its CSV)."""
    rows: list[dict[str, float]] = []
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < plan.seconds:
        if not worker.running or worker.process is None:
            raise RuntimeError(f"the worker exited (see {worker.log})")
        rss, threads, fds = process_figures(worker.process.pid)
        lag, commit_ms = scraper.scrape()
        row = {"t_s": round(elapsed, 1), "rss_mb": round(rss, 1), "threads": threads, "open_fds": fds,
               "lag": lag, "commit_ms": round(commit_ms, 2), "sent": float(load.sent)}
        out.writerow(row)
        flush()
        rows.append(row)
        time.sleep(max(0.0, plan.interval_s - (time.monotonic() - started - elapsed)))
    return rows


def soak(plan: SoakPlan) -> int:
    plan.out.mkdir(parents=True, exist_ok=True)
    broker = None if plan.bootstrap else kafka.start_broker(plan.out / "broker")
    bootstrap = plan.bootstrap or (broker.bootstrap if broker else "")
    port = free_ports(1)[0]
    settings = settings_for(bootstrap, f"soak{uuid.uuid4().hex[:6]}", partitions=3, metrics_port=port,
                            commit_interval_ms=100, state_dir=str(plan.out / "state"),
                            state_cache_bytes=plan.cache_bytes)
    worker = Instance("soak", worker_command(settings), plan.out / "worker.log")
    load = Load(bootstrap, settings.topics.raw, plan.rate or 0.0)
    try:
        create_topics(admin_client(settings), settings)
        worker.start()
        wait_ready(port, worker)
        if plan.rate is None:
            maximum = calibrate(bootstrap, settings.topics.raw, Scraper(port), worker)
            load.rate = round(maximum / 2)
            print(f"soak: the worker's maximum here and now is {maximum:,.0f} messages/s "
                  f"({CALIBRATION_MESSAGES:,} messages); the soak offers half", flush=True)
        load.start()
        print(f"soak: {plan.seconds:.0f} s at {load.rate:g} messages/s, a sample every {plan.interval_s:g} s, "
              f"warm-up {plan.warmup_s:.0f} s, "
              f"state cache {plan.cache_bytes / 2**20:g} MiB, {SOAK_USERS:,} users; in {plan.out}", flush=True)
        with (plan.out / "soak.csv").open("w", newline="") as handle:
            out = csv.DictWriter(handle, ["t_s", *FIGURES, "sent"])
            out.writeheader()
            rows = sample(plan, worker, Scraper(port), load, out, handle.flush)
    finally:
        load.stopping.set()
        code = worker.leave()
        if broker is not None:
            broker.stop()
    (plan.out / "soak.svg").write_text(svg(rows, plan.warmup_s))
    problems = grown(rows, plan.warmup_s)
    if code != 0:
        problems.append(f"the worker did not shut down cleanly (exit {code})")
    last = rows[-1] if rows else {}
    print(f"soak: {load.sent:,} messages; last sample " + ", ".join(f"{f} {last.get(f, 0):g}" for f in FIGURES))
    for problem in problems:
        print(f"  {problem}")
    print(f"soak: {'FAIL' if problems else 'PASS'}; {plan.out / 'soak.csv'}, {plan.out / 'soak.svg'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(soak(SoakPlan.from_env()))
