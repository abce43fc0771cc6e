"""A deterministic stream of raw messages for the demo, the tests and the benchmarks.

About 70% ordinary events carrying user-property operations, 20% exposures (some unsetting),
10% assignments; Zipf-skewed users; envelopes of 1–50 events and bare events; a small share of
bad input of each kind, so the DLQ has something to say. Same seed, same stream.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

FLAGS = ("checkout-redesign", "pricing-page", "onboarding-v2", "search-ranking", "dark-mode")
VARIANTS = ("control", "treatment", "on", "off")
EVENT_TYPES = ("page_view", "add_to_cart", "purchase", "search", "session_start")
PLANS = ("free", "pro", "team")
CITIES = ("Paris", "Oslo", "Lagos", "Lima", "Pune", "Osaka")
START_MS = 1_763_978_400_000


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One raw message: `value` is JSON-ready, or `value_raw` is text that may not be JSON."""

    key: str | None
    value: Any = None
    value_raw: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        """The message value as bytes on the wire (a `value_raw` keeps its invalid bytes)."""
        if self.value_raw is not None:
            return self.value_raw.encode("utf-8", "surrogateescape")
        return orjson.dumps(self.value)

    def to_line(self, timestamp_ms: int | None = None) -> dict[str, Any]:
        """The record as a `process-file` input line (SPEC §11)."""
        line: dict[str, Any] = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
        if self.key is not None:
            line["key"] = self.key
        if self.headers:
            line["headers"] = self.headers
        if self.value_raw is not None:
            line["value_raw"] = self.value_raw
        else:
            line["value"] = self.value
        return line


class StreamGenerator:
    def __init__(self, seed: int = 7, users: int = 1000, bad_share: float = 0.02, max_batch: int = 50) -> None:
        self.random = random.Random(seed)
        self.users = users
        self.bad_share = bad_share
        self.max_batch = max_batch
        # Zipf-like skew: a few users are very active.
        weights = [1.0 / (rank + 1) ** 1.1 for rank in range(users)]
        self.cumulative = list(itertools.accumulate(weights))  # choices() then bisects: O(log users)
        self.population = range(users)
        self.clock = START_MS
        self.sequence = 0

    def user(self) -> int:
        return self.random.choices(self.population, cum_weights=self.cumulative)[0]

    def event(self, user: int) -> dict[str, Any]:
        self.sequence += 1
        self.clock += self.random.randint(0, 2000)
        roll = self.random.random()
        event: dict[str, Any] = {
            "user_id": f"user-{user:06d}",
            "device_id": f"device-{user:06d}",
            "time": self.clock,
            "insert_id": f"ins-{self.sequence}",
            "platform": self.random.choice(("iOS", "Android", "Web")),
        }
        if self.random.random() < 0.01:  # a retried send: same insert_id again
            event["insert_id"] = f"ins-{max(1, self.sequence - 1)}"
        if roll < 0.7:
            event["event_type"] = self.random.choice(EVENT_TYPES)
            event["event_properties"] = {"value": self.random.randint(1, 100)}
            event["user_properties"] = self.operations()
        elif roll < 0.9:
            unsetting = self.random.random() < 0.1
            variant = self.random.choice((*VARIANTS, None)) if unsetting else self.random.choice(VARIANTS)
            event["event_type"] = "$exposure"
            event["event_properties"] = {"flag_key": self.random.choice(FLAGS), "variant": variant}
        else:
            flags = self.random.sample(FLAGS, self.random.randint(1, 3))
            variants = {flag: self.random.choice(VARIANTS) for flag in flags}
            event["event_type"] = "[Experiment] Assignment"
            event.pop("insert_id")  # derived, as the server SDKs do
            event["event_properties"] = {f"{flag}.variant": v for flag, v in variants.items()}
            event["user_properties"] = {"$set": {f"[Experiment] {flag}": v for flag, v in variants.items()}}
        return event

    def operations(self) -> dict[str, Any]:
        roll = self.random.random()
        if roll < 0.4:
            return {"$set": {"plan": self.random.choice(PLANS), "city": self.random.choice(CITIES)}}
        if roll < 0.6:
            return {"$add": {"purchases": 1}, "$setOnce": {"first_seen": self.clock}}
        if roll < 0.75:
            return {"$append": {"visited": self.random.choice(CITIES)}}
        if roll < 0.85:
            return {"$postInsert": {"tags": [self.random.choice(PLANS)]}, "$unset": {"trial": "-"}}
        return {"plan": self.random.choice(PLANS)}

    def bad(self) -> RawRecord:
        kind = self.random.randrange(5)
        if kind == 0:
            return RawRecord(None, value_raw="{not json")
        if kind == 1:
            return RawRecord(None, value={"events": "nope"})
        if kind == 2:
            return RawRecord(None, value={"user_id": "user-000001", "time": "2026-11-24T10:00:00Z", "event_type": "e"})
        if kind == 3:
            return RawRecord(None, value={"event_type": "e", "user_id": "null"})
        return RawRecord(None, value={"user_id": "user-000002", "event_type": "$exposure", "event_properties": {}})

    def records(self, events: int) -> Iterator[RawRecord]:
        """Raw messages holding about `events` events; each keyed by its user (one user a message)."""
        produced = 0
        while produced < events:
            if self.random.random() < self.bad_share:
                yield self.bad()
                produced += 1
                continue
            user = self.user()
            key = f"default/u:user-{user:06d}"
            if self.random.random() < 0.3:
                yield RawRecord(key, value=self.event(user))
                produced += 1
            else:
                size = min(self.random.randint(1, self.max_batch), events - produced)
                yield RawRecord(key, value={"api_key": "demo", "events": [self.event(user) for _ in range(size)]})
                produced += size
