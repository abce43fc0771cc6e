"""Between the JSON form of each record (SPEC §8) and the datum fastavro writes for its Avro schema.

A JSON value is a union of string, long, double, boolean, null and three records: `BigInt` (an
integer outside signed 64 bits, as digits), `JsonArray` and `JsonObject`. Scalars need no wrapper, so
a flat property map is written and read as it is. Every branch but `string` is named explicitly
(fastavro's tuple notation), so `true`, `1` and `1.0` stay three values and no branch is chosen by
trial validation of a whole subtree. Each record kind has a hand-written pair of functions: a call
does no schema work, the schema is parsed once, when its codec is built.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from worker.core.values import JsonObject
from worker.serde.avro_schemas import BIG_INT, JSON_ARRAY, JSON_OBJECT

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_DIGITS = re.compile(r"-?[0-9]+")


class NotJsonError(ValueError):
    """An Avro datum that has no JSON equivalent (a NaN or infinite double, a BigInt that is not digits)."""


def to_avro(value: Any) -> Any:
    """A JSON value as a datum of the JSON-value union."""
    kind = type(value)
    if kind is str:  # the union's first branch: fastavro's first trial matches
        return value
    if kind is int:
        return ("long", value) if LONG_MIN <= value <= LONG_MAX else (BIG_INT, {"digits": str(value)})
    if kind is float:
        return ("double", value)
    if kind is bool:
        return ("boolean", value)
    if value is None:
        return ("null", None)
    if kind is dict:
        return (JSON_OBJECT, {"fields": map_to_avro(value)})
    if kind is list:
        return (JSON_ARRAY, {"items": [to_avro(item) for item in value]})
    raise TypeError(f"not a JSON value: {kind.__name__}")


def map_to_avro(value: JsonObject) -> dict[str, Any]:
    return {name: item if type(item) is str else to_avro(item) for name, item in value.items()}


def from_avro(datum: Any) -> Any:
    """A datum of the JSON-value union (read with `return_record_name=True`) as its JSON value."""
    kind = type(datum)
    if kind is tuple:  # a record branch, as (record name, record)
        name, record = datum
        if name == JSON_OBJECT:
            return map_from_avro(record["fields"])
        if name == JSON_ARRAY:
            return [from_avro(item) for item in record["items"]]
        digits = record["digits"]
        if not _DIGITS.fullmatch(digits):
            raise NotJsonError(f"BigInt digits {digits[:40]!r} are not an integer")
        return int(digits)
    if kind is float and not math.isfinite(datum):
        raise NotJsonError(f"{datum} is not a JSON number")
    return datum


def map_from_avro(datum: dict[str, Any]) -> JsonObject:
    """The map itself when it holds only plain scalars (the common case), else a converted copy."""
    for item in datum.values():
        kind = type(item)
        if kind is tuple or (kind is float and not math.isfinite(item)):
            return {name: from_avro(value) for name, value in datum.items()}
    return datum


class Shape(NamedTuple):
    """How one record kind's JSON form maps onto its Avro datum, both ways."""

    to_avro: Callable[[JsonObject], dict[str, Any]]
    from_avro: Callable[[dict[str, Any]], JsonObject]


# Raw events (producers' input). A field goes to its typed Avro field when its JSON value fits the
# type, else to `extra`, so that every JSON event, invalid ones included, has an exact Avro form and
# the core judges both forms alike.
RAW_STRINGS = frozenset({"user_id", "device_id", "event_type", "insert_id"})
RAW_MAPS = frozenset({"event_properties", "user_properties", "groups", "group_properties"})
RAW_FIELDS = ("user_id", "device_id", "event_type", "time", "insert_id", "event_properties", "user_properties",
              "groups", "group_properties")


def raw_to_avro(event: JsonObject) -> dict[str, Any]:
    datum: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in event.items():
        kind = type(value)
        if name in RAW_STRINGS and kind is str:
            datum[name] = value
        elif name in RAW_MAPS and kind is dict:
            datum[name] = ("map", map_to_avro(value))  # named: no trial validation of the whole map
        elif name == "time" and (kind is float or (kind is int and LONG_MIN <= value <= LONG_MAX)):
            datum[name] = value
        else:
            extra[name] = to_avro(value)
    datum["extra"] = extra
    return datum


def raw_from_avro(datum: dict[str, Any]) -> JsonObject:
    """Typed fields first, in schema order; an `extra` entry never replaces a typed field that is set."""
    event: JsonObject = {}
    for name in RAW_FIELDS:
        value = datum[name]
        if value is not None:
            event[name] = map_from_avro(value) if name in RAW_MAPS else value
    time = event.get("time")
    if type(time) is float and not math.isfinite(time):
        raise NotJsonError(f"time {time} is not a JSON number")
    for name, item in datum["extra"].items():
        if name not in event:
            event[name] = from_avro(item)
    return event


# Enriched events (SPEC §8.1): the fields the worker sets are typed; every pass-through field of the
# input event goes to `extra`. A null id or insert_id stands for an absent one.
ENRICHED_FIELDS = frozenset({"project_id", "event_type", "user_id", "device_id", "time", "insert_id",
                             "event_properties", "user_properties", "billable", "ingested_at"})
OPTIONAL_IDS = ("user_id", "device_id")


def enriched_to_avro(event: JsonObject) -> dict[str, Any]:
    return {
        "project_id": event["project_id"],
        "event_type": event["event_type"],
        "user_id": event.get("user_id"),
        "device_id": event.get("device_id"),
        "time": event["time"],
        "insert_id": event.get("insert_id"),
        "event_properties": map_to_avro(event["event_properties"]),
        "user_properties": map_to_avro(event["user_properties"]),
        "billable": event["billable"],
        "ingested_at": event["ingested_at"],
        "extra": {name: to_avro(value) for name, value in event.items() if name not in ENRICHED_FIELDS},
    }


def enriched_from_avro(datum: dict[str, Any]) -> JsonObject:
    """The field order of the core's enriched events: typed fields, then the pass-through ones."""
    event: JsonObject = {"project_id": datum["project_id"], "event_type": datum["event_type"]}
    for name in OPTIONAL_IDS:
        if datum[name] is not None:
            event[name] = datum[name]
    event["time"] = datum["time"]
    if datum["insert_id"] is not None:
        event["insert_id"] = datum["insert_id"]
    event["event_properties"] = map_from_avro(datum["event_properties"])
    event["user_properties"] = map_from_avro(datum["user_properties"])
    event["billable"] = datum["billable"]
    event["ingested_at"] = datum["ingested_at"]
    for name, item in datum["extra"].items():
        if name not in event:
            event[name] = from_avro(item)
    return event


# Deltas (SPEC §8.2): ids are null, not absent, when missing; `old`/`new` are any JSON value.
def delta_to_avro(delta: JsonObject) -> dict[str, Any]:
    changes = [{"property": c["property"], "old": to_avro(c["old"]), "new": to_avro(c["new"])}
               for c in delta["changes"]]
    return {**delta, "changes": changes}


def delta_from_avro(datum: dict[str, Any]) -> JsonObject:
    changes = [{"property": c["property"], "old": from_avro(c["old"]), "new": from_avro(c["new"])}
               for c in datum["changes"]]
    return {**datum, "changes": changes}


# State records (SPEC §8.3).
def state_to_avro(state: JsonObject) -> dict[str, Any]:
    return {**state, "user_properties": map_to_avro(state["user_properties"])}


def state_from_avro(datum: dict[str, Any]) -> JsonObject:
    return {**datum, "user_properties": map_from_avro(datum["user_properties"])}


# DLQ records (SPEC §8.4): Avro carries the payload as bytes, JSON as base64 text.
def dlq_to_avro(record: JsonObject) -> dict[str, Any]:
    return {
        "reason": record["reason"],
        "detail": record["detail"],
        "source": record["source"],
        "ingested_at": record["ingested_at"],
        "payload": base64.b64decode(record["payload_b64"], validate=True),
    }


def dlq_from_avro(datum: dict[str, Any]) -> JsonObject:
    return {
        "reason": datum["reason"],
        "detail": datum["detail"],
        "source": datum["source"],
        "ingested_at": datum["ingested_at"],
        "payload_b64": base64.b64encode(datum["payload"]).decode("ascii"),
    }


SHAPES = {
    "raw": Shape(raw_to_avro, raw_from_avro),
    "enriched": Shape(enriched_to_avro, enriched_from_avro),
    "deltas": Shape(delta_to_avro, delta_from_avro),
    "state": Shape(state_to_avro, state_from_avro),
    "dlq": Shape(dlq_to_avro, dlq_from_avro),
}
