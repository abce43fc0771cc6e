"""Quix Streams doing the worker's job, as faithfully as its API allows, for a same-broker comparison.

`quix_run(...)` returns the seconds a Quix Streams Application takes, exactly-once, to: consume the raw
topic (JSON; a bare event or an HTTP-V2 envelope), split envelopes into events (`.apply(expand=True)`),
drop invalid events, re-key by user (`group_by` → Quix's own repartition topic), then in one stateful
step (RocksDB state, changelog topic) drop duplicate insert_ids, apply the user-property operations to
the user's stored properties, rename exposures and assignments, and produce the enriched event.

Simplified against the worker (SPEC.md), in Quix's favour: no DLQ (bad input is skipped, not
written), no user-property delta topic, no experiment-property limit, no 1024-character truncation,
depth limit or `$skip_user_properties_sync`, `$add` only on numbers, list operations compare with
Python equality (`1 == 1.0 == True`), project is always `default`. Kept: the validation that decides
which events are emitted (so the output count is the worker's), dedupe per user key over 7 days, the
derived assignment insert_id, exposures that unset not being emitted.

quixstreams pins an older confluent-kafka (and pydantic) than this project, so it lives in its own
venv, `.venv-bench` (`make bench-setup`); `quix_run` starts this file there as a subprocess (which
also gives Quix its own interpreter and GIL, as a deployed Quix app would have). The clock starts
when the child has built its Application (topics created) and is about to `app.run()`, and stops when
a read_committed consumer in this process has seen `expected_events` records on the output topic,
i.e. when the last output is committed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
WEEK_MS = 7 * 86_400_000
EXP = "[Experiment] "
NULLISH = {"anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", "", '""', "{}", "lmy47d",
           "0", "-1", "00000000-0000-0000-0000-000000000000"}
OPS = ("$clearAll", "$unset", "$set", "$setOnce", "$add", "$append", "$prepend", "$preInsert", "$postInsert",
       "$remove")
OP_SET = frozenset(OPS)
# Details of the last quix_run: seconds to the first committed output (start-up: group join, assignment).
LAST_RUN: dict[str, float] = {}


def _python() -> Path | None:
    """The interpreter that has quixstreams: `.venv-bench`'s, else this one if it has it."""
    if BENCH_PYTHON.exists():
        return BENCH_PYTHON
    if importlib.util.find_spec("quixstreams") is not None:
        return Path(sys.executable)
    return None


def quix_available() -> bool:
    python = _python()
    if python is None:
        return False
    probe = subprocess.run([str(python), "-c", "import quixstreams"], capture_output=True, timeout=60)
    return probe.returncode == 0


# --- the job, as plain functions (the child wires them into a StreamingDataFrame) -------------------

def _identity(event: dict[str, Any], field: str, min_length: int = 5) -> None:
    value = event.get(field)
    if value is None:
        event.pop(field, None)
    elif len(value) < min_length or value.strip().lower() in NULLISH:
        del event[field]


def valid_event(event: Any, ingested_at: int) -> dict[str, Any] | None:
    """The event with ids cleaned, time set and project/ingestion added; None when the worker would DLQ it."""
    if not isinstance(event, dict):
        return None
    for field in ("user_id", "device_id", "insert_id"):
        if event.get(field) is not None and not isinstance(event[field], str):
            return None
    for field in ("event_properties", "user_properties"):
        if event.get(field) is None:
            event[field] = {}
        elif not isinstance(event[field], dict):
            return None
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or not event_type.strip():
        return None
    _identity(event, "user_id")
    _identity(event, "device_id")
    if "user_id" not in event and "device_id" not in event:
        return None
    when = event.get("time")
    if when is None:
        event["time"] = ingested_at
    elif isinstance(when, bool) or not isinstance(when, int | float) or when < 0:
        return None
    else:
        event["time"] = int(when)
    if event_type == "$exposure":
        flag = event["event_properties"].get("flag_key")
        if not isinstance(flag, str) or not flag.strip():
            return None
    for op, operand in event["user_properties"].items():
        if op in OP_SET and op != "$clearAll" and not isinstance(operand, dict):
            return None
    if event.get("insert_id") is None:
        event.pop("insert_id", None)
    event.pop("api_key", None)
    event["project_id"] = "default"
    event["ingested_at"] = ingested_at
    return event


def split(value: Any, ingested_at: int) -> list[dict[str, Any]]:
    """An envelope's valid events, or a bare event alone; [] for an invalid envelope."""
    if isinstance(value, dict) and "events" in value:
        events = value["events"]
        if not isinstance(events, list):
            return []
    else:
        events = [value]
    return [event for event in (valid_event(item, ingested_at) for item in events) if event is not None]


def user_key(event: dict[str, Any]) -> str:
    user_id = event.get("user_id")
    return f"default/u:{user_id}" if user_id is not None else f"default/d:{event['device_id']}"


def java_hash(text: str) -> int:
    data = text.encode("utf-16-le")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] | data[i + 1] << 8)) & 0xFFFFFFFF
    return h


def assignment_insert_id(event: dict[str, Any]) -> str:
    variants: dict[str, str] = {}
    for name, value in event["event_properties"].items():
        if name.endswith(".variant") and isinstance(value, str):
            flag = name[: -len(".variant")]
            prefixed = flag.startswith(EXP)
            flag = flag.removeprefix(EXP)
            if prefixed or flag not in variants:
                variants[flag] = value
    user_id, device_id = event.get("user_id"), event.get("device_id")
    canonical = f"{(user_id or 'None').strip()} {(device_id or 'None').strip()} " + "".join(
        f"{flag.strip()} {variants[flag].strip()} " for flag in sorted(variants))
    return f"{user_id} {device_id} {java_hash(canonical)} {event['time'] // 86_400_000}"


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def apply_ops(props: dict[str, Any], operations: dict[str, Any]) -> None:
    """$clearAll, $unset, $set, $setOnce, $add, list operations, then plain keys, in SPEC order."""
    for op in OPS:
        operand = operations.get(op)
        if operand is None:
            continue
        if op == "$clearAll":
            props.clear()
            continue
        for name, value in operand.items():
            if op == "$unset" or (op == "$set" and value is None):
                props.pop(name, None)
            elif op == "$set":
                props[name] = value
            elif op == "$setOnce":
                if name not in props and value is not None:
                    props[name] = value
            elif op == "$add":
                current = props.get(name, 0)
                if (isinstance(current, int | float) and not isinstance(current, bool)
                        and isinstance(value, int | float) and not isinstance(value, bool)):
                    props[name] = current + value
            else:
                items, current = _as_list(value), props.get(name)
                if op == "$remove":
                    if isinstance(current, list):
                        props[name] = [item for item in current if item not in items]
                    continue
                existing = _as_list(current)
                if op in ("$preInsert", "$postInsert"):
                    items = [item for i, item in enumerate(items) if item not in existing and item not in items[:i]]
                props[name] = items + existing if op in ("$prepend", "$preInsert") else existing + items
    for name, value in operations.items():
        if name not in OP_SET:
            if value is None:
                props.pop(name, None)
            else:
                props[name] = value


def enrich(event: dict[str, Any], state: Any) -> dict[str, Any] | None:
    """The stateful step: dedupe, user-property operations, experiment renames. None: nothing emitted."""
    event_type = event["event_type"]
    if event_type == "[Experiment] Assignment" and "insert_id" not in event:
        event["insert_id"] = assignment_insert_id(event)
    insert_id = event.get("insert_id")
    now = event["ingested_at"]
    if insert_id is not None:
        seen_key = "i:" + insert_id
        first = state.get(seen_key)
        if first is not None and now - first < WEEK_MS:
            return None
        state.set(seen_key, now)
    stored = state.get("p") or {}
    props = dict(stored)
    operations = event["user_properties"]
    emitted: dict[str, Any] | None = None
    persisted = True
    event_properties = event["event_properties"]
    if event_type == "$exposure":
        apply_ops(props, operations)
        flag, variant = event_properties.pop("flag_key"), event_properties.pop("variant", None)
        event["event_type"] = "[Experiment] Exposure"
        event_properties["[Experiment] Flag Key"] = flag
        event_properties["[Experiment] Variant"] = variant
        if "experiment_key" in event_properties:
            key = event_properties.pop("experiment_key")
            if key is not None:
                event_properties["[Experiment] Experiment Key"] = key
        if isinstance(variant, str) and variant:
            props[EXP + flag] = variant
        else:
            props.pop(EXP + flag, None)
            persisted = False  # the user left the experiment: the event is not persisted
    elif event_type == "[Experiment] Assignment":
        sets = {k: v for k, v in (operations.get("$set") or {}).items() if k.startswith(EXP)}
        for name in (operations.get("$unset") or {}):
            if name.startswith(EXP):
                props.pop(name, None)
        apply_ops(props, {"$set": sets})
        event["event_properties"] = {
            (EXP + name if name.endswith((".variant", ".details")) and not name.startswith(EXP) else name): value
            for name, value in event_properties.items()}
        emitted = {k: v for k, v in props.items() if not k.startswith(EXP)}
        emitted.update((k, v) for k, v in sets.items() if v is not None)
    else:
        apply_ops(props, operations)
    if props != stored:
        state.set("p", props)
    if not persisted:
        return None
    event["user_properties"] = emitted if emitted is not None else props
    event["billable"] = event["event_type"] not in (
        "[Experiment] Exposure", "[Experiment] Assignment", "[Experiment] Impression")
    return event


# --- the Quix Application (runs in .venv-bench) ---------------------------------------------------

def child(args: argparse.Namespace) -> None:
    import logging

    from quixstreams import Application, State
    from quixstreams.models import TopicConfig
    from quixstreams.models.serializers.exceptions import SerializationError

    def skip_bad_json(exc: Exception, message: Any, logger: logging.Logger) -> bool:
        return isinstance(exc, SerializationError)  # the worker DLQs it; here it is skipped

    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
        processing_guarantee="exactly-once", commit_interval=args.commit_interval, commit_every=args.commit_every,
        state_dir=args.state_dir, on_consumer_error=skip_bad_json, loglevel="WARNING",
        producer_extra_config={"compression.type": args.compression},
    )
    raw = app.topic(args.raw_topic, key_deserializer="bytes", value_deserializer="json")
    out = app.topic(args.out_topic, key_serializer="string", value_serializer="json",
                    config=TopicConfig(num_partitions=args.partitions, replication_factor=1))
    sdf = app.dataframe(raw)
    sdf = sdf.apply(lambda value, key, timestamp, headers: split(value, timestamp), expand=True, metadata=True)
    sdf = sdf.group_by(user_key, name="user", key_serializer="string", key_deserializer="string")

    def stateful(event: dict[str, Any], state: State) -> dict[str, Any] | None:
        return enrich(event, state)

    sdf = sdf.apply(stateful, stateful=True).filter(lambda event: event is not None)
    sdf.to_topic(out)
    Path(args.ready_file).write_text(str(time.time()), encoding="utf-8")
    app.run()


# --- the timed run (main venv) ---------------------------------------------------------------------

def quix_run(bootstrap: str, raw_topic: str, partitions: int, expected_events: int, workdir: Path,
             commit_interval: float = 0.1, commit_every: int = 5000, timeout_s: float | None = None,
             compression: str = "lz4") -> float:
    """Seconds until Quix has committed `expected_events` enriched events to its output topic.

    commit_interval/commit_every default to the worker's defaults (100 ms or 5000 messages, whichever
    first); Quix's own defaults are 5 s and 0. `compression`: its producer's, as the worker's (lz4).
    """
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    python = _python()
    if python is None:
        raise RuntimeError("quixstreams is not installed: run `make bench-setup`")
    tag = uuid.uuid4().hex[:8]
    out_topic, group = f"{raw_topic}.quix-{tag}", f"quix-bench-{tag}"
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / f"quix-{tag}.ready"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(out_topic, partitions, 1)]).values():
        future.result()
    counter = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-count", "enable.auto.commit": False,
                        "isolation.level": "read_committed", "fetch.wait.max.ms": 10})
    counter.assign([TopicPartition(out_topic, p, 0) for p in range(partitions)])
    command = [str(python), str(Path(__file__).resolve()), "--child", "--bootstrap", bootstrap,
               "--raw-topic", raw_topic, "--out-topic", out_topic, "--group", group,
               "--partitions", str(partitions), "--state-dir", str(workdir / f"quix-state-{tag}"),
               "--ready-file", str(ready), "--commit-interval", str(commit_interval),
               "--commit-every", str(commit_every), "--compression", compression]
    log_path = workdir / f"quix-{tag}.log"
    env = {**os.environ, "PYTHONPATH": ""}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"quix child did not start (see {log_path}):\n{log_path.read_text()[-2000:]}")
            time.sleep(0.01)
        started = time.monotonic()
        limit = started + (timeout_s if timeout_s is not None else 120 + expected_events / 2000)
        seen = 0
        LAST_RUN.clear()
        while seen < expected_events:
            seen += sum(1 for message in counter.consume(10_000, timeout=0.05) if not message.error())
            if seen and "first_output_s" not in LAST_RUN:
                LAST_RUN["first_output_s"] = time.monotonic() - started
            if seen < expected_events and (process.poll() is not None or time.monotonic() > limit):
                raise RuntimeError(f"quix stopped at {seen:,} of {expected_events:,} committed outputs "
                                   f"(exit {process.poll()}; see {log_path}):\n{log_path.read_text()[-2000:]}")
        elapsed = time.monotonic() - started
        LAST_RUN["seconds"] = elapsed
        return elapsed
    finally:
        counter.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        with contextlib.suppress(Exception):
            for future in admin.delete_topics([out_topic]).values():
                future.result()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap")
    parser.add_argument("--raw-topic")
    parser.add_argument("--out-topic")
    parser.add_argument("--group")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--state-dir")
    parser.add_argument("--ready-file")
    parser.add_argument("--commit-interval", type=float, default=0.1)
    parser.add_argument("--commit-every", type=int, default=5000)
    parser.add_argument("--compression", default="lz4", help="the producer's compression.type")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    standalone(args)


def standalone(args: argparse.Namespace) -> None:
    """`python -m benchmarks.quix --events N`: Quix against the transactional copy on one fresh raw stream."""
    import tempfile

    from benchmarks import e2e
    from dev.kafka import recorded_broker
    from dev.loadgen import StreamGenerator
    from dev.verify import produce_raw
    from worker.runtime.topics import admin_client, create_topics

    recorded = recorded_broker()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (recorded.bootstrap if recorded else None)
    if not bootstrap:
        raise SystemExit("no broker: `make kafka-up` first")
    settings = e2e.settings_for(bootstrap, f"quix{uuid.uuid4().hex[:6]}")
    create_topics(admin_client(settings), settings)
    records = list(StreamGenerator(seed=42, users=args.users, bad_share=0.001).records(args.events))
    produce_raw(settings, records)
    expected = count_expected(records)
    work = Path(tempfile.mkdtemp(prefix="bench-quix-"))
    quix_s = quix_run(bootstrap, settings.topics.raw, settings.partitions, expected, work,
                      commit_interval=args.commit_interval, commit_every=args.commit_every)
    copy_s = e2e.copy_baseline(settings, len(records))
    print(json.dumps({"events": args.events, "raw_messages": len(records), "enriched": expected,
                      "quix_events_per_s": round(args.events / quix_s), "quix_s": round(quix_s, 2),
                      "copy_events_per_s": round(args.events / copy_s), "copy_s": round(copy_s, 2),
                      "quix_first_output_s": round(LAST_RUN["first_output_s"], 2),
                      "quix_over_copy": round(copy_s / quix_s, 3)}))


def count_expected(records: list[Any]) -> int:
    """The enriched events this module's job emits for `records` (a dict stands in for the RocksDB state)."""

    class Store(dict[str, Any]):
        def set(self, key: str, value: Any) -> None:
            self[key] = value

    stores: dict[str, Store] = {}
    emitted = 0
    for record in records:
        if record.value_raw is not None:
            continue
        for event in split(json.loads(json.dumps(record.value)), 0):
            if enrich(event, stores.setdefault(user_key(event), Store())) is not None:
                emitted += 1
    return emitted


if __name__ == "__main__":
    main()
