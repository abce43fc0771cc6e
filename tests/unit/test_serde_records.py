"""Every record kind of SPEC §8, built by the real core from raw messages, round-trips through JSON and
Avro exactly (type-strict, key order kept); Avro raw input gives the core the same outputs as JSON;
and an enriched record written with the v1 schema is read with the current one."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import fastavro
import orjson
import pytest

from tests.support.clock import T0
from worker.core.config import CoreConfig
from worker.core.pipeline import Pipeline
from worker.core.records import RawMessage
from worker.core.stores import PartitionStores
from worker.core.values import same_value
from worker.serde import SerdeError, codec_for, raw_to_json
from worker.serde.avro_schemas import SCHEMA_DIR, read_schema, schema_versions
from worker.serde.codecs import MARKER

RAW_MESSAGES: list[Any] = [
    {"api_key": "k", "events": [
        {"event_type": "page_view", "user_id": "user-1", "device_id": "device-1", "time": 1_700_000_000_123.9,
         "insert_id": "ins-1", "platform": "iOS", "session_id": 1_700_000_000_000, "groups": {"org": ["a", "b"]},
         "event_properties": {"price": 9.99, "qty": 2, "vip": True, "coupon": None, "tags": ["x", 1, 1.0, False],
                              "nested": {"a": {"b": [{}, []]}}, "big": 2**64 - 1, "neg": -(2**63), "é": "☃ 𝄞"},
         "user_properties": {"$set": {"plan": "pro", "score": 1.0}, "$add": {"visits": 1}, "city": "Oslo"}},
        {"event_type": "$exposure", "user_id": "user-1",
         "event_properties": {"flag_key": "checkout", "variant": "treatment", "experiment_key": "exp-1"}},
        {"event_type": "[Experiment] Assignment", "user_id": "user-1", "device_id": "device-1",
         "event_properties": {"checkout.variant": "treatment", "checkout.details": {"v": 3}}},
        {"event_type": "$identify", "user_id": "user-2",
         "user_properties": {"$append": {"seen": [1, "1", True]}, "$unset": {"city": "-"}}},
        {"event_type": "$exposure", "user_id": "user-1", "event_properties": {"flag_key": "checkout"}},
        {"event_type": "click"},
        {"event_type": "click", "user_id": "user-3", "time": "yesterday"},
    ]},
    {"event_type": "purchase", "device_id": "device-9", "$skip_user_properties_sync": True,
     "event_properties": {"revenue": 12}},
    b"{not json",
]


def run_core(values: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """The records the Kafka runner would publish for these raw values (split + process, as process-file)."""
    pipeline, stores = Pipeline(CoreConfig()), PartitionStores()
    records: dict[str, list[dict[str, Any]]] = {"enriched": [], "deltas": [], "state": [], "dlq": []}
    for offset, value in enumerate(values):
        data = value if isinstance(value, bytes) else orjson.dumps(value)
        processed = pipeline.run(RawMessage("events.raw", 2, offset, T0 + offset, data, b"key"), stores)
        records["dlq"] += [rejected.to_json() for rejected in processed.rejected]
        for outcome in processed.outcomes:
            for kind, record in (("enriched", outcome.event), ("deltas", outcome.delta)):
                if record is not None:
                    records[kind].append(record)
            if outcome.dlq is not None:
                records["dlq"].append(outcome.dlq.to_json())
        records["state"] += [state for _, state in stores.state_records()]
        stores.commit()
        pipeline.registry.commit()
    return records


RECORDS = run_core(RAW_MESSAGES)


def test_the_fixture_exercises_every_kind() -> None:
    # Four deltas of two users in one message (one batch): one state record each, the last value.
    assert {kind: len(records) for kind, records in RECORDS.items()} == {
        "enriched": 4, "deltas": 4, "state": 2, "dlq": 3}


@pytest.mark.parametrize("kind", ["enriched", "deltas", "state", "dlq"])
@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_round_trip_is_exact(kind: str, fmt: str) -> None:
    codec = codec_for(kind, fmt)
    for record in RECORDS[kind]:
        decoded = codec.decode(codec.encode(record))
        assert same_value(decoded, record), (decoded, record)
        assert list(decoded) == list(record)  # the same key order as the core's JSON


def test_avro_is_smaller_than_json_for_enriched_events() -> None:
    for record in RECORDS["enriched"]:
        assert len(codec_for("enriched", "avro").encode(record)) < len(codec_for("enriched", "json").encode(record))


def test_enriched_pass_through_fields_and_absent_ids() -> None:
    page_view, *_ = RECORDS["enriched"]
    assert {"platform", "session_id", "groups"} <= page_view.keys()
    purchase = RECORDS["enriched"][-1]
    assert "user_id" not in purchase and "insert_id" not in purchase
    decoded = codec_for("enriched", "avro").decode(codec_for("enriched", "avro").encode(purchase))
    assert "user_id" not in decoded and "insert_id" not in decoded


def test_delta_keeps_null_ids() -> None:
    identify = next(delta for delta in RECORDS["deltas"] if delta["event_type"] == "$identify")
    assert identify["device_id"] is None
    decoded = codec_for("deltas", "avro").decode(codec_for("deltas", "avro").encode(identify))
    assert "device_id" in decoded and decoded["device_id"] is None


def test_dlq_payload_is_bytes_in_avro() -> None:
    record = RECORDS["dlq"][-1]
    data = codec_for("dlq", "avro").encode(record)
    datum = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema_versions("dlq").current.parsed, None)
    assert datum["payload"] == base64.b64decode(record["payload_b64"]) == b"{not json"
    assert datum["source"] == {"topic": "events.raw", "partition": 2, "offset": 2, "index": None}


def test_encoding_a_record_that_misses_a_field_is_an_error() -> None:
    state = dict(RECORDS["state"][0])
    del state["updated_at"]
    with pytest.raises(SerdeError, match="cannot encode as state"):
        codec_for("state", "avro").encode(state)


# Avro raw input


def bare_events(values: list[Any]) -> list[tuple[dict[str, Any] | bytes, int]]:
    """Each event of the raw values as a bare event, with the offset its message had."""
    events: list[tuple[dict[str, Any] | bytes, int]] = []
    for offset, value in enumerate(values):
        if isinstance(value, dict) and "events" in value:
            events += [(event, offset) for event in value["events"]]
        else:
            events.append((value, offset))
    return events


def test_avro_raw_events_give_the_core_the_same_outputs_as_json() -> None:
    json_values = [event for event, _ in bare_events(RAW_MESSAGES)]
    avro_values = [raw_to_json(codec_for("raw", "avro").encode(event)) if isinstance(event, dict) else event
                   for event in json_values]
    assert all(isinstance(value, bytes) for value in avro_values)
    from_json, from_avro = run_core(json_values), run_core(avro_values)
    for kind in ("enriched", "deltas", "state"):
        assert same_value(from_avro[kind], from_json[kind]), kind
    assert [r["reason"] for r in from_avro["dlq"]] == [r["reason"] for r in from_json["dlq"]]


@pytest.mark.parametrize("event", [
    {"event_type": "click", "user_id": 12345, "time": True, "event_properties": [1], "insert_id": None},
    {"event_type": None, "device_id": "device-1", "time": 2**63, "groups": "g", "user_properties": {"$set": 1}},
    {"time": 1.5, "event_properties": {}, "user_properties": None, "extra": {"a": 1}},
    {},
])
def test_any_json_event_has_an_exact_avro_form(event: dict[str, Any]) -> None:
    """Fields whose value does not fit their Avro type travel in `extra`, so the core judges them."""
    converted = raw_to_json(codec_for("raw", "avro").encode(event))
    assert isinstance(converted, bytes)
    assert same_value(json.loads(converted), event)


def test_typed_raw_field_wins_over_extra() -> None:
    avro = codec_for("raw", "avro")
    datum = {"user_id": "user-1", "extra": {"user_id": "other", "platform": "web"}}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema_versions("raw").current.parsed, datum)
    converted = raw_to_json(avro.header + out.getvalue())  # type: ignore[attr-defined]
    assert isinstance(converted, bytes)
    assert orjson.loads(converted) == {"user_id": "user-1", "platform": "web"}


# Schema evolution


def test_records_written_with_enriched_v1_are_read_with_the_current_schema() -> None:
    v1 = read_schema(SCHEMA_DIR / "history" / "enriched_event.v1.avsc")
    current = schema_versions("enriched")
    assert v1.fingerprint != current.current.fingerprint
    assert current.by_fingerprint[v1.fingerprint].path == v1.path
    record = RECORDS["enriched"][0]
    datum = codec_for("enriched", "avro").shape.to_avro(record)  # type: ignore[attr-defined]
    del datum["extra"]  # v1 had no pass-through fields
    out = io.BytesIO(MARKER + v1.fingerprint)
    out.seek(0, io.SEEK_END)
    fastavro.schemaless_writer(out, v1.parsed, datum)
    decoded = codec_for("enriched", "avro").decode(out.getvalue())
    expected = {name: value for name, value in record.items() if name not in ("platform", "session_id", "groups")}
    assert same_value(decoded, expected)

