"""Hostile raw input (issue 6) through the entry point `process-file` and the Kafka runner share:
the core `Pipeline` for one raw message (its split, then each of its events), with every
output serialised the way `worker/offline.py` writes it.

For any input: no exception escapes, no unit is lost, no hostile input is blamed on a bug
(`processing_error`), every bad unit gets the DLQ reason SPEC §2 prescribes (first failed check
wins), the good events of the same envelope are still processed, every DLQ payload reproduces its
unit, and memory stays bounded by the input size.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.clock import T0
from worker.core.config import CoreConfig
from worker.core.pipeline import Outcome, Pipeline
from worker.core.records import DlqRecord, Headers, RawMessage, UserEvent
from worker.core.stores import PartitionStores
from worker.core.values import same_value

EXAMPLES = settings(max_examples=200, deadline=None)
MB = 1_000_000
CONFIG = CoreConfig()
PROJECTS = CoreConfig(projects={"key-a": "proj_a"})
# SPEC §2, the event-level checks in the order they are made (written out here, not taken from the code).
EVENT_CHECKS = (
    "invalid_event",
    "missing_event_type",
    "missing_user_identity",
    "invalid_time",
    "invalid_exposure",
    "invalid_user_properties",
)
SPEC_REASONS = {"malformed_json", "payload_too_large", "invalid_envelope", "invalid_api_key", *EVENT_CHECKS}


# ---- the entry point ---------------------------------------------------------------------------


@dataclass
class Result:
    value: bytes | None
    config: CoreConfig
    headers: Headers
    accepted: list[tuple[UserEvent, Outcome]] = field(default_factory=list)
    rejected: list[DlqRecord] = field(default_factory=list)

    def by_index(self) -> dict[int | None, str]:
        """Each unit's fate: "ok" (accepted and processed) or its DLQ reason."""
        fates: dict[int | None, str] = {}
        for user_event, outcome in self.accepted:
            fates[user_event.source.index] = "ok" if outcome.dlq is None else outcome.dlq.reason
        for record in self.rejected:
            assert record.source.index not in fates, "a unit was both accepted and rejected"
            fates[record.source.index] = record.reason
        return fates

    def whole(self) -> str:
        """The reason the whole message was rejected."""
        assert self.accepted == [], self.by_index()
        (record,) = self.rejected
        assert record.source.index is None
        assert record.payload == self.value  # the rejected unit is the message, byte for byte
        return record.reason

    def emitted(self, index: int) -> dict[str, Any]:
        (outcome,) = [outcome for user_event, outcome in self.accepted if user_event.source.index == index]
        assert outcome.dlq is None and outcome.event is not None
        return outcome.event


def process(value: bytes | None, config: CoreConfig = CONFIG, headers: Headers = (),
            key: bytes | None = b"key") -> Result:
    """One raw message, exactly as `process_file` handles it (plus the Kafka path's by-user encoding)."""
    message = RawMessage("events.raw", 2, 11, T0, value, key, headers)
    pipeline, stores = Pipeline(config), PartitionStores()
    split = pipeline.split(message)
    result = Result(value, config, headers, rejected=list(split.rejected))
    for record in split.rejected:
        orjson.dumps(record.to_json())
        record.kafka_headers()
    for user_event in split.events:
        UserEvent.from_bytes(user_event.to_bytes())
        outcome = pipeline.process(user_event, stores)
        for output in (outcome.event, outcome.delta):
            if output is not None:
                orjson.dumps(output)
        if outcome.dlq is not None:
            orjson.dumps(outcome.dlq.to_json())
        result.accepted.append((user_event, outcome))
    for _, state in stores.state_records():
        orjson.dumps(state)
    stores.commit()
    pipeline.registry.commit()
    return result


def assert_sound(result: Result) -> dict[int | None, str]:
    """Every unit accounted for once, every reason one of SPEC §2 (never a caught bug), every
    DLQ payload reproducing its unit's reason when published again."""
    fates = result.by_index()
    if None in fates:
        assert len(fates) == 1, fates
    else:
        assert sorted(fates) == list(range(len(fates))), fates  # type: ignore[type-var]
    assert set(fates.values()) <= SPEC_REASONS | {"ok"}, fates
    for record in result.rejected:
        replayed = process(record.payload, result.config, record.headers)
        assert replayed.accepted == []
        assert [(r.reason, r.source.index) for r in replayed.rejected] == [
            (record.reason, None if record.source.index is None else 0)
        ]
    return fates


# ---- structural mutations of valid envelopes ---------------------------------------------------

good_events = st.builds(
    lambda event_type, user, props, ops, time: {
        "event_type": event_type,
        "user_id": f"user-{user}",
        "insert_id": "insert-victim",  # the good events of an envelope get theirs by position
        "time": time,
        "event_properties": props,
        "user_properties": ops,
        "platform": "Web",
    },
    st.sampled_from(["click", "purchase", "[Experiment] Exposure", "page view"]),
    st.integers(min_value=1, max_value=5),
    st.dictionaries(st.text(max_size=6), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=6) | st.booleans(),
                    max_size=3),
    st.sampled_from([{}, {"$set": {"plan": "pro"}}, {"$add": {"n": 1}}, {"color": "blue"}]),
    st.integers(min_value=0, max_value=2**45),
)

non_strings = st.sampled_from([5, 0, -1, 1.5, True, False, [], ["user-1"], {}, {"id": "user-1"}])
non_objects = st.sampled_from([[], [1], "x", "", 5, 0.5, True, False])
non_numbers = st.sampled_from(["2024-01-01T00:00:00Z", "1700000000000", "", True, False, [], {}, [1]])
bad_times = non_numbers | st.sampled_from([-1, -0.5, -1e-9, 2**63, 2**64 - 1, 1.9e19, 1e300])
placeholder_ids = st.sampled_from(["null", "anonymous", " N/A ", "UNDEFINED", "0", "-1", '""', "{}", "lmy47d",
                                   "00000000-0000-0000-0000-000000000000", "abc", "", None])
operations = st.sampled_from(["$set", "$setOnce", "$unset", "$add", "$append", "$prepend", "$preInsert",
                              "$postInsert", "$remove"])


def nested(depth: int) -> Any:
    """A value whose deepest container is `depth` levels below it (0: a scalar)."""
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


@dataclass(frozen=True)
class Mutation:
    name: str
    fields: frozenset[str]  # the fields it touches: two mutations combine only when disjoint
    reason: str | None  # None: the event stays good
    apply: Callable[[dict[str, Any]], Any]


def setting(name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda event: {**event, name: value}


def dropping(*names: str) -> Callable[[dict[str, Any]], Any]:
    return lambda event: {key: value for key, value in event.items() if key not in names}


def mutations() -> st.SearchStrategy[Mutation]:
    def m(name: str, fields: set[str], reason: str | None,
          applies: st.SearchStrategy[Callable[[dict[str, Any]], Any]]) -> st.SearchStrategy[Mutation]:
        return applies.map(lambda apply: Mutation(name, frozenset(fields), reason, apply))

    exposure_props = st.sampled_from([{}, {"flag_key": 5}, {"flag_key": ""}, {"flag_key": "  "}, {"flag_key": None},
                                       {"flag_key": "f", "variant": 5}, {"flag_key": "f", "variant": True},
                                       {"flag_key": "f", "variant": ["on"]}, {"flag_key": "f", "experiment_key": 2}])
    return st.one_of(
        m("not an object", {"*"}, "invalid_event", (non_objects | st.none()).map(lambda v: lambda _: v)),
        m("event_properties type", {"event_properties"}, "invalid_event", non_objects.map(
            lambda v: setting("event_properties", v))),
        m("user_properties type", {"user_properties"}, "invalid_event", non_objects.map(
            lambda v: setting("user_properties", v))),
        *(m(f"{name} type", {name}, "invalid_event", non_strings.map(lambda v, n=name: setting(n, v)))
          for name in ("user_id", "device_id", "insert_id")),
        m("too deep", {"event_properties"}, "invalid_event", st.integers(min_value=39, max_value=200).map(
            lambda depth: setting("event_properties", {"deep": nested(depth)}))),  # event 1 + properties 1 + depth
        m("deep but within 40", {"event_properties"}, None, st.integers(min_value=0, max_value=38).map(
            lambda depth: setting("event_properties", {"deep": nested(depth)}))),
        m("event_type missing", {"event_type"}, "missing_event_type", st.just(dropping("event_type"))),
        m("event_type bad", {"event_type"}, "missing_event_type", (
            non_strings | st.sampled_from(["", " ", "\t\n", None])).map(lambda v: setting("event_type", v))),
        m("no ids", {"user_id", "device_id"}, "missing_user_identity", st.just(dropping("user_id", "device_id"))),
        m("placeholder ids", {"user_id", "device_id"}, "missing_user_identity", st.tuples(
            placeholder_ids, placeholder_ids).map(lambda ids: lambda e: {**e, "user_id": ids[0], "device_id": ids[1]})),
        m("time", {"time"}, "invalid_time", bad_times.map(lambda v: setting("time", v))),
        m("exposure", {"event_type", "event_properties"}, "invalid_exposure", st.tuples(
            st.sampled_from(["$exposure", "$impression"]), exposure_props).map(
            lambda t: lambda e: {**e, "event_type": t[0], "event_properties": t[1]})),
        m("operation operand", {"user_properties"}, "invalid_user_properties", st.tuples(
            operations, non_objects).map(lambda t: setting("user_properties", {"color": "red", t[0]: t[1]}))),
        # Missing optional fields, extra fields and nulls keep the event good.
        m("optional fields missing", {"time", "insert_id", "event_properties", "user_properties", "platform"}, None,
          st.just(dropping("time", "insert_id", "event_properties", "user_properties", "platform"))),
        m("nulls count as absent", {"time", "event_properties", "user_properties"}, None,
          st.just(lambda e: {**e, "time": None, "event_properties": None, "user_properties": None})),
        m("extra fields", {"extra"}, None, st.dictionaries(
            st.text(min_size=1, max_size=8).map(lambda k: "x-" + k),
            st.none() | st.integers(-99, 99) | st.text(max_size=5) | st.lists(st.integers(-99, 99), max_size=3),
            min_size=1, max_size=3,
        ).map(lambda extra: lambda e: {**e, **extra})),
    )


def compatible(pair: list[Mutation]) -> bool:
    if any("*" in mutation.fields for mutation in pair) and len(pair) > 1:
        return False
    return len(pair) < 2 or not pair[0].fields & pair[1].fields


def expected_reason(applied: list[Mutation]) -> str | None:
    found = [mutation.reason for mutation in applied if mutation.reason is not None]
    return min(found, key=EVENT_CHECKS.index) if found else None


@EXAMPLES
@given(
    st.lists(good_events, max_size=5),
    good_events,
    st.lists(mutations(), min_size=1, max_size=2).filter(compatible),
    st.data(),
    st.sampled_from([(CONFIG, None), (PROJECTS, "key-a")]),
    st.sampled_from([None, {"min_id_length": 3}, {"min_id_length": "x"}]),
)
def test_a_mutated_event_gets_its_spec_reason_and_the_good_ones_go_on(
    good: list[dict[str, Any]], victim: dict[str, Any], applied: list[Mutation], data: st.DataObject,
    project: tuple[CoreConfig, str | None], options: dict[str, Any] | None,
) -> None:
    config, api_key = project
    good = [{**event, "insert_id": f"insert-{index}"} for index, event in enumerate(good)]
    bad: Any = victim
    for mutation in applied:
        bad = mutation.apply(bad)
    position = data.draw(st.integers(min_value=0, max_value=len(good)), label="position")
    events: list[Any] = [*good[:position], bad, *good[position:]]
    envelope: dict[str, Any] = {"events": events}
    if api_key is not None:
        envelope["api_key"] = api_key
    if options is not None:
        envelope["options"] = options
    value = orjson.dumps(envelope)
    result = process(value, config)
    fates = assert_sound(result)

    reason = expected_reason(applied)
    min_id_length = 3 if options == {"min_id_length": 3} else 5
    if reason == "missing_user_identity" and type(bad) is dict:
        # "abc" is a placeholder only through its length: with min_id_length 3 it is an id.
        ids = [bad.get("user_id"), bad.get("device_id")]
        if any(type(i) is str and i.strip().lower() == "abc" and len(i) >= min_id_length for i in ids):
            reason = expected_reason([m for m in applied if m.reason != "missing_user_identity"])
    assert fates[position] == (reason or "ok"), (applied, bad)
    for index, event in enumerate(events):
        if index == position:
            continue
        emitted = result.emitted(index)
        assert (emitted["event_type"], emitted["user_id"], emitted["insert_id"]) == (
            event["event_type"], event["user_id"], event["insert_id"]
        )
        assert emitted["project_id"] == ("proj_a" if api_key else "default")
    if reason is None:
        emitted = result.emitted(position)
        for name, extra in bad.items():
            if name.startswith("x-"):
                assert same_value(emitted[name], extra)  # extra top-level fields pass through (§8.1)
    else:
        (record,) = result.rejected
        # The rejected unit is an envelope of that event alone, with the original api_key and options (§8.4).
        unit = {name: envelope[name] for name in ("api_key", "options") if name in envelope}
        assert same_value(orjson.loads(record.payload), {"events": [bad], **unit})
        assert record.key == b"key"


# ---- byte-level mutations ----------------------------------------------------------------------

hostile_bytes = st.sampled_from([
    b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x00", b"NaN", b"Infinity", b"-Infinity",
    b"1e400", b'"\\ud800"', b"\\ud800", b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b" ", b"\n", b"null",
    b'"events":', b'{"events":5}', b"\xef\xbb\xbf",
]) | st.binary(min_size=1, max_size=4)


@st.composite
def mangled_envelopes(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A valid envelope's bytes with a byte flipped, the tail cut, bytes inserted or a span removed."""
    original = orjson.dumps({"events": draw(st.lists(good_events, min_size=1, max_size=4))})
    at = draw(st.integers(min_value=0, max_value=len(original) - 1))
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    if kind == "flip":
        value = original[:at] + bytes([original[at] ^ draw(st.integers(1, 255))]) + original[at + 1:]
    elif kind == "truncate":
        value = original[:at]
    elif kind == "insert":
        value = original[:at] + draw(hostile_bytes) + original[at:]
    else:
        value = original[:at] + original[at + draw(st.integers(1, 8)):]
    return original, value


NOT_JSON = object()


def orjson_or_not_json(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return NOT_JSON


@EXAMPLES
@given(mangled_envelopes(), st.sampled_from([CONFIG, PROJECTS]))
def test_mangled_bytes_are_judged_like_the_json_they_still_are(pair: tuple[bytes, bytes], config: CoreConfig) -> None:
    original, value = pair
    result = process(value, config)
    fates = assert_sound(result)
    decoded = orjson_or_not_json(value)
    if decoded is NOT_JSON:
        assert result.whole() == "malformed_json"
    elif type(decoded) is not dict:
        assert result.whole() == "invalid_envelope"
    elif "events" not in decoded:
        assert list(fates) == [None]  # one bare event, judged on its own
    elif type(decoded["events"]) is not list:
        assert result.whole() == "invalid_envelope"
    elif config.projects is not None:
        assert result.whole() == "invalid_api_key"  # the mangled envelope never has a known api_key
    else:
        events, before = decoded["events"], orjson.loads(original)["events"]
        assert sorted(fates) == list(range(len(events)))  # type: ignore[type-var]
        for index, event in enumerate(events):  # events the mangling missed are processed as before
            if index < len(before) and same_value(event, before[index]):
                assert fates[index] == "ok"


# ---- explicit hostile messages -----------------------------------------------------------------

GOOD = {"event_type": "click", "user_id": "user-1", "insert_id": "good-1"}
GOOD_BYTES = orjson.dumps(GOOD)


def envelope_with(event: bytes) -> bytes:
    """An envelope whose event 0 is `event` (bytes, spliced as is) and event 1 is good."""
    return b'{"api_key":"k","events":[' + event + b"," + GOOD_BYTES + b"]}"


@pytest.mark.parametrize("value", [b"0", b"-1.5", b"1e308", b"null", b"true", b"false", b'"text"', b'""', b"[]",
                                   b"[" + GOOD_BYTES + b"]", b"[[]]", b"  42  "])
def test_json_that_is_not_an_object_is_invalid_envelope(value: bytes) -> None:
    assert process(value).whole() == "invalid_envelope"


@pytest.mark.parametrize("value", [
    None, b"", b" ", b"NaN", b"Infinity", b"-Infinity", b"nan", b"{", b"}", b'{"events":[', b"\x00",
    b'{"event_type":"click","user_id":"user-1","time":NaN}',
    b'{"event_type":"click","user_id":"user-1","event_properties":{"x":Infinity}}',
    envelope_with(b'{"event_type":"click","user_id":"user-1","time":-Infinity}'),
    b'{"event_type":"click","user_id":"user-1",}', b"{'event_type':'click'}", GOOD_BYTES + b"x",
    GOOD_BYTES + GOOD_BYTES,
])
def test_non_json_and_nan_literals_are_malformed_json(value: bytes | None) -> None:
    result = process(value)
    assert result.rejected[0].payload == (value or b"")
    assert [(r.reason, r.source.index) for r in result.rejected] == [("malformed_json", None)]
    assert result.accepted == []


@pytest.mark.parametrize("bad", [
    b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"caf\xe9", b"\x80", b"\xf8\x88\x80\x80\x80",
    b"\\ud800", b"\\udc00x", b"\\ud800\\u0041",
])
@pytest.mark.parametrize("where", ["value", "key", "top-level"])
def test_invalid_utf8_anywhere_is_malformed_json_for_the_whole_message(bad: bytes, where: str) -> None:
    if where == "value":
        event = b'{"event_type":"click","user_id":"user-1","event_properties":{"p":"' + bad + b'"}}'
    elif where == "key":
        event = b'{"event_type":"click","user_id":"user-1","user_properties":{"' + bad + b'":1}}'
    else:
        event = b'{"event_type":"' + bad + b'","user_id":"user-1"}'
    # The first check of §2 is about the value as a whole: the good event goes with it.
    assert process(envelope_with(event)).whole() == "malformed_json"
    assert process(event).whole() == "malformed_json"


def test_invalid_utf8_in_the_project_header_is_invalid_envelope() -> None:
    for header in (b"\xff", b"p\xc3", b"\xed\xa0\x80", b"p 1", b""):
        assert process(GOOD_BYTES, headers=(("project_id", header),)).whole() == "invalid_envelope"


def test_duplicate_keys_last_one_wins_and_the_unit_reproduces() -> None:
    assert process(b'{"event_type":5,"event_type":"click","user_id":"user-1"}').by_index()[None] == "ok"
    assert process(b'{"event_type":"click","event_type":5,"user_id":"user-1"}').whole() == "missing_event_type"
    assert process(b'{"events":[' + GOOD_BYTES + b'],"events":5}').whole() == "invalid_envelope"
    result = process(b'{"events":5,"events":[' + GOOD_BYTES + b"]}")
    assert result.by_index() == {0: "ok"}
    result = process(envelope_with(b'{"event_type":"click","user_id":"user-1","time":1,"time":"x"}'))
    assert assert_sound(result) == {0: "invalid_time", 1: "ok"}
    assert orjson.loads(result.rejected[0].payload) == {
        "api_key": "k", "events": [{"event_type": "click", "user_id": "user-1", "time": "x"}]
    }


# ---- limits: size, events per envelope, nesting, long strings ----------------------------------


def padded(events: list[Any], size: int) -> bytes:
    """An envelope of exactly `size` bytes (an envelope-level field takes the padding)."""
    bare = orjson.dumps({"events": events, "pad": ""})
    assert len(bare) <= size
    return orjson.dumps({"events": events, "pad": "x" * (size - len(bare))})


def test_a_message_of_exactly_the_size_limit_is_accepted_and_one_byte_more_is_too_large() -> None:
    events = [{**GOOD, "insert_id": f"i-{n}"} for n in range(3)]
    at_limit = padded(events, CONFIG.max_message_bytes)
    assert len(at_limit) == 1_000_000
    assert assert_sound(process(at_limit)) == {0: "ok", 1: "ok", 2: "ok"}
    over = padded(events, CONFIG.max_message_bytes + 1)
    assert process(over).whole() == "payload_too_large"
    # Not JSON is the first check, whatever the size.
    assert process(over[:-1] + b",}").whole() == "malformed_json"


@pytest.mark.parametrize("size", [MB + 1, 2 * MB, 5 * MB])
def test_huge_property_values_and_keys_over_the_size_limit_are_payload_too_large(size: int) -> None:
    huge = "v" * size
    for event in ({**GOOD, "event_properties": {"p": huge}}, {**GOOD, "user_properties": {huge: 1}},
                  {**GOOD, huge: 1}, {**GOOD, "event_type": huge}):
        assert process(orjson.dumps({"events": [event, GOOD]})).whole() == "payload_too_large"
        assert process(orjson.dumps(event)).whole() == "payload_too_large"


def test_huge_strings_within_the_size_limit_are_truncated_in_properties_only() -> None:
    huge = "é" * 200_000  # 400 KB of UTF-8
    events = [
        {**GOOD, "insert_id": "a", "event_properties": {"p": huge, huge: [huge[:5000]]}},
        {**GOOD, "insert_id": "b", "user_properties": {"$set": {huge: huge}}},
        {**GOOD, "insert_id": "c", "platform": huge},
        {**GOOD, "insert_id": "d", "event_type": huge, "user_id": huge[:100_000]},
    ]
    for index, event in enumerate(events):
        value = orjson.dumps({"events": [event, GOOD]})
        assert len(value) < MB
        result = process(value, key=b"k" * 2 * MB)  # a huge Kafka key is carried, never parsed
        assert assert_sound(result) == {0: "ok", 1: "ok"}
        emitted = result.emitted(0)
        assert result.emitted(1)["insert_id"] == "good-1"
        if index == 0:
            assert emitted["event_properties"] == {"p": "é" * 1024, "é" * 1024: ["é" * 1024]}
        elif index == 1:
            assert emitted["user_properties"] == {"é" * 1024: "é" * 1024}
        elif index == 2:
            assert emitted["platform"] == huge  # top-level fields are not truncated (§2)
        else:
            assert (emitted["event_type"], emitted["user_id"]) == (huge, huge[:100_000])


def test_2000_events_are_accepted_and_2001_are_payload_too_large() -> None:
    events = [{**GOOD, "user_id": f"user-{n % 7}", "insert_id": f"i-{n}"} for n in range(2001)]
    result = process(orjson.dumps({"events": events[:2000]}))
    fates = assert_sound(result)
    assert fates == dict.fromkeys(range(2000), "ok")
    assert all(outcome.event is not None for _, outcome in result.accepted)
    assert process(orjson.dumps({"events": events})).whole() == "payload_too_large"
    # The count is checked before the events are: bad events in an over-long envelope change nothing.
    assert process(orjson.dumps({"events": [5] * 2001})).whole() == "payload_too_large"
    assert process(orjson.dumps({"events": [5] * 2001}), PROJECTS).whole() == "payload_too_large"
    # ...and a 2000-event envelope is still judged event by event.
    fates = assert_sound(process(orjson.dumps({"events": [5, *events[:1999]]})))
    assert fates[0] == "invalid_event" and list(fates.values()).count("ok") == 1999


def deep_bytes(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"d":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_an_event_nested_deeper_than_40_is_invalid_event_and_the_others_go_on(kind: str) -> None:
    # The event is at depth 1, event_properties at 2, its value at 3: a value `d` levels deep reaches 2 + d.
    for depth, expected in ((38, "ok"), (39, "invalid_event"), (253, "invalid_event"), (1000, "invalid_event")):
        event = b'{"event_type":"click","user_id":"user-1","event_properties":{"p":' + deep_bytes(depth, kind) + b"}}"
        fates = assert_sound(process(envelope_with(event)))
        assert fates == {0: expected, 1: "ok"}, depth


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("depth", [1100, 10_000, 100_000])
def test_nesting_past_the_decoder_limit_is_invalid_event_for_the_whole_message(kind: str, depth: int) -> None:
    # README decision: past orjson's 1024 levels the message is rejected whole, as invalid_event.
    event = b'{"event_type":"click","user_id":"user-1","event_properties":{"p":' + deep_bytes(depth, kind) + b"}}"
    assert process(envelope_with(event)).whole() == "invalid_event"
    assert process(deep_bytes(depth, kind)).whole() == "invalid_event"
    # Over the size limit too, it is JSON: payload_too_large comes first (this was malformed_json).
    padding = b',"pad":"' + b"x" * MB + b'"'
    assert process(b'{"events":[' + event + b"]" + padding + b"}").whole() == "payload_too_large"


def test_deep_values_outside_the_events_do_not_reject_them() -> None:
    deep = deep_bytes(900, "list")
    for value in (b'{"options":' + deep + b',"events":[' + GOOD_BYTES + b"]}",
                  b'{"client":' + deep + b',"events":[' + GOOD_BYTES + b"]}"):
        assert assert_sound(process(value)) == {0: "ok"}


# ---- memory ------------------------------------------------------------------------------------


def peak_bytes(value: bytes) -> tuple[int, dict[int | None, str]]:
    tracemalloc.start()
    try:
        result = process(value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result.by_index()


HUGE = "x" * (2 * MB)
LARGE_MESSAGES = {
    "2 MB property value": (orjson.dumps({"events": [{**GOOD, "event_properties": {"p": HUGE}}, GOOD]}),
                            {None: "payload_too_large"}),
    "2 MB property key": (orjson.dumps({**GOOD, "user_properties": {"$set": {HUGE: 1}}}), {None: "payload_too_large"}),
    "3 MB of invalid UTF-8": (b'{"events":[{"event_type":"' + b"\xff" * (3 * MB) + b'"}]}', {None: "malformed_json"}),
    "5 MB not JSON": (b"[" + b"1," * (5 * MB // 2), {None: "malformed_json"}),
    "900 KB property value": (orjson.dumps({"events": [{**GOOD, "event_properties": {"p": "y" * 900_000}}, GOOD]}),
                              {0: "ok", 1: "ok"}),
    "2000 events": (orjson.dumps({"events": [{**GOOD, "insert_id": f"i-{n}", "event_properties": {
        f"p{k}": "v" * 8 for k in range(20)}} for n in range(2000)]}), dict.fromkeys(range(2000), "ok")),
    "100k-deep nesting": (envelope_with(b'{"event_type":"a","user_id":"user-1","p":' + deep_bytes(100_000, "list")
                                        + b"}"), {None: "invalid_event"}),
}


@pytest.mark.parametrize("name", list(LARGE_MESSAGES))
def test_memory_stays_within_20_times_the_message(name: str) -> None:
    value, fates = LARGE_MESSAGES[name]
    peak, got = peak_bytes(value)
    assert got == fates
    assert peak < 20 * len(value) + 4 * MB, f"{name}: peak {peak:,} bytes for a {len(value):,} byte message"


@pytest.mark.parametrize("shape", ["empty objects", "empty lists", "tiny strings"])
def test_memory_of_container_dense_messages_stays_linear(shape: str) -> None:
    # Value-dense input costs far more than 20x: a `{}` of input decodes to a 64-byte dict, and
    # orjson.dumps transiently reserves ~265 bytes per value of the output (a 1 MB property list
    # peaks at ~110-150x). The check here is that it stays linear: 4x the input, at most 5x the peak
    # (a quadratic blow-up would be 16x), under an absolute ceiling of 200x the input.
    item = {"empty objects": {}, "empty lists": [], "tiny strings": "s"}[shape]
    peaks = []
    for count in (60_000, 240_000):
        value = orjson.dumps({"events": [{**GOOD, "event_properties": {"p": [item] * count}}, GOOD]})
        peak, fates = peak_bytes(value)
        assert fates == {0: "ok", 1: "ok"}
        assert peak < 200 * len(value) + 4 * MB, f"{shape}: peak {peak:,} bytes for {len(value):,} bytes"
        peaks.append(peak)
    assert peaks[1] < 5 * peaks[0], f"{shape}: 4x the input took {peaks[1] / peaks[0]:.1f}x the memory"
