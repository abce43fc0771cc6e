"""`experiment-worker process-file` (SPEC §11): the whole pipeline over a JSON Lines file.

Each line is one raw message; it goes through the same core `Pipeline` as the Kafka runner, so the
two paths produce the same records. The file is streamed: memory holds the
users' state and every insert_id seen (the dedupe entries), never the events themselves.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from worker.core.config import CoreConfig
from worker.core.experiment_health import ExperimentHealth
from worker.core.limit import ExperimentRegistry
from worker.core.pipeline import Outcome, Pipeline
from worker.core.records import DlqRecord, RawMessage
from worker.core.stores import PartitionStores, restore_user
from worker.errors import InputFileError

FILE_TOPIC = "file"
LINE = orjson.OPT_APPEND_NEWLINE
# Input and record files go through 1 MiB buffers, not the default 8 KiB (a 100,000-record input
# makes ~430 MB of records): system time 0.58 -> 0.32 s, wall 6.95 -> 6.55 s (3 runs each, interleaved).
FILE_BUFFER = 1 << 20
# orjson reads integers beyond 64 bits as floats; lines with a run of 19 or more digits take the
# exact path. Finding such a run: digits become "0", all else ".", then a plain substring search
# (ten times faster than a regular expression over every line).
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x2E for byte in range(256))
_LONG_RUN = b"0" * 19


@dataclass(slots=True)
class Summary:
    records: int = 0
    events: int = 0
    deltas: int = 0
    duplicates: int = 0
    unset_exposures: int = 0
    limit_dropped: int = 0
    add_ignored: int = 0
    users: int = 0
    dlq: Counter[str] = field(default_factory=Counter)

    def count(self, outcome: Outcome) -> None:
        self.duplicates += outcome.duplicate
        self.unset_exposures += outcome.unset_exposure
        self.limit_dropped += outcome.limit_dropped
        self.add_ignored += outcome.add_ignored
        self.events += outcome.event is not None
        self.deltas += outcome.delta is not None
        if outcome.dlq is not None:
            self.dlq[outcome.dlq.reason] += 1

    def line(self, seconds: float) -> str:
        rate = self.records / seconds if seconds > 0 else 0.0
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(self.dlq.items()))
        dlq = f"{sum(self.dlq.values()):,} to the DLQ" + (f" ({reasons})" if reasons else "")
        return (
            f"process-file: {self.records:,} records -> {self.events:,} events, {self.deltas:,} deltas, {dlq}; "
            f"{self.duplicates:,} duplicates dropped, {self.unset_exposures:,} unset exposures, "
            f"{self.limit_dropped:,} over the experiment-property limit; {self.users:,} users in state; "
            f"{seconds:.2f} s ({rate:,.0f} records/s)"
        )


def read_message(line: bytes, offset: int, now_ms: int) -> RawMessage:
    """One input line as the raw message it stands for (SPEC §11)."""
    exact = _LONG_RUN in line.translate(_DIGITS)
    try:
        record: Any = json.loads(line) if exact else orjson.loads(line)
    except (orjson.JSONDecodeError, ValueError):
        try:
            record, exact = json.loads(line), True
        except ValueError as exc:
            raise InputFileError(f"line {offset + 1} is not a JSON record: {exc}") from exc
    if type(record) is not dict or not ("value" in record or "value_raw" in record):
        raise InputFileError(f"line {offset + 1} is not a record with `value` or `value_raw`")
    decoded = None
    if "value_raw" in record:
        value = str(record["value_raw"]).encode("utf-8", "surrogateescape")
    elif exact:
        text = json.dumps(record["value"], separators=(",", ":"), ensure_ascii=False)
        value = text.encode("utf-8", "surrogatepass")
    else:
        # Already decoded by orjson, exactly as the split stage would decode `value`: hand it on.
        decoded = record["value"]
        value = orjson.dumps(decoded)
    timestamp = record.get("timestamp")
    key = record.get("key")
    headers = record.get("headers") or {}
    return RawMessage(
        FILE_TOPIC, 0, offset, now_ms if timestamp is None else int(timestamp), value,
        None if key is None else str(key).encode("utf-8"),
        tuple((str(name), str(text).encode("utf-8")) for name, text in headers.items()), decoded,
    )


def read_messages(path: Path, now_ms: int) -> Iterator[RawMessage]:
    """Offsets are 0-based line numbers, blank lines counted and skipped."""
    with path.open("rb", buffering=FILE_BUFFER) as lines:
        for offset, line in enumerate(lines):
            if line.strip():
                yield read_message(line, offset, now_ms)


def load_state(path: Path, stores: PartitionStores, registry: ExperimentRegistry) -> None:
    """`--state-in`: users' properties; their experiment property names are admitted first (§6)."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
                key, properties = row["key"], row["user_properties"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputFileError(f"--state-in line {number}: expected {{\"key\", \"user_properties\"}}") from exc
            if type(key) is not str or type(properties) is not dict:
                raise InputFileError(f"--state-in line {number}: key must be a string, user_properties an object")
            restore_user(stores, registry, key, properties)


def process_file(
    input_path: Path,
    out_dir: Path,
    config: CoreConfig,
    now_ms: int,
    state_in: Path | None = None,
    progress: IO[str] | None = None,
    health: ExperimentHealth | None = None,
) -> Summary:
    """Each line split, then its events processed, as the runner does; `health` (--flags) sees each."""
    stores = PartitionStores()
    pipeline = Pipeline(config)
    if state_in is not None:
        load_state(state_in, stores, pipeline.registry)
    if health is not None:  # the users of --state-in count from the start
        health.load_all(stores.iter_states())
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    meter = Progress(progress, input_path.stat().st_size) if progress is not None else None
    with RecordFiles(out_dir, summary) as out:
        for message in read_messages(input_path, now_ms):
            summary.records += 1
            split = pipeline.split(message)
            for rejected in split.rejected:
                out.rejected(rejected)
            for user_event in split.events:
                outcome = pipeline.process(user_event, stores)
                out.outcome(outcome)
                if health is not None:
                    health.observe(user_event, outcome)
            stores.commit()
            pipeline.registry.commit()
            if health is not None:
                health.commit()
            if meter is not None:
                meter.update(summary.records, message.offset)
    if meter is not None:
        meter.finish()
    summary.users = write_state(out_dir / "state.jsonl", stores)
    return summary


class RecordFiles:
    """The record files of a run (events, deltas, DLQ), and the summary's count of what went in."""

    def __init__(self, out_dir: Path, summary: Summary) -> None:
        self.summary = summary
        self.events = (out_dir / "events.jsonl").open("wb", buffering=FILE_BUFFER)
        self.deltas = (out_dir / "deltas.jsonl").open("wb", buffering=FILE_BUFFER)
        self.dlq = (out_dir / "dlq.jsonl").open("wb", buffering=FILE_BUFFER)

    def __enter__(self) -> RecordFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for file in (self.events, self.deltas, self.dlq):
            file.close()

    def rejected(self, record: DlqRecord) -> None:
        self.summary.dlq[record.reason] += 1
        self.dlq.write(orjson.dumps(record.to_json(), option=LINE))

    def outcome(self, outcome: Outcome) -> None:
        self.summary.count(outcome)
        if outcome.event is not None:
            self.events.write(orjson.dumps(outcome.event, option=LINE))
        if outcome.delta is not None:
            self.deltas.write(orjson.dumps(outcome.delta, option=LINE))
        if outcome.dlq is not None:
            self.dlq.write(orjson.dumps(outcome.dlq.to_json(), option=LINE))


def write_state(path: Path, stores: PartitionStores) -> int:
    """One line per user that has a state record, sorted by key, in the `--state-in` format."""
    rows = sorted(stores.iter_states())
    with path.open("wb") as out:
        for key, properties in rows:
            out.write(orjson.dumps({"key": key, "user_properties": properties}) + b"\n")
    return len(rows)


class Progress:
    """A one-line progress meter for a terminal; silent elsewhere."""

    def __init__(self, stream: IO[str], total_bytes: int) -> None:
        self.stream, self.total_bytes = stream, total_bytes
        self.started = self.shown = time.monotonic()
        self.bytes_per_line = 0.0

    def update(self, records: int, offset: int) -> None:
        now = time.monotonic()
        if now - self.shown < 0.5:
            return
        self.shown = now
        self.stream.write(f"\r  {records:,} records, {records / (now - self.started):,.0f}/s ")
        self.stream.flush()

    def finish(self) -> None:
        if self.shown != self.started:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()
