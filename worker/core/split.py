"""The split stage (SPEC §2): one raw message in, validated per-user events and DLQ records out.

Each event of an envelope is judged on its own; the first failed check decides the reason.
Nothing raises out of `split_message`: bad input, and any bug met while judging one event, become
DLQ records, so a bad message can never stop a partition.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from worker.core import reasons
from worker.core.config import CoreConfig
from worker.core.dedupe import assignment_insert_id
from worker.core.experiments import ASSIGNMENT, EXPOSURE, IMPRESSION, exposure_problem
from worker.core.identity import is_project_id, is_usable_id, user_key
from worker.core.operations import invalid_operation
from worker.core.records import DlqRecord, RawMessage, Source, UserEvent
from worker.core.syntax import JSON, NOT_JSON, check_json
from worker.core.values import DEEP, FINE, LONG, JsonObject, encode_unit, scan, truncate_strings

DEFAULT_PROJECT = "default"
PROJECT_HEADER = "project_id"
SKIP_SYNC = "$skip_user_properties_sync"
ID_FIELDS = ("user_id", "device_id", "insert_id")
# Output times are 64-bit integers (Kafka timestamps, Avro long); a larger `time` cannot be emitted.
TIME_LIMIT_MS = 2**63
PROPERTY_FIELDS = ("event_properties", "user_properties")
# Fields the worker sets itself; everything else at the top level passes through (SPEC §8.1).
DERIVED_FIELDS = frozenset(
    {"project_id", "event_type", "time", "billable", "ingested_at", "api_key", SKIP_SYNC, *ID_FIELDS,
     *PROPERTY_FIELDS}
)


class Rejection(NamedTuple):
    reason: str
    detail: str


class Split(NamedTuple):
    events: list[UserEvent]
    rejected: list[DlqRecord]


# judge(event, project, min_id_length, ingested_at, source, config): `judge_event` below.
Judge = Callable[[Any, str, int, int, Source, CoreConfig], "UserEvent | Rejection"]


def split_message(message: RawMessage, config: CoreConfig, judge: Judge | None = None) -> Split:
    """Decode, validate and key every event of one raw message (each event judged by `judge`)."""
    judge = judge_event if judge is None else judge
    decoded = decode_message(message, config)
    if isinstance(decoded, Rejection):
        return Split([], [reject_message(message, decoded)])
    if "events" in decoded:
        return split_envelope(message, decoded, config, judge)
    project = header_project(message)
    if isinstance(project, Rejection):
        return Split([], [reject_message(message, project)])
    judged = judge_safely(judge, decoded, project, config.min_id_length, message, None, config)
    if isinstance(judged, Rejection):
        return Split([], [reject_message(message, judged)])
    return Split([judged], [])


def decode_message(message: RawMessage, config: CoreConfig) -> JsonObject | Rejection:
    """The message value as a JSON object, or why it is not one (the first four checks of §2)."""
    value = message.value
    if value is None:
        return Rejection(reasons.MALFORMED_JSON, "the message has no value")
    too_large = len(value) > config.max_message_bytes
    if too_large and message.decoded is None:
        # Not JSON comes first (§2), so the value is read, but nothing of one rejected whole is built.
        verdict, problem = check_json(value)
        if verdict == NOT_JSON:
            return Rejection(reasons.MALFORMED_JSON, f"not UTF-8 JSON: {problem}")
        if verdict == JSON:
            return too_large_rejection(value, config)
    try:
        decoded: Any = orjson.loads(value) if message.decoded is None else message.decoded
    except orjson.JSONDecodeError as exc:
        if "depth limit" not in str(exc):
            return Rejection(reasons.MALFORMED_JSON, f"not UTF-8 JSON: {exc}")
        # JSON nested past orjson's 1024 levels: the size check comes before the depth check (§2).
        if not too_large:
            return Rejection(reasons.INVALID_EVENT, f"nesting deeper than {config.max_depth}: {exc}")
    if too_large:
        return too_large_rejection(value, config)
    if type(decoded) is not dict:
        return Rejection(reasons.INVALID_ENVELOPE, f"the value is a JSON {type(decoded).__name__}, not an object")
    events = decoded.get("events", [])
    if type(events) is not list:
        return Rejection(reasons.INVALID_ENVELOPE, "`events` is not an array")
    if len(events) > config.max_events_per_message:
        return Rejection(
            reasons.PAYLOAD_TOO_LARGE,
            f"{len(events)} events is over the {config.max_events_per_message} event limit",
        )
    return decoded


def too_large_rejection(value: bytes, config: CoreConfig) -> Rejection:
    return Rejection(reasons.PAYLOAD_TOO_LARGE, f"{len(value)} bytes is over the {config.max_message_bytes} byte limit")


def split_envelope(message: RawMessage, envelope: JsonObject, config: CoreConfig, judge: Judge) -> Split:
    project = envelope_project(envelope, config)
    if isinstance(project, Rejection):
        return Split([], [reject_message(message, project)])
    min_id_length = envelope_min_id_length(envelope, config)
    accepted: list[UserEvent] = []
    rejected: list[DlqRecord] = []
    for index, event in enumerate(envelope["events"]):
        judged = judge_safely(judge, event, project, min_id_length, message, index, config)
        if isinstance(judged, Rejection):
            rejected.append(reject_event(message, envelope, index, judged))
        else:
            accepted.append(judged)
    return Split(accepted, rejected)


def envelope_project(envelope: JsonObject, config: CoreConfig) -> str | Rejection:
    if config.projects is None:
        return DEFAULT_PROJECT
    api_key = envelope.get("api_key")
    project = config.projects.get(api_key) if type(api_key) is str else None
    if project is None:
        shown = "missing" if api_key is None else "unknown"
        return Rejection(reasons.INVALID_API_KEY, f"api_key is {shown}")
    return project


def envelope_min_id_length(envelope: JsonObject, config: CoreConfig) -> int:
    """`options.min_id_length` when it is a non-negative integer, else the setting."""
    options = envelope.get("options")
    override = options.get("min_id_length") if type(options) is dict else None
    return override if type(override) is int and override >= 0 else config.min_id_length


def header_project(message: RawMessage) -> str | Rejection:
    raw = message.header(PROJECT_HEADER)
    if raw is None:
        return DEFAULT_PROJECT
    try:
        project = raw.decode("utf-8")
    except UnicodeDecodeError:
        project = ""
    if not is_project_id(project):
        return Rejection(reasons.INVALID_ENVELOPE, "the project_id header does not match [A-Za-z0-9_.-]+")
    return project


def judge_safely(judge: Judge, event: Any, project: str, min_id_length: int, message: RawMessage,
                 index: int | None, config: CoreConfig) -> UserEvent | Rejection:
    try:
        return judge(event, project, min_id_length, message.timestamp_ms,
                           Source(message.topic, message.partition, message.offset, index), config)
    except Exception as exc:  # a bug must cost one event, never the partition
        return Rejection(reasons.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")


def judge_event(
    event: Any, project: str, min_id_length: int, ingested_at: int, source: Source, config: CoreConfig
) -> UserEvent | Rejection:
    """Validate one event, in the order of checks of SPEC §2, and normalise it: one walk of the
    event for depth and long strings, then one look at each field."""
    if type(event) is not dict:
        return Rejection(reasons.INVALID_EVENT, f"an event must be an object, not a JSON {type(event).__name__}")
    found = scan_fields(event, config)
    if found == DEEP:
        return Rejection(reasons.INVALID_EVENT, f"nesting deeper than {config.max_depth}")
    problem = shape_problem(event)
    if problem is not None:
        return problem
    user_id = kept_id(event.get("user_id"), min_id_length)
    device_id = kept_id(event.get("device_id"), min_id_length)
    if user_id is None and device_id is None:
        return Rejection(
            reasons.MISSING_USER_IDENTITY,
            f"no usable user_id or device_id (min_id_length {min_id_length}, placeholders removed)",
        )
    problem = content_problem(event)
    if problem is not None:
        return problem
    normalised = normalise(event, project, user_id, device_id, ingested_at, found == LONG, config)
    return UserEvent(user_key(project, user_id, device_id), normalised, source, event.get(SKIP_SYNC) is True)


def scan_fields(event: JsonObject, config: CoreConfig) -> int:
    """DEEP when any field nests too deep; LONG when a property map holds a string or key to cut."""
    found = FINE
    for name, item in event.items():
        kind = type(item)
        if kind is dict or kind is list:
            inner = scan(item, 2, config.max_depth, config.max_string_length)
            if inner == DEEP:
                return DEEP
            if inner == LONG and (name == "event_properties" or name == "user_properties"):
                found = LONG
    return found


def shape_problem(event: JsonObject) -> Rejection | None:
    """The checks of SPEC §2 on the fields' types, up to `missing_event_type`."""
    for name in PROPERTY_FIELDS:
        value = event.get(name)
        if value is not None and type(value) is not dict:
            return Rejection(reasons.INVALID_EVENT, f"{name} must be an object")
    for name in ID_FIELDS:
        value = event.get(name)
        if value is not None and type(value) is not str:
            return Rejection(reasons.INVALID_EVENT, f"{name} must be a string")
    event_type = event.get("event_type")
    if type(event_type) is not str or not event_type.strip():
        return Rejection(reasons.MISSING_EVENT_TYPE, "event_type is missing, not a string, or blank")
    return None


def content_problem(event: JsonObject) -> Rejection | None:
    """The checks of SPEC §2 after the identity: time, exposure fields, operation operands."""
    time = event.get("time")
    if time is not None and ((type(time) is not int and type(time) is not float) or not 0 <= time < TIME_LIMIT_MS):
        return Rejection(reasons.INVALID_TIME, "time must be a number of milliseconds >= 0 and below 2^63")
    event_type = event["event_type"]
    if event_type in (EXPOSURE, IMPRESSION):
        exposure = exposure_problem(event.get("event_properties") or {})
        if exposure is not None:
            return Rejection(reasons.INVALID_EXPOSURE, exposure)
    operation = invalid_operation(event.get("user_properties") or {})
    if operation is not None:
        return Rejection(reasons.INVALID_USER_PROPERTIES, f"the value of {operation} must be an object")
    return None


def kept_id(value: str | None, min_id_length: int) -> str | None:
    return value if value is not None and is_usable_id(value, min_id_length) else None


def normalise(event: JsonObject, project: str, user_id: str | None, device_id: str | None, ingested_at: int,
              truncate: bool, config: CoreConfig) -> JsonObject:
    """The event after SPEC §2, its derived fields first, then every other field as sent."""
    event_properties: JsonObject = event.get("event_properties") or {}
    user_properties: JsonObject = event.get("user_properties") or {}
    if truncate:
        event_properties = truncate_strings(event_properties, config.max_string_length)
        user_properties = truncate_strings(user_properties, config.max_string_length)
    time = event.get("time")
    time_ms = ingested_at if time is None else math.floor(time)
    event_type: str = event["event_type"]
    insert_id = event.get("insert_id")
    if insert_id is None and event_type == ASSIGNMENT:
        insert_id = assignment_insert_id(user_id, device_id, event_properties, time_ms)
    normalised: JsonObject = {"project_id": project, "event_type": event_type}
    if user_id is not None:
        normalised["user_id"] = user_id
    if device_id is not None:
        normalised["device_id"] = device_id
    normalised["time"] = time_ms
    if insert_id is not None:
        normalised["insert_id"] = insert_id
    normalised["event_properties"] = event_properties
    normalised["user_properties"] = user_properties
    normalised["ingested_at"] = ingested_at
    for name, item in event.items():
        if name not in DERIVED_FIELDS:
            normalised[name] = item
    return normalised


def reject_message(message: RawMessage, rejection: Rejection) -> DlqRecord:
    """The whole message is the rejected unit (index null)."""
    source = Source(message.topic, message.partition, message.offset, None)
    return DlqRecord(
        rejection.reason, rejection.detail, source, message.timestamp_ms, message.value or b"",
        message.key, message.headers,
    )


def reject_event(message: RawMessage, envelope: JsonObject, index: int, rejection: Rejection) -> DlqRecord:
    """One event of an envelope is the rejected unit: an envelope of that event alone, with the
    original api_key and options, so republishing it reproduces exactly that unit."""
    unit = {
        name: ([envelope["events"][index]] if name == "events" else value)
        for name, value in envelope.items()
        if name in ("api_key", "events", "options")
    }
    source = Source(message.topic, message.partition, message.offset, index)
    return DlqRecord(
        rejection.reason, rejection.detail, source, message.timestamp_ms, encode_unit(unit),
        message.key, message.headers,
    )
