"""Property tests for SPEC §9 ("property maps must round-trip every JSON value exactly"): for any
JSON values, the Avro round trip equals the JSON form under type-strict equality; any bytes behind
the Avro marker either decode or become a RawDecodeError, never an exception."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.core.values import same_value
from worker.serde import RawDecodeError, codec_for, raw_to_json
from worker.serde.avro_schemas import schema_versions

text = st.text(st.characters(codec="utf-8"), max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 10**30, -(10**30)])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 1.0, 1e300, 5e-324])
    | text
)
json_values = st.recursive(
    scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
property_maps = st.dictionaries(text, json_values, max_size=6)
FAST = settings(max_examples=100, deadline=None)


def avro_round_trip(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    codec = codec_for(kind, "avro")
    return codec.decode(codec.encode(record))


@FAST
@given(properties=property_maps, updated_at=st.integers(min_value=0, max_value=2**63 - 1))
def test_state_properties_round_trip(properties: dict[str, Any], updated_at: int) -> None:
    record = {"project_id": "p", "user_key": "p/u:user-1", "user_properties": properties, "updated_at": updated_at}
    assert same_value(avro_round_trip("state", record), record)


@FAST
@given(old=json_values, new=json_values, name=text)
def test_delta_old_and_new_round_trip(old: Any, new: Any, name: str) -> None:
    record = {"project_id": "p", "user_key": "p/d:device-1", "user_id": None, "device_id": "device-1",
              "event_type": "$identify", "insert_id": None, "ingested_at": 1,
              "changes": [{"property": name, "old": old, "new": new}]}
    assert same_value(avro_round_trip("deltas", record), record)


@FAST
@given(event_properties=property_maps, user_properties=property_maps, passed_through=property_maps)
def test_enriched_round_trip(event_properties: dict[str, Any], user_properties: dict[str, Any],
                             passed_through: dict[str, Any]) -> None:
    record = {"project_id": "p", "event_type": "e", "user_id": "user-1", "time": 5,
              "event_properties": event_properties, "user_properties": user_properties, "billable": True,
              "ingested_at": 6}
    record.update((f"x{name}", value) for name, value in passed_through.items())
    assert same_value(avro_round_trip("enriched", record), record)


@FAST
@given(event=st.dictionaries(
    st.sampled_from(["user_id", "device_id", "event_type", "time", "insert_id", "event_properties",
                     "user_properties", "groups", "group_properties", "extra", "platform"]) | text,
    json_values, max_size=8))
def test_any_raw_event_becomes_the_same_json(event: dict[str, Any]) -> None:
    converted = raw_to_json(codec_for("raw", "avro").encode(event))
    assert isinstance(converted, bytes)
    assert same_value(json.loads(converted), event)  # the standard library keeps integers beyond 64 bits


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=64))
def test_any_bytes_behind_the_raw_marker_decode_or_are_rejected(body: bytes) -> None:
    header = b"\xc3\x01" + schema_versions("raw").current.fingerprint
    result = raw_to_json(header + body)
    if isinstance(result, RawDecodeError):
        assert result.reason in ("malformed_avro", "unknown_schema")
    else:
        assert isinstance(json.loads(result), dict)
