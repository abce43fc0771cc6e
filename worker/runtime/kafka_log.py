"""librdkafka's log in the worker's one log stream: through Python logging (text or JSON, as the
worker's own lines), at most one line per kind of message every `kafka_log_interval_s` with the
count of those held back, and never a secret.

confluent-kafka hands its log to the `logging.Logger` given as the client setting `logger`, on the
thread that serves the client: a consumer's consume() or poll(), a producer's or an admin client's
poll() or flush() only, so whoever holds a producer or an admin client for long polls it. Every
client of a process shares the one logger (`librdkafka`) and its filter, which also keeps the last
problem it saw, so a failed call can name the error behind it (`take_problem`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator

from worker.runtime.settings import WorkerSettings

LOGGER_NAME = "librdkafka"
MASK = "**********"
# A `name=value` or `name: value` whose name says secret, as a configuration dump (debug=conf) shows it.
SECRET_PAIR = re.compile(r"(\b[\w.]*(?:password|secret|token|credential)[\w.]*\s*[=:]\s*)(\"[^\"]*\"|[^\s,;)\]]+)",
                         re.IGNORECASE)
THREAD_PREFIX = re.compile(r"^\[thrd:[^\]]*\]: ")


class RateLimit:
    """At most one message of each kind every `interval_s`; `admit` says how many it held back
    since the last one it let through, or None to hold this one back."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.clock = interval_s, clock
        self.shown: dict[Hashable, float] = {}
        self.held: dict[Hashable, int] = {}
        self.lock = threading.Lock()  # clients log from the threads that serve them

    def admit(self, kind: Hashable) -> int | None:
        now = self.clock()
        with self.lock:
            last = self.shown.get(kind)
            if last is not None and now - last < self.interval_s:
                self.held[kind] = self.held.get(kind, 0) + 1
                return None
            self.shown[kind] = now
            return self.held.pop(kind, 0)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value, and every value of a secret-sounding setting, masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return SECRET_PAIR.sub(lambda match: match.group(1) + MASK, text)


class KafkaLogFilter(logging.Filter):
    """Rewrites each librdkafka record (facility, client, text) into one redacted line, keeps the
    last problem, and holds back what the rate limit says."""

    def __init__(self, interval_s: float = 30.0) -> None:
        super().__init__()
        self.limit = RateLimit(interval_s)
        self.secrets: tuple[str, ...] = ()
        self.absorbing = False
        self.problem: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        facility, client, text = parts(record)
        text = redact(text, self.secrets)
        if record.levelno >= logging.WARNING:
            self.problem = text
        if self.absorbing:
            return False
        held = self.limit.admit((record.levelno, facility))
        if held is None:
            return False
        record.msg = f"{facility} {client}: {text}" + (f" ({held} more like it held back)" if held else "")
        record.args = None
        record.__dict__["facility"] = facility  # a field of its own in JSON lines
        return True


def parts(record: logging.LogRecord) -> tuple[str, str, str]:
    """(facility, client name, text) of a record confluent-kafka logged as ("%s [%s] %s", fac, name, text)."""
    args = record.args
    if isinstance(args, tuple) and len(args) == 3:
        facility, client, text = (str(arg) for arg in args)
        return facility, client, THREAD_PREFIX.sub("", text)
    return "LOG", "librdkafka", record.getMessage()


def log_filter() -> KafkaLogFilter:
    logger = logging.getLogger(LOGGER_NAME)
    for existing in logger.filters:
        if isinstance(existing, KafkaLogFilter):
            return existing
    created = KafkaLogFilter()
    logger.addFilter(created)
    return created


def kafka_logger(settings: WorkerSettings) -> logging.Logger:
    """The logger every client of `settings` is given (the client setting `logger`)."""
    found = log_filter()
    found.secrets = tuple(secret.get_secret_value() for secret in settings.kafka_secrets.values())
    found.limit.interval_s = settings.kafka_log_interval_s
    return logging.getLogger(LOGGER_NAME)


def take_problem() -> str | None:
    """The last warning or error librdkafka logged since the last call (redacted), if any."""
    found = log_filter()
    problem, found.problem = found.problem, None
    return problem


@contextlib.contextmanager
def absorbed() -> Iterator[None]:
    """librdkafka's lines are kept (`take_problem`) but not logged: whoever waits logs one line per attempt."""
    found = log_filter()
    found.absorbing = True
    try:
        yield
    finally:
        found.absorbing = False


def quiet() -> None:
    """For a one-shot command that reports a failure in one line of its own: librdkafka's lines
    are kept for that line but printed nowhere (not even by logging's last-resort handler)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
