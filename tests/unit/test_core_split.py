"""SPEC §2: decoding, validation (each reason code, and their order), ids, time, truncation, and the
DLQ payload that reproduces the rejected unit. Pure: `split_message` on in-memory messages."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.support.clock import T0
from worker.core import reasons, split, values
from worker.core.config import CoreConfig
from worker.core.records import RawMessage
from worker.core.split import Split, split_message

CONFIG = CoreConfig()
PROJECTS = CoreConfig(projects={"key-a": "proj_a", "key-b": "proj.b-2"})
DROP = object()  # a field to leave out of an event


def event(**fields: Any) -> dict[str, Any]:
    """A valid event with some fields changed (DROP removes one)."""
    base: dict[str, Any] = {"event_type": "click", "user_id": "user-1"}
    base.update(fields)
    return {name: value for name, value in base.items() if value is not DROP}


def message(value: Any, headers: tuple[tuple[str, bytes], ...] = (), offset: int = 7) -> RawMessage:
    data = value if isinstance(value, bytes | None) else orjson.dumps(value)
    return RawMessage("events.raw", 3, offset, T0, data, b"the-key", headers)


def run(value: Any, config: CoreConfig = CONFIG, headers: tuple[tuple[str, bytes], ...] = ()) -> Split:
    return split_message(message(value, headers), config)


def outcome(value: Any, config: CoreConfig = CONFIG, headers: tuple[tuple[str, bytes], ...] = ()) -> list[Any]:
    """[(reason, index)] of the rejections, or ["ok"] for one accepted event."""
    result = run(value, config, headers)
    return [(r.reason, r.source.index) for r in result.rejected] + ["ok"] * len(result.events)


def accepted(value: Any, config: CoreConfig = CONFIG, headers: tuple[tuple[str, bytes], ...] = ()) -> dict[str, Any]:
    result = run(value, config, headers)
    assert result.rejected == [] and len(result.events) == 1, result
    return result.events[0].event


def nested(levels: int, container: str = "object") -> Any:
    """A value `levels` containers deep ({} alone is 1)."""
    value: Any = {} if container == "object" else []
    for _ in range(levels - 1):
        value = {"a": value} if container == "object" else [value]
    return value


def padded_to(size: int) -> bytes:
    """A valid bare event of exactly `size` bytes."""
    data = orjson.dumps(event(event_properties={"pad": ""}))
    return data.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(data)) + b'"')


WHOLE = None  # the index of a whole-message rejection

REJECTIONS: list[tuple[str, Any, CoreConfig, str, int | None]] = [
    # malformed_json
    ("not json", b"{not json", CONFIG, reasons.MALFORMED_JSON, WHOLE),
    ("invalid utf-8 bytes", b"\xff\xfe\x00", CONFIG, reasons.MALFORMED_JSON, WHOLE),
    ("invalid utf-8 inside a string", b'{"event_type":"\xc3","user_id":"user-1"}', CONFIG, reasons.MALFORMED_JSON,
     WHOLE),
    ("empty value", b"", CONFIG, reasons.MALFORMED_JSON, WHOLE),
    ("no value (tombstone)", None, CONFIG, reasons.MALFORMED_JSON, WHOLE),
    ("trailing garbage", b'{"event_type":"e","user_id":"user-1"} x', CONFIG, reasons.MALFORMED_JSON, WHOLE),
    ("NaN literal", b'{"event_type":"e","user_id":"user-1","time":NaN}', CONFIG, reasons.MALFORMED_JSON, WHOLE),
    # payload_too_large
    ("1,000,001 bytes", padded_to(1_000_001), CONFIG, reasons.PAYLOAD_TOO_LARGE, WHOLE),
    ("2001 events", {"events": [event()] * 2001}, CONFIG, reasons.PAYLOAD_TOO_LARGE, WHOLE),
    ("configured byte limit", padded_to(101), CoreConfig(max_message_bytes=100), reasons.PAYLOAD_TOO_LARGE, WHOLE),
    # invalid_envelope
    ("array value", [event()], CONFIG, reasons.INVALID_ENVELOPE, WHOLE),
    ("number value", 5, CONFIG, reasons.INVALID_ENVELOPE, WHOLE),
    ("string value", "click", CONFIG, reasons.INVALID_ENVELOPE, WHOLE),
    ("null value", b"null", CONFIG, reasons.INVALID_ENVELOPE, WHOLE),
    ("events an object", {"events": {"0": event()}}, CONFIG, reasons.INVALID_ENVELOPE, WHOLE),
    ("events a string", {"events": "[]"}, CONFIG, reasons.INVALID_ENVELOPE, WHOLE),
    ("events null", {"events": None, "api_key": "key-a"}, CONFIG, reasons.INVALID_ENVELOPE, WHOLE),
    # invalid_api_key (projects configured)
    ("api_key missing", {"events": [event()]}, PROJECTS, reasons.INVALID_API_KEY, WHOLE),
    ("api_key unknown", {"api_key": "key-z", "events": [event()]}, PROJECTS, reasons.INVALID_API_KEY, WHOLE),
    ("api_key null", {"api_key": None, "events": [event()]}, PROJECTS, reasons.INVALID_API_KEY, WHOLE),
    ("api_key not a string", {"api_key": 5, "events": [event()]}, PROJECTS, reasons.INVALID_API_KEY, WHOLE),
    ("api_key of no events", {"api_key": "key-z", "events": []}, PROJECTS, reasons.INVALID_API_KEY, WHOLE),
    # invalid_event (per event in an envelope)
    ("event a number", {"events": [5]}, CONFIG, reasons.INVALID_EVENT, 0),
    ("event a string", {"events": ["click"]}, CONFIG, reasons.INVALID_EVENT, 0),
    ("event null", {"events": [None]}, CONFIG, reasons.INVALID_EVENT, 0),
    ("event an array", {"events": [[event()]]}, CONFIG, reasons.INVALID_EVENT, 0),
    ("depth 41", event(event_properties=nested(40)), CONFIG, reasons.INVALID_EVENT, WHOLE),
    ("depth 41 in arrays", event(x=nested(40, "array")), CONFIG, reasons.INVALID_EVENT, WHOLE),
    ("depth 41 in user_properties", event(user_properties={"$set": nested(39)}), CONFIG, reasons.INVALID_EVENT,
     WHOLE),
    ("event_properties a list", event(event_properties=[]), CONFIG, reasons.INVALID_EVENT, WHOLE),
    ("event_properties a string", event(event_properties="{}"), CONFIG, reasons.INVALID_EVENT, WHOLE),
    ("user_properties a list", event(user_properties=[{"$set": {}}]), CONFIG, reasons.INVALID_EVENT, WHOLE),
    ("user_properties a bool", event(user_properties=True), CONFIG, reasons.INVALID_EVENT, WHOLE),
    ("user_id a number", event(user_id=12345678), CONFIG, reasons.INVALID_EVENT, WHOLE),
    ("device_id a list", event(device_id=["device-1"]), CONFIG, reasons.INVALID_EVENT, WHOLE),
    ("insert_id a number", event(insert_id=42), CONFIG, reasons.INVALID_EVENT, WHOLE),
    ("insert_id a bool", event(insert_id=True), CONFIG, reasons.INVALID_EVENT, WHOLE),
    # missing_event_type
    ("event_type missing", event(event_type=DROP), CONFIG, reasons.MISSING_EVENT_TYPE, WHOLE),
    ("event_type null", event(event_type=None), CONFIG, reasons.MISSING_EVENT_TYPE, WHOLE),
    ("event_type a number", event(event_type=5), CONFIG, reasons.MISSING_EVENT_TYPE, WHOLE),
    ("event_type empty", event(event_type=""), CONFIG, reasons.MISSING_EVENT_TYPE, WHOLE),
    ("event_type blank", event(event_type=" \t\n"), CONFIG, reasons.MISSING_EVENT_TYPE, WHOLE),
    # missing_user_identity
    ("no ids", event(user_id=DROP), CONFIG, reasons.MISSING_USER_IDENTITY, WHOLE),
    ("null ids", event(user_id=None, device_id=None), CONFIG, reasons.MISSING_USER_IDENTITY, WHOLE),
    ("short user_id", event(user_id="abcd"), CONFIG, reasons.MISSING_USER_IDENTITY, WHOLE),
    ("placeholder ids", event(user_id="undefined", device_id="00000000-0000-0000-0000-000000000000"), CONFIG,
     reasons.MISSING_USER_IDENTITY, WHOLE),
    ("short and placeholder", event(user_id="a", device_id=" Anonymous "), CONFIG, reasons.MISSING_USER_IDENTITY,
     WHOLE),
    # invalid_time
    ("time true", event(time=True), CONFIG, reasons.INVALID_TIME, WHOLE),
    ("time false", event(time=False), CONFIG, reasons.INVALID_TIME, WHOLE),
    ("time a numeric string", event(time="1700000000000"), CONFIG, reasons.INVALID_TIME, WHOLE),
    ("time an ISO date", event(time="2026-11-24T10:00:00Z"), CONFIG, reasons.INVALID_TIME, WHOLE),
    ("time negative", event(time=-1), CONFIG, reasons.INVALID_TIME, WHOLE),
    ("time negative fraction", event(time=-0.5), CONFIG, reasons.INVALID_TIME, WHOLE),
    ("time an object", event(time={"ms": 1}), CONFIG, reasons.INVALID_TIME, WHOLE),
    ("time a list", event(time=[1]), CONFIG, reasons.INVALID_TIME, WHOLE),
    # Decision (SPEC silent): output times are 64-bit; a time that cannot be one is invalid_time.
    ("time 2^63", event(time=2**63), CONFIG, reasons.INVALID_TIME, WHOLE),
    ("time 1e300", b'{"event_type":"e","user_id":"user-1","time":1e300}', CONFIG, reasons.INVALID_TIME, WHOLE),
    # invalid_exposure
    ("exposure without flag_key", event(event_type="$exposure", event_properties={"variant": "on"}), CONFIG,
     reasons.INVALID_EXPOSURE, WHOLE),
    ("exposure without event_properties", event(event_type="$exposure"), CONFIG, reasons.INVALID_EXPOSURE, WHOLE),
    ("exposure flag_key null", event(event_type="$exposure", event_properties={"flag_key": None}), CONFIG,
     reasons.INVALID_EXPOSURE, WHOLE),
    ("exposure flag_key a number", event(event_type="$exposure", event_properties={"flag_key": 7}), CONFIG,
     reasons.INVALID_EXPOSURE, WHOLE),
    ("exposure flag_key blank", event(event_type="$exposure", event_properties={"flag_key": "  "}), CONFIG,
     reasons.INVALID_EXPOSURE, WHOLE),
    ("exposure variant a bool", event(event_type="$exposure", event_properties={"flag_key": "f", "variant": True}),
     CONFIG, reasons.INVALID_EXPOSURE, WHOLE),
    ("exposure variant an object", event(event_type="$exposure", event_properties={"flag_key": "f", "variant": {}}),
     CONFIG, reasons.INVALID_EXPOSURE, WHOLE),
    ("exposure experiment_key a number",
     event(event_type="$exposure", event_properties={"flag_key": "f", "experiment_key": 1}), CONFIG,
     reasons.INVALID_EXPOSURE, WHOLE),
    ("impression flag_key empty", event(event_type="$impression", event_properties={"flag_key": ""}), CONFIG,
     reasons.INVALID_EXPOSURE, WHOLE),
    # invalid_user_properties
    ("$set a number", event(user_properties={"$set": 5}), CONFIG, reasons.INVALID_USER_PROPERTIES, WHOLE),
    ("$set null", event(user_properties={"$set": None}), CONFIG, reasons.INVALID_USER_PROPERTIES, WHOLE),
    ("$unset a list", event(user_properties={"$unset": ["a"]}), CONFIG, reasons.INVALID_USER_PROPERTIES, WHOLE),
    ("$setOnce a string", event(user_properties={"$setOnce": "a"}), CONFIG, reasons.INVALID_USER_PROPERTIES, WHOLE),
    ("$add a number", event(user_properties={"$add": 1}), CONFIG, reasons.INVALID_USER_PROPERTIES, WHOLE),
    ("$append a list", event(user_properties={"$append": [1]}), CONFIG, reasons.INVALID_USER_PROPERTIES, WHOLE),
    ("$prepend a bool", event(user_properties={"$prepend": True}), CONFIG, reasons.INVALID_USER_PROPERTIES, WHOLE),
    ("$preInsert a string", event(user_properties={"$preInsert": "x"}), CONFIG, reasons.INVALID_USER_PROPERTIES,
     WHOLE),
    ("$postInsert a number", event(user_properties={"$postInsert": 0}), CONFIG, reasons.INVALID_USER_PROPERTIES,
     WHOLE),
    ("$remove a list", event(user_properties={"$remove": []}), CONFIG, reasons.INVALID_USER_PROPERTIES, WHOLE),
    ("bad op after a good one", event(user_properties={"$set": {"a": 1}, "$unset": "a"}), CONFIG,
     reasons.INVALID_USER_PROPERTIES, WHOLE),
]


@pytest.mark.parametrize(
    ("value", "config", "reason", "index"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_each_reason_code(value: Any, config: CoreConfig, reason: str, index: int | None) -> None:
    assert outcome(value, config) == [(reason, index)]


def test_every_validation_reason_is_covered() -> None:
    # processing_error: below; the Avro reasons: tests/unit/test_serde_framing.py
    covered = {case[3] for case in REJECTIONS} | {reasons.PROCESSING_ERROR, reasons.UNKNOWN_SCHEMA,
                                                  reasons.MALFORMED_AVRO}
    assert covered == set(reasons.ALL_REASONS)


ACCEPTED: list[tuple[str, Any, CoreConfig]] = [
    ("exactly 1,000,000 bytes", padded_to(1_000_000), CONFIG),
    ("depth 40", event(event_properties=nested(39)), CONFIG),
    ("depth 40 in arrays", event(x=nested(39, "array")), CONFIG),
    ("null fields count as absent",
     event(device_id=None, insert_id=None, time=None, event_properties=None, user_properties=None), CONFIG),
    ("time 0", event(time=0), CONFIG),
    ("time -0.0", event(time=-0.0), CONFIG),
    ("time 2^63 - 1", event(time=2**63 - 1), CONFIG),
    ("device_id alone", event(user_id=DROP, device_id="device-1"), CONFIG),
    ("exposure variant and experiment_key null",
     event(event_type="$exposure", event_properties={"flag_key": "f", "variant": None, "experiment_key": None}),
     CONFIG),
    ("exposure with blank variant", event(event_type="$exposure", event_properties={"flag_key": "f", "variant": " "}),
     CONFIG),
    ("server-side exposure needs no flag_key", event(event_type="[Experiment] Exposure"), CONFIG),
    ("$clearAll takes any value", event(user_properties={"$clearAll": 5}), CONFIG),
    ("$clearAll null", event(user_properties={"$clearAll": None}), CONFIG),
    ("an unknown $-key is a plain property", event(user_properties={"$unknown": 5}), CONFIG),
    ("api_key ignored without projects", {"api_key": "anything", "events": [event()]}, CONFIG),
    ("bare event not checked against projects", event(api_key="key-z"), PROJECTS),
]


@pytest.mark.parametrize(("value", "config"), [case[1:] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_accepted(value: Any, config: CoreConfig) -> None:
    assert outcome(value, config) == ["ok"]


def test_2000_events_are_not_too_many() -> None:
    assert outcome({"events": [event()] * 2000}) == ["ok"] * 2000


ORDER: list[tuple[str, Any, CoreConfig, str]] = [
    ("malformed before too large", b"{" + b" " * 1_000_001, CONFIG, reasons.MALFORMED_JSON),
    ("too large before not an object", b"[" + b" " * 1_000_000 + b"]", CONFIG, reasons.PAYLOAD_TOO_LARGE),
    ("too many events before api_key", {"api_key": "key-z", "events": [5] * 2001}, PROJECTS,
     reasons.PAYLOAD_TOO_LARGE),
    ("events not an array before api_key", {"api_key": "key-z", "events": 5}, PROJECTS, reasons.INVALID_ENVELOPE),
    ("api_key before every event check", {"api_key": "key-z", "events": [5, {}]}, PROJECTS, reasons.INVALID_API_KEY),
    ("depth before event_type", event(event_type=DROP, x=nested(40)), CONFIG, reasons.INVALID_EVENT),
    ("property objects before ids", event(user_id=DROP, event_properties=5), CONFIG, reasons.INVALID_EVENT),
    ("id types before event_type", event(event_type=DROP, device_id=5), CONFIG, reasons.INVALID_EVENT),
    ("event_type before identity", event(event_type="", user_id=DROP), CONFIG, reasons.MISSING_EVENT_TYPE),
    ("identity before time", event(user_id="nil", time="yesterday"), CONFIG, reasons.MISSING_USER_IDENTITY),
    ("time before exposure", event(event_type="$exposure", time=-1), CONFIG, reasons.INVALID_TIME),
    ("exposure before operations", event(event_type="$exposure", user_properties={"$set": 1}), CONFIG,
     reasons.INVALID_EXPOSURE),
]


@pytest.mark.parametrize(
    ("value", "config", "reason"), [case[1:] for case in ORDER], ids=[case[0] for case in ORDER]
)
def test_first_failed_check_decides(value: Any, config: CoreConfig, reason: str) -> None:
    assert [r.reason for r in run(value, config).rejected] == [reason]


def test_each_event_of_an_envelope_is_judged_on_its_own() -> None:
    result = run({"events": [event(), 5, event(event_type=""), event(user_id="user-2")]})
    assert [r.event["user_id"] for r in result.events] == ["user-1", "user-2"]
    assert [(r.reason, r.source.index) for r in result.rejected] == [
        (reasons.INVALID_EVENT, 1), (reasons.MISSING_EVENT_TYPE, 2)
    ]
    assert [e.source.index for e in result.events] == [0, 3]


# ---- project ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "project"),
    [(None, "default"), (b"proj_1", "proj_1"), (b"a.B-9_", "a.B-9_")],
)
def test_bare_event_project_comes_from_the_header(header: bytes | None, project: str) -> None:
    headers = () if header is None else (("project_id", header),)
    normalised = accepted(event(), headers=headers)
    assert normalised["project_id"] == project
    assert run(event(), headers=headers).events[0].user_key == f"{project}/u:user-1"


@pytest.mark.parametrize("header", [b"", b"has space", b"a/b", b"\xff\xfe", "proj\u00e9".encode()])
def test_bad_project_header_is_invalid_envelope(header: bytes) -> None:
    assert outcome(event(), headers=(("project_id", header),)) == [(reasons.INVALID_ENVELOPE, None)]


def test_envelope_project_comes_from_the_api_key_not_the_header() -> None:
    result = run({"api_key": "key-b", "events": [event()]}, PROJECTS, headers=(("project_id", b"bad header!"),))
    assert result.events[0].event["project_id"] == "proj.b-2"
    assert result.events[0].user_key == "proj.b-2/u:user-1"
    assert run({"events": [event()]}, headers=(("project_id", b"proj_x"),)).events[0].project_id == "default"


# ---- ids -------------------------------------------------------------------------------------

PLACEHOLDERS = [
    "anonymous", "Anonymous", " NIL ", "none", "NULL", "n/a", "N/A", "na", "undefined", "UNKNOWN", "",
    '""', ' "" ', "{}", "lmy47d", "LMY47D", "0", " 0 ", "-1", "00000000-0000-0000-0000-000000000000",
    "\t00000000-0000-0000-0000-000000000000\n",
]


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_placeholder_ids_are_removed(placeholder: str) -> None:
    config = CoreConfig(min_id_length=0)  # so only the placeholder rule can remove it
    normalised = accepted(event(user_id=placeholder, device_id="device-1"), config)
    assert "user_id" not in normalised and normalised["device_id"] == "device-1"
    removed_device = accepted(event(device_id=placeholder), config)
    assert "device_id" not in removed_device


@pytest.mark.parametrize("near_miss", ["nulll", "anonymous1", "n/a/", "-2", "00", "{ }", "'0'"])
def test_ids_near_a_placeholder_are_kept_exactly(near_miss: str) -> None:
    assert accepted(event(user_id=near_miss), CoreConfig(min_id_length=0))["user_id"] == near_miss


def test_ids_are_kept_as_sent_and_measured_as_sent() -> None:
    assert accepted(event(user_id="  abc "))["user_id"] == "  abc "  # 6 characters as sent
    assert run(event(user_id="  abc ")).events[0].user_key == "default/u:  abc "
    assert outcome(event(user_id=" abc")) == [(reasons.MISSING_USER_IDENTITY, None)]


def test_user_key_prefers_the_user_id() -> None:
    assert run(event(device_id="device-1")).events[0].user_key == "default/u:user-1"
    assert run(event(user_id="abc", device_id="device-1")).events[0].user_key == "default/d:device-1"


@pytest.mark.parametrize(
    ("options", "kept"),
    [
        ({"min_id_length": 2}, {"ab": True, "a": False}),
        ({"min_id_length": 0}, {"a": True, "": False}),
        ({"min_id_length": 10}, {"abcdefghi": False, "abcdefghij": True}),
        ({"min_id_length": True}, {"ab": False, "abcde": True}),  # a bool is not an integer
        ({"min_id_length": -1}, {"abcd": False, "abcde": True}),
        ({"min_id_length": 2.0}, {"ab": False}),
        ({"min_id_length": "2"}, {"ab": False}),
        ({"min_id_length": None}, {"abcd": False}),
        ({}, {"abcd": False, "abcde": True}),
        (None, {"abcd": False}),
        ([{"min_id_length": 2}], {"ab": False}),
    ],
)
def test_envelope_min_id_length_override(options: Any, kept: dict[str, bool]) -> None:
    for user_id, is_kept in kept.items():
        envelope: dict[str, Any] = {"events": [event(user_id=user_id, device_id="device-000001")]}
        if options is not None:
            envelope["options"] = options
        assert ("user_id" in accepted(envelope)) is is_kept, user_id


def test_min_id_length_setting_applies_to_bare_events_and_is_overridden_per_envelope() -> None:
    config = CoreConfig(min_id_length=2)
    assert accepted(event(user_id="ab"), config)["user_id"] == "ab"
    envelope = {"options": {"min_id_length": 3}, "events": [event(user_id="ab", device_id="device-1")]}
    assert "user_id" not in accepted(envelope, config)


# ---- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "expected"),
    [(1_700_000_000_000.75, 1_700_000_000_000), (1.999, 1), (0.5, 0), (42, 42), (-0.0, 0), (1e15, 10**15)],
)
def test_time_is_floored_to_integer_milliseconds(time: float, expected: int) -> None:
    normalised = accepted(event(time=time))
    assert normalised["time"] == expected and type(normalised["time"]) is int


@pytest.mark.parametrize("fields", [{}, {"time": None}])
def test_absent_time_is_the_ingestion_time(fields: dict[str, Any]) -> None:
    normalised = accepted(event(**fields))
    assert normalised["time"] == T0 == normalised["ingested_at"]


# ---- truncation ------------------------------------------------------------------------------

LONG = "x" * 1025
CUT = "x" * 1024


def test_strings_and_keys_are_truncated_at_any_depth_in_property_maps() -> None:
    normalised = accepted(
        event(
            event_properties={"v": LONG, "ok": CUT, LONG: 1, "deep": {"list": [LONG, {LONG: [LONG]}]}},
            user_properties={"$set": {"s": LONG, LONG: "k"}, "plain": {"n": [LONG]}, LONG: 1},
        )
    )
    assert normalised["event_properties"] == {"v": CUT, "ok": CUT, CUT: 1, "deep": {"list": [CUT, {CUT: [CUT]}]}}
    assert normalised["user_properties"] == {"$set": {"s": CUT, CUT: "k"}, "plain": {"n": [CUT]}, CUT: 1}


def test_top_level_fields_are_not_truncated() -> None:
    long_id = "u" * 2000
    normalised = accepted(event(event_type=LONG, user_id=long_id, insert_id=LONG, platform=LONG))
    assert (normalised["event_type"], normalised["user_id"]) == (LONG, long_id)
    assert (normalised["insert_id"], normalised["platform"]) == (LONG, LONG)


def test_truncation_counts_characters_not_bytes() -> None:
    text = "é" * 1025
    assert accepted(event(event_properties={"t": text}))["event_properties"]["t"] == "é" * 1024


# ---- normalised event ------------------------------------------------------------------------


def test_normalised_event_fields() -> None:
    sent = {"api_key": "k", "events": [event(
        device_id="device-1", time=5.5, insert_id="i-1", platform="iOS", session_id=12,
        api_key="event-level", **{"$skip_user_properties_sync": True},
    )]}
    user_event = run(sent).events[0]
    assert user_event.event == {
        "project_id": "default", "event_type": "click", "user_id": "user-1", "device_id": "device-1",
        "time": 5, "insert_id": "i-1", "event_properties": {}, "user_properties": {},
        "ingested_at": T0, "platform": "iOS", "session_id": 12,
    }  # `billable` is decided where the output event is built (SPEC §7)
    assert user_event.skip_sync is True
    assert (user_event.source.topic, user_event.source.partition, user_event.source.offset) == ("events.raw", 3, 7)


# ---- DLQ records -----------------------------------------------------------------------------


def replay(record: Any, config: CoreConfig = CONFIG) -> Split:
    """Publish a DLQ record's payload again, as a new message with the DLQ record's key and headers."""
    payload = base64.b64decode(record.to_json()["payload_b64"])
    return split_message(RawMessage("events.raw", 0, 99, T0 + 1, payload, record.key, record.headers), config)


@pytest.mark.parametrize(
    ("value", "config", "reason", "index"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_dlq_payload_reproduces_the_rejected_unit(value: Any, config: CoreConfig, reason: str,
                                                   index: int | None) -> None:
    original = message(value, headers=(("project_id", b"p1"),))
    (record,) = split_message(original, config).rejected
    again = replay(record, config)
    assert again.events == []
    assert [(r.reason, r.source.index) for r in again.rejected] == [(reason, index)]
    if index is None:  # the whole message is the unit
        assert record.payload == (original.value or b"")


def test_dlq_unit_of_one_event_is_an_envelope_of_that_event_with_api_key_and_options() -> None:
    bad = event(event_type="")
    envelope = {"api_key": "key-a", "client": "sdk", "events": [event(), bad, event()],
                "options": {"min_id_length": 3}}
    (record,) = run(envelope, PROJECTS).rejected
    assert orjson.loads(record.payload) == {"api_key": "key-a", "events": [bad], "options": {"min_id_length": 3}}
    assert record.key == b"the-key"
    assert record.to_json() == {
        "reason": reasons.MISSING_EVENT_TYPE,
        "detail": record.detail,
        "source": {"topic": "events.raw", "partition": 3, "offset": 7, "index": 1},
        "ingested_at": T0,
        "payload_b64": base64.b64encode(record.payload).decode(),
    }
    (only_events,) = run({"events": [5]}).rejected
    assert orjson.loads(only_events.payload) == {"events": [5]}


def test_dlq_unit_keeps_the_options_that_decided_the_rejection() -> None:
    envelope = {"events": [event(user_id="abc")], "options": {"min_id_length": 4}}
    (record,) = run(envelope).rejected
    assert record.reason == reasons.MISSING_USER_IDENTITY
    replayed = split_message(RawMessage("t", 0, 0, T0, record.payload), CONFIG)
    assert [r.reason for r in replayed.rejected] == [reasons.MISSING_USER_IDENTITY]


def test_dlq_record_keeps_the_original_headers_beside_its_facts() -> None:
    (record,) = run(event(event_type=""), headers=(("project_id", b"proj_1"), ("trace", b"t-1"))).rejected
    headers = record.kafka_headers()
    assert headers[:2] == [("project_id", b"proj_1"), ("trace", b"t-1")]
    assert ("dlq.reason", b"missing_event_type") in headers
    assert ("dlq.source.index", b"") in headers


def test_a_rejected_event_nested_deeper_than_orjson_encodes_still_gets_a_dlq_record() -> None:
    # orjson decodes 1024 levels but encodes only 255: the DLQ unit must be encoded another way.
    deep_array, deep_object = b"[" * 300 + b"]" * 300, b'{"a":' * 299 + b"{}" + b"}" * 299
    deep = b'{"event_type":"click","user_id":"user-1","x":' + deep_array + b"}"
    envelope = b'{"events":[' + deep + b',{"event_type":"click","user_id":"user-1"}],"options":' + deep_object + b"}"
    result = run(envelope)
    assert len(result.events) == 1
    (record,) = result.rejected
    assert (record.reason, record.source.index) == (reasons.INVALID_EVENT, 0)
    assert record.payload == b'{"events":[' + deep + b'],"options":' + deep_object + b"}"
    assert [r.reason for r in split_message(RawMessage("t", 0, 0, T0, record.payload), CONFIG).rejected] == [
        reasons.INVALID_EVENT
    ]


def test_deep_encoder_matches_orjson() -> None:
    value = {"a": [1, -2.5, {"b": "é\n\"", "c": []}, {}], "d": None, "e": True, "f": False, "": [[[]]]}
    assert values.encode_deep(value) == orjson.dumps(value)


def test_processing_error_while_judging_an_event_costs_only_that_event() -> None:
    def flaky(event: dict[str, Any], *args: Any) -> Any:
        if event.get("boom"):
            raise RuntimeError("bug")
        return split.judge_event(event, *args)

    value = {"api_key": "k", "events": [event(), event(boom=True), event()]}
    result = split_message(message(orjson.dumps(value)), CONFIG, flaky)
    assert len(result.events) == 2
    (record,) = result.rejected
    assert (record.reason, record.source.index) == (reasons.PROCESSING_ERROR, 1)
    assert "RuntimeError: bug" in record.detail
    assert orjson.loads(record.payload) == {"api_key": "k", "events": [event(boom=True)]}
    assert [r.reason for r in split_message(message(record.payload), CONFIG, flaky).rejected] == [
        reasons.PROCESSING_ERROR]


def test_json_too_large_and_nested_past_the_decoder_limit_is_payload_too_large() -> None:
    # orjson stops at 1024 levels; such a value is still JSON, so the size check (before the
    # depth check in §2) decides. It used to come out as malformed_json.
    deep = b"[" * 2000 + b"]" * 2000
    padding = b'"' + b"x" * CONFIG.max_message_bytes + b'"'
    value = b'{"events":[{"event_type":"click","user_id":"user-1","p":' + deep + b',"q":' + padding + b"}]}"
    assert outcome(value) == [(reasons.PAYLOAD_TOO_LARGE, None)]
    assert outcome(b'{"events":[{"event_type":"click","user_id":"user-1","p":' + deep + b"}]}") == [
        (reasons.INVALID_EVENT, None)
    ]
    # Not JSON before the decoder's depth limit: malformed_json comes first, too large or not.
    assert outcome(b"[" * 100 + b"}" + b" " * CONFIG.max_message_bytes) == [(reasons.MALFORMED_JSON, None)]
