"""The one load generator: a deterministic stream of raw messages (same seed, same stream) for the
demo, the tests, the stress suite and the benchmarks, as `RawRecord`s or as `process-file` lines.

Events are ~70% ordinary events with user-property operations (every operation of SPEC §3), ~20%
exposures (some unsetting, some with an experiment key) and ~10% assignments (insert_id derived,
flags with and without the `[Experiment] ` prefix). Users are Zipf-skewed; every tenth has only a
device id, and the bare events of every seventh carry the `project_id` header `shop`. A message
is a bare event (`bare_share`) or an HTTP-V2 envelope of 1 to `max_batch` events of one user
(small ones are the common case); `retry_share` of the messages are an SDK's retry of a recent
one (dropped by dedupe) and `bad_share` are bad input, one of each kind in BAD_RECORDS. `keyed`
messages carry their user key as Kafka key, as producers that key by user do (`skip_split`).
"""

from __future__ import annotations

import itertools
import json
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
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
API_KEY = "loadgen"
ANONYMOUS_EVERY = 10  # every tenth user sends a device id only
SHOP_EVERY = 7  # the bare events of every seventh user name the project `shop` in a header
RECENT = 50  # how far back an SDK retry reaches


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One raw message: `value` is JSON-ready, or `value_raw` is text that may not be JSON.
    `timestamp_ms` is the generator's clock; a producer leaves it to the broker."""

    key: str | None
    value: Any = None
    value_raw: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timestamp_ms: int | None = None

    def encoded(self) -> bytes:
        """The message value as bytes on the wire (a `value_raw` keeps its invalid bytes)."""
        if self.value_raw is not None:
            return self.value_raw.encode("utf-8", "surrogateescape")
        return orjson.dumps(self.value)

    def to_line(self) -> dict[str, Any]:
        """The record as a `process-file` input line (SPEC §11)."""
        line: dict[str, Any] = {} if self.timestamp_ms is None else {"timestamp": self.timestamp_ms}
        if self.key is not None:
            line["key"] = self.key
        if self.headers:
            line["headers"] = self.headers
        if self.value_raw is not None:
            line["value_raw"] = self.value_raw
        else:
            line["value"] = self.value
        return line


# One of each kind of bad input: malformed_json (twice: not JSON, not UTF-8), invalid_envelope,
# invalid_time, missing_user_identity, invalid_exposure, invalid_user_properties, invalid_event.
# Those that name a user carry its user key, as a keying producer sends them: the good event
# beside the bad one in the last envelope must land where that user's other events are, or
# its place in the user's order would depend on partition timing. Like every generated event it
# has an insert_id (assignments derive theirs), so a copy processed again is dropped by dedupe.
BAD_RECORDS = (
    RawRecord(None, value_raw="{not json"),
    RawRecord(None, value_raw='{"event_type": "e", "user_id": "caf\udce9-user"}'),
    RawRecord(None, value={"events": "nope"}),
    RawRecord("default/u:user-000001",
              value={"user_id": "user-000001", "event_type": "e", "time": "2026-11-24T10:00:00Z"}),
    RawRecord(None, value={"user_id": "null", "event_type": "e"}),
    RawRecord("default/u:user-000002",
              value={"user_id": "user-000002", "event_type": "$exposure", "event_properties": {}}),
    RawRecord("default/u:user-000003",
              value={"user_id": "user-000003", "event_type": "e", "user_properties": {"$set": 5}}),
    RawRecord("default/u:user-000004", value={"api_key": API_KEY, "events": [
        5, {"event_type": "e", "user_id": "user-000004", "insert_id": "beside-a-bad-one"}]}),
)


def encode_line(record: RawRecord) -> bytes:
    """`record` as one JSON Lines line of `process-file` input."""
    line = record.to_line()
    try:
        return orjson.dumps(line) + b"\n"
    except orjson.JSONEncodeError:  # a lone surrogate (process-file's escape for a bad byte): json keeps it
        return json.dumps(line).encode() + b"\n"


def events_in(record: RawRecord) -> int:
    """How many events a record holds (an envelope's, or one), bad ones included; 0 for non-JSON."""
    value = record.value
    if record.value_raw is not None or not isinstance(value, dict):
        return 0
    if "events" in value:
        return len(value["events"]) if isinstance(value["events"], list) else 0
    return 1


@dataclass(slots=True)
class Written:
    records: int = 0
    events: int = 0  # events inside well-formed messages, bad ones included
    bytes: int = 0


class StreamGenerator:
    def __init__(self, seed: int = 7, users: int = 1000, *, bad_share: float = 0.001, retry_share: float = 0.005,
                 bare_share: float = 0.75, max_batch: int = 50, keyed: bool = True, zipf_s: float = 1.0) -> None:
        self.random = random.Random(seed)
        self.bad_share, self.retry_share, self.bare_share = bad_share, retry_share, bare_share
        self.max_batch, self.keyed = max_batch, keyed
        # Zipf-like skew: a few users are very active; choices() bisects the cumulative weights.
        self.cumulative = list(itertools.accumulate(1.0 / (rank + 1) ** zipf_s for rank in range(users)))
        self.population = range(users)
        self.clock = START_MS
        self.sequence = 0
        self.recent: deque[RawRecord] = deque(maxlen=RECENT)

    # ---- the stream -----------------------------------------------------------------------------
    def messages(self) -> Iterator[RawRecord]:
        """The endless stream of raw messages, each stamped with the generator's clock."""
        while True:
            self.clock += self.random.randint(0, 3)
            roll = self.random.random()
            if roll < self.bad_share:
                bad = self.random.choice(BAD_RECORDS)
                yield replace(bad, key=bad.key if self.keyed else None, timestamp_ms=self.clock)
            elif roll < self.bad_share + self.retry_share and self.recent:
                yield replace(self.random.choice(self.recent), timestamp_ms=self.clock)
            else:
                record = self.message()
                self.recent.append(record)
                yield record

    def records(self, events: int) -> Iterator[RawRecord]:
        """Messages until they hold about `events` events (a message without any counts as one)."""
        produced = 0
        for record in self.messages():
            if produced >= events:
                return
            produced += max(1, events_in(record))
            yield record

    def write(self, out: IO[bytes], records: int) -> Written:
        """`records` messages as `process-file` input lines, written to `out`."""
        written = Written()
        for record in itertools.islice(self.messages(), records):
            line = encode_line(record)
            out.write(line)
            written.records += 1
            written.events += events_in(record)
            written.bytes += len(line)
        return written

    # ---- one message ----------------------------------------------------------------------------
    def message(self) -> RawRecord:
        user = self.random.choices(self.population, cum_weights=self.cumulative)[0]
        headers: dict[str, str] = {}
        value: dict[str, Any]
        if self.random.random() < self.bare_share:
            value = self.event(user)
            if user % SHOP_EVERY == 0:
                headers["project_id"] = "shop"
        else:
            size = 1 + int((self.max_batch - 1) * self.random.random() ** 3)
            value = {"api_key": API_KEY, "events": [self.event(user) for _ in range(size)]}
            if self.random.random() < 0.1:
                value["options"] = {"min_id_length": 3}
        key = user_key(user, headers.get("project_id", "default")) if self.keyed else None
        return RawRecord(key, value=value, headers=headers, timestamp_ms=self.clock)

    def event(self, user: int) -> dict[str, Any]:
        self.sequence += 1
        event: dict[str, Any] = {}
        if user % ANONYMOUS_EVERY != 0:
            event["user_id"] = f"user-{user:06d}"
        event["device_id"] = f"device-{user:06d}"
        # Mostly a minute late at most, sometimes a day; sometimes no time (the ingestion time then).
        lag = self.random.randint(0, 60_000) if self.random.random() < 0.99 else self.random.randint(0, 86_400_000)
        if self.random.random() < 0.95:
            event["time"] = self.clock - lag + (0.5 if self.random.random() < 0.05 else 0)
        event["platform"] = self.random.choice(PLATFORMS)
        event["session_id"] = self.clock // 1_800_000
        roll = self.random.random()
        if roll < 0.7:
            event["event_type"] = self.random.choice(EVENT_TYPES)
            event["insert_id"] = f"{user}-{self.sequence}"
            event["event_properties"] = {"value": self.random.randint(1, 100), "path": f"/p/{self.sequence % 500}"}
            event["user_properties"] = self.operations()
        elif roll < 0.9:
            event["event_type"] = "$exposure"
            event["insert_id"] = f"{user}-{self.sequence}"
            event["event_properties"] = self.exposure()
        else:
            event["event_type"] = "[Experiment] Assignment"  # no insert_id: derived as the server SDKs do
            event["event_properties"], event["user_properties"] = self.assignment()
        return event

    def exposure(self) -> dict[str, Any]:
        flag = self.random.choice(FLAGS)
        unset = self.random.random() < 0.05
        variant = self.random.choice((None, "")) if unset else self.random.choice(VARIANTS)
        properties: dict[str, Any] = {"flag_key": flag, "variant": variant}
        if self.random.random() < 0.5:
            properties["experiment_key"] = f"exp-{flag}"
        return properties

    def assignment(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(event properties, user properties) of an assignment of 1–5 flags."""
        flags = self.random.sample(FLAGS, self.random.randint(1, 5))
        variants = {flag: self.random.choice(VARIANTS) for flag in flags}
        prefix = "[Experiment] " if self.random.random() < 0.2 else ""
        properties: dict[str, Any] = {"[Experiment] Environment Name": "production"}
        for flag, variant in variants.items():
            properties[f"{prefix}{flag}.variant"] = variant
            properties[f"{prefix}{flag}.details"] = f"v3 rule:{variant}"
        return properties, {"$set": {f"[Experiment] {flag}": v for flag, v in variants.items()}}

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


def user_key(user: int, project: str = "default") -> str:
    """The SPEC §1 user key of generated user `user` in `project`."""
    if user % ANONYMOUS_EVERY == 0:
        return f"{project}/d:device-{user:06d}"
    return f"{project}/u:user-{user:06d}"


def generate(path: Path, records: int, seed: int, users: int) -> Written:
    """`records` messages of the unkeyed stream as a `process-file` input file (the benchmarks')."""
    with path.open("wb", buffering=1 << 20) as out:
        return StreamGenerator(seed, users, keyed=False).write(out, records)
