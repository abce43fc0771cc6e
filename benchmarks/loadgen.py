"""A deterministic `process-file` input for the benchmarks: raw messages as JSON Lines (SPEC §11).

Counted in records (input lines), not events: ~75% bare events and ~25% HTTP-V2 envelopes of
1–50 events (small batches are the common case), so a record holds about four events. Events are
~70% ordinary events with user-property operations, ~20% exposures (some unsetting) and ~10%
assignments (insert_id derived); users are Zipf-skewed over `users` ids, a tenth of them anonymous
(device id only), in two projects; ~0.5% of records are SDK retries of a recent record (dropped by
dedupe) and ~0.1% are bad input of several kinds. Same seed, same bytes.

`dev/loadgen.py` generates the demo stream as Python objects and picks users with per-call
weights; this one writes encoded lines straight to a file, fast enough for millions of records.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

START_MS = 1_763_978_400_000
EVENT_TYPES = ("page_view", "add_to_cart", "purchase", "search", "session_start", "button_click")
PLANS = ("free", "pro", "team", "enterprise")
CITIES = ("Paris", "Oslo", "Lagos", "Lima", "Pune", "Osaka")
FLAGS = tuple(f"flag-{number:02d}" for number in range(30))
VARIANTS = ("control", "treatment", "on", "off", "a", "b")
PLATFORMS = ("iOS", "Android", "Web")
BAD_VALUES: tuple[dict[str, Any], ...] = (
    {"value_raw": "{not json"},
    {"value_raw": "{\"event_type\": \"e\", \"user_id\": \"caf\udce9-user\"}"},  # invalid UTF-8 bytes
    {"value": {"events": "nope"}},
    {"value": {"user_id": "user-000001", "event_type": "e", "time": "2026-11-24T10:00:00Z"}},
    {"value": {"user_id": "null", "event_type": "e"}},
    {"value": {"user_id": "user-000002", "event_type": "$exposure", "event_properties": {}}},
    {"value": {"user_id": "user-000003", "event_type": "e", "user_properties": {"$set": 5}}},
    {"value": {"api_key": "bench", "events": [5, {"event_type": "e", "user_id": "user-000004"}]}},
)


@dataclass(slots=True)
class Written:
    records: int = 0
    events: int = 0  # events inside well-formed messages, bad ones included
    bytes: int = 0


class BenchStream:
    def __init__(self, seed: int = 20_261_124, users: int = 100_000, zipf_s: float = 1.0) -> None:
        self.random = random.Random(seed)
        self.users = users
        self.cumulative = list(itertools.accumulate(1.0 / (rank + 1) ** zipf_s for rank in range(users)))
        self.clock = START_MS
        self.sequence = 0
        self.recent: list[tuple[bytes, int]] = []

    def write(self, out: IO[bytes], records: int) -> Written:
        written = Written()
        for line, events in itertools.islice(self.lines(), records):
            out.write(line)
            written.records += 1
            written.events += events
            written.bytes += len(line)
        return written

    def lines(self) -> Iterator[tuple[bytes, int]]:
        """Encoded input lines, each with the number of events it holds."""
        draw = self.random.random
        while True:
            self.clock += self.random.randint(0, 3)
            roll = draw()
            if roll < 0.001:
                record = self.random.choice(BAD_VALUES)
                events = len(record["value"].get("events", [1])) if "value" in record else 0
                # json, not orjson: a value_raw may hold a lone surrogate (process-file's escape for a bad byte)
                yield json.dumps({"timestamp": self.clock, **record}).encode() + b"\n", events
            elif roll < 0.006 and self.recent:  # an SDK retry: the same message again, later
                value, events = self.random.choice(self.recent)
                yield b'{"timestamp":%d,"value":%s}\n' % (self.clock, value), events
            else:
                yield self.message()

    def message(self) -> tuple[bytes, int]:
        user = self.random.choices(range(self.users), cum_weights=self.cumulative)[0]
        headers = b""
        if self.random.random() < 0.75:
            value: Any = self.event(user)
            events = 1
            if user % 7 == 0:
                headers = b'"headers":{"project_id":"shop"},'
        else:
            events = 1 + int(49 * self.random.random() ** 3)
            value = {"api_key": "bench", "events": [self.event(user) for _ in range(events)]}
            if self.random.random() < 0.1:
                value["options"] = {"min_id_length": 3}
        encoded = orjson.dumps(value)
        self.recent.append((encoded, events))
        if len(self.recent) > 50:
            del self.recent[0]
        return b'{"timestamp":%d,%s"value":%s}\n' % (self.clock, headers, encoded), events

    def event(self, user: int) -> dict[str, Any]:
        self.sequence += 1
        roll = self.random.random()
        event: dict[str, Any] = {}
        if user % 10 != 0:
            event["user_id"] = f"user-{user:06d}"
        event["device_id"] = f"device-{user:06d}"
        lag = self.random.randint(0, 60_000) if self.random.random() < 0.99 else self.random.randint(0, 86_400_000)
        if self.random.random() < 0.95:
            event["time"] = self.clock - lag + (0.5 if self.random.random() < 0.05 else 0)
        event["platform"] = self.random.choice(PLATFORMS)
        event["session_id"] = self.clock // 1_800_000
        if roll < 0.7:
            event["event_type"] = self.random.choice(EVENT_TYPES)
            event["insert_id"] = f"{user}-{self.sequence}"
            event["event_properties"] = {"value": self.random.randint(1, 100), "path": f"/p/{self.sequence % 500}"}
            event["user_properties"] = self.operations()
        elif roll < 0.9:
            event["event_type"] = "$exposure"
            event["insert_id"] = f"{user}-{self.sequence}"
            flag = self.random.choice(FLAGS)
            unset = self.random.random() < 0.05
            variant = self.random.choice((None, "")) if unset else self.random.choice(VARIANTS)
            event["event_properties"] = {"flag_key": flag, "variant": variant}
            if self.random.random() < 0.5:
                event["event_properties"]["experiment_key"] = f"exp-{flag}"
        else:
            event["event_type"] = "[Experiment] Assignment"  # no insert_id: derived as the server SDKs do
            flags = self.random.sample(FLAGS, self.random.randint(1, 5))
            variants = {flag: self.random.choice(VARIANTS) for flag in flags}
            prefix = "[Experiment] " if self.random.random() < 0.2 else ""
            properties: dict[str, Any] = {"[Experiment] Environment Name": "production"}
            for flag, variant in variants.items():
                properties[f"{prefix}{flag}.variant"] = variant
                properties[f"{prefix}{flag}.details"] = f"v3 rule:{variant}"
            event["event_properties"] = properties
            event["user_properties"] = {"$set": {f"[Experiment] {flag}": v for flag, v in variants.items()}}
        return event

    def operations(self) -> dict[str, Any]:
        roll = self.random.random()
        choice = self.random.choice
        if roll < 0.35:
            return {"$set": {"plan": choice(PLANS), "city": choice(CITIES)}}
        if roll < 0.55:
            return {"$add": {"purchases": 1, "revenue": choice(("9.99", "19.5", " 5 "))},
                    "$setOnce": {"first_seen": self.clock}}
        if roll < 0.65:
            return {"$postInsert": {"tags": [choice(PLANS), choice(CITIES)]}, "$unset": {"trial": "-"}}
        if roll < 0.70:
            return {"$preInsert": {"badges": choice(("gold", "silver", "bronze"))}}
        if roll < 0.74:
            return {"$append": {"visited": choice(CITIES)}, "$prepend": {"recent_plans": choice(PLANS)}}
        if roll < 0.77:  # keeps the appended lists bounded, as real clients do
            return {"$remove": {"visited": choice(CITIES), "recent_plans": choice(PLANS)}}
        if roll < 0.78:
            return {"$clearAll": "-", "$set": {"plan": "free"}}
        if roll < 0.90:
            return {"plan": choice(PLANS), "level": self.random.randint(1, 50)}
        return {}


def generate(path: Path, records: int, seed: int, users: int) -> Written:
    with path.open("wb", buffering=1 << 20) as out:
        return BenchStream(seed, users).write(out, records)
