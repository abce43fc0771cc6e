"""Properties of the split stage (SPEC §2, §8.4): any message value, JSON or not, becomes validated
events or DLQ records with a verdict on the input, never an exception nor a `processing_error`;
every DLQ payload, published again, is rejected for the same reason; and the by-user encoding of
an event round-trips exactly."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.property.strategies import configs, events, headers, json_objects, message_values
from tests.support.clock import T0
from worker.core import reasons
from worker.core.config import CoreConfig
from worker.core.records import DlqRecord, Headers, RawMessage, Source, UserEvent
from worker.core.split import split_message
from worker.core.values import same_value

EXAMPLES = settings(max_examples=200, deadline=None)


def split(value: bytes, config: CoreConfig, message_headers: Headers = ()) -> tuple[list[UserEvent], list[Any]]:
    result = split_message(RawMessage("events.raw", 0, 5, T0, value, b"k", message_headers), config)
    return result.events, result.rejected


def assert_replay_gives_the_same_reason(record: DlqRecord, config: CoreConfig) -> None:
    payload = base64.b64decode(record.to_json()["payload_b64"])
    replayed_events, replayed = split(payload, config, record.headers)
    assert replayed_events == []
    assert [(r.reason, r.source.index) for r in replayed] == [
        (record.reason, None if record.source.index is None else 0)
    ]


def assert_sound(value: bytes, config: CoreConfig, message_headers: Headers = ()) -> None:
    accepted, rejected = split(value, config, message_headers)
    indexes = [e.source.index for e in accepted] + [r.source.index for r in rejected]
    if None in indexes:  # a bare event, or the whole message: one unit
        assert len(indexes) == 1
    else:
        assert sorted(indexes) == list(range(len(indexes)))  # every event of an envelope is accounted for
    for record in rejected:
        # processing_error means the judging itself raised: a bug in the split stage, never a
        # verdict on the input, so it is not a sound outcome here.
        assert record.reason != reasons.PROCESSING_ERROR, record.detail
        assert_replay_gives_the_same_reason(record, config)
        if record.source.index is None:
            assert record.payload == value
    for user_event in accepted:
        event = user_event.event
        assert type(event["time"]) is int and 0 <= event["time"] < 2**63
        assert "api_key" not in event and "$skip_user_properties_sync" not in event
        assert "user_id" in event or "device_id" in event
        assert user_event.user_key.startswith(event["project_id"] + "/")


@EXAMPLES
@given(message_values, configs, headers)
def test_any_json_value_becomes_events_or_reproducible_dlq_records(value: Any, config: CoreConfig,
                                                                   message_headers: Headers) -> None:
    assert_sound(orjson.dumps(value), config, message_headers)


def mangled(data: bytes) -> st.SearchStrategy[bytes]:
    """Valid JSON with a few bytes cut, replaced or inserted."""
    position = st.integers(min_value=0, max_value=len(data))
    return st.builds(
        lambda at, junk, cut: data[:at] + junk + data[at + cut:],
        position, st.binary(max_size=3), st.integers(min_value=0, max_value=3),
    )


@EXAMPLES
@given(st.binary(max_size=64) | message_values.map(orjson.dumps).flatmap(mangled), configs)
def test_any_bytes_become_events_or_reproducible_dlq_records(value: bytes, config: CoreConfig) -> None:
    assert_sound(value, config)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=1100), st.sampled_from(["[", '{"a":']), configs)
def test_deep_nesting_never_escapes_as_an_exception(depth: int, opener: str, config: CoreConfig) -> None:
    closer = "]" if opener == "[" else "}"
    deep = (opener * depth + ("0" if opener == "[" else "{}") + closer * depth).encode()
    event = b'{"event_type":"e","user_id":"user-1","x":' + deep + b"}"
    for value in (deep, event, b'{"events":[' + event + b',{"event_type":"e","user_id":"user-1"}]}',
                  b'{"events":[5],"options":' + deep + b"}"):
        assert_sound(value, config)


@EXAMPLES
@given(events.map(lambda event: {"events": [event]}) | events, configs, headers)
def test_user_event_round_trips_through_bytes(value: Any, config: CoreConfig, message_headers: Headers) -> None:
    accepted, _ = split(orjson.dumps(value), config, message_headers)
    for user_event in accepted:
        again = UserEvent.from_bytes(user_event.to_bytes())
        assert same_value(again.event, user_event.event)
        assert (again.user_key, again.source, again.skip_sync) == (
            user_event.user_key, user_event.source, user_event.skip_sync
        )


@EXAMPLES
@given(json_objects, st.text(max_size=10), st.integers(min_value=0, max_value=2**31), st.none() | st.integers(0, 2000),
       st.booleans())
def test_any_event_object_round_trips_through_bytes(event: dict[str, Any], user_key: str, offset: int,
                                                    index: int | None, skip_sync: bool) -> None:
    user_event = UserEvent(user_key, event, Source("events.raw", 3, offset, index), skip_sync)
    again = UserEvent.from_bytes(user_event.to_bytes())
    assert same_value(again.event, event) and again.source == user_event.source
    assert (again.user_key, again.skip_sync) == (user_key, skip_sync)
