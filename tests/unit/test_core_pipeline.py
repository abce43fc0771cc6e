"""SPEC §3 (ingestion order, $skip_user_properties_sync), §4 (dedupe), §5.3 ($identify,
$groupidentify), §6 (the experiment property limit), §8 (record shapes) and processing_error,
through the pure pipeline."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from tests.support.clock import T0
from worker.core import reasons
from worker.core.config import CoreConfig
from worker.core.records import RawMessage, UserEvent
from worker.core.split import split_message
from worker.core.stores import PartitionStores
from worker.offline import process_file

if TYPE_CHECKING:
    from tests.conftest import Pipeline

WEEK_MS = 7 * 86_400_000
KEY = "default/u:user-1"


def click(user_properties: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event_type": "click", "user_id": "user-1", **fields}
    if user_properties is not None:
        event["user_properties"] = user_properties
    return event


# ---- §4 dedupe -------------------------------------------------------------------------------


def test_duplicate_within_the_window_is_dropped_silently(pipeline: Pipeline) -> None:
    pipeline.send(click({"$add": {"n": 1}}, insert_id="i-1"), timestamp_ms=T0)
    (outcome,) = pipeline.send(click({"$add": {"n": 1}}, insert_id="i-1", time=5), timestamp_ms=T0 + 1000)
    assert outcome.duplicate is True
    assert (outcome.event, outcome.delta, outcome.dlq) == (None,) * 3
    assert (pipeline.last.states, pipeline.last.dedupe) == ([], {})
    assert len(pipeline.events) == 1 and pipeline.dlq == []
    assert pipeline.state() == {"n": 1}


def test_dedupe_window_boundary_and_the_new_first(pipeline: Pipeline) -> None:
    for at in (T0, T0 + WEEK_MS - 1, T0 + WEEK_MS, T0 + 2 * WEEK_MS - 1, T0 + 2 * WEEK_MS):
        pipeline.send(click({"$add": {"n": 1}}, insert_id="i-1"), timestamp_ms=at)
    # 7 days minus 1 ms is inside the window; exactly 7 days is accepted and becomes the new first.
    assert [outcome.duplicate for outcome in pipeline.outcomes] == [False, True, False, True, False]
    assert pipeline.stores.dedupe.get(f"{KEY}/i-1") == T0 + 2 * WEEK_MS
    assert pipeline.state() == {"n": 3}


def test_a_dropped_duplicate_does_not_refresh_the_first_one(pipeline: Pipeline) -> None:
    pipeline.send(click(insert_id="i-1"), timestamp_ms=T0)
    pipeline.send(click(insert_id="i-1"), timestamp_ms=T0 + WEEK_MS - 1)
    pipeline.send(click(insert_id="i-1"), timestamp_ms=T0 + WEEK_MS + 1)
    assert [outcome.duplicate for outcome in pipeline.outcomes] == [False, True, False]


def test_dedupe_is_per_user_key_and_only_with_an_insert_id(pipeline: Pipeline) -> None:
    pipeline.send(click(insert_id="i-1"))
    pipeline.send(click(insert_id="i-1", user_id="user-2"))
    pipeline.send({"api_key": "x", "events": [click(insert_id="i-1", user_id=None, device_id="device-1")]})
    pipeline.send(click())
    pipeline.send(click())
    assert [outcome.duplicate for outcome in pipeline.outcomes] == [False] * 5
    (outcome,) = pipeline.send(click(insert_id="i-1", time=0))  # event time plays no part
    assert outcome.duplicate


def test_dedupe_entry_of_an_accepted_event(pipeline: Pipeline) -> None:
    (_outcome,) = pipeline.send(click(insert_id="i-1"), timestamp_ms=T0 + 5)
    assert pipeline.last.dedupe == {f"{KEY}/i-1": T0 + 5}


# ---- processing_error ------------------------------------------------------------------------


def test_processing_error_changes_nothing(pipeline: Pipeline) -> None:
    pipeline.restore(KEY, {"plan": "free"})
    real = pipeline.core.transform

    def transform_then_fail(*args: Any) -> Any:
        real(*args)  # the admission and the state update happen, then the event fails
        raise RuntimeError("bug after applying")

    pipeline.core.transform = transform_then_fail
    sent = {"api_key": "key", "options": {"min_id_length": 3},
            "events": [click({"$set": {"plan": "pro", "[Experiment] f": "on"}}, insert_id="i-1", time=7.5)]}
    (outcome,) = pipeline.send(sent, headers=(("trace", b"t"),))
    record = outcome.dlq
    assert record is not None and record.reason == reasons.PROCESSING_ERROR
    assert "RuntimeError: bug after applying" in record.detail
    assert (record.source.topic, record.source.offset, record.source.index) == ("events.raw", 0, 0)
    assert (outcome.event, outcome.delta) == (None, None)
    assert (pipeline.last.states, pipeline.last.dedupe, pipeline.last.admitted) == ([], {}, [])
    # No state, dedupe or registry entry.
    assert pipeline.state() == {"plan": "free"}
    assert pipeline.stores.dedupe.get(f"{KEY}/i-1") is None
    assert pipeline.registry.count("default") == 0
    # Republished, the payload is the same unit: the same event for the same user, failing the same way...
    payload = base64.b64decode(record.to_json()["payload_b64"])
    again = split_message(RawMessage("events.raw", 0, 1, T0 + 9, payload, record.key, record.headers),
                          pipeline.config)
    (user_event,) = again.events
    assert user_event.user_key == KEY and record.key == KEY.encode()
    original = {name: value for name, value in outcome_event(sent).items() if name != "ingested_at"}
    assert {name: value for name, value in user_event.event.items() if name != "ingested_at"} == original
    assert pipeline.core.process(user_event, pipeline.stores).dlq
    # ...and once the bug is gone it goes through, and is not a duplicate of the failed one.
    pipeline.core.transform = real
    (retried,) = pipeline.send(payload, headers=record.headers)
    assert retried.dlq is None and retried.duplicate is False
    assert pipeline.state() == {"plan": "pro", "[Experiment] f": "on"}


def outcome_event(sent: dict[str, Any]) -> dict[str, Any]:
    (user_event,) = split_message(RawMessage("events.raw", 0, 0, T0, orjson.dumps(sent)), CoreConfig()).events
    return user_event.event


def test_processing_error_keeps_skip_sync_in_the_payload(pipeline: Pipeline) -> None:
    def fail(*args: Any) -> Any:
        raise ZeroDivisionError("bug")

    pipeline.core.transform = fail
    (failed,) = pipeline.send(click({"a": 1}))
    assert failed.dlq is not None and "ZeroDivisionError" in failed.dlq.detail
    assert "$skip_user_properties_sync" not in orjson.loads(failed.dlq.payload)
    (failed_skip,) = pipeline.send(click({"a": 1}, **{"$skip_user_properties_sync": True}))
    assert failed_skip.dlq is not None
    assert orjson.loads(failed_skip.dlq.payload)["$skip_user_properties_sync"] is True


# ---- §6 the experiment property limit -------------------------------------------------------


def set_experiment(name: str, value: Any = "on", user: str = "user-1") -> dict[str, Any]:
    return click({"$set": {f"[Experiment] {name}": value}}, user_id=user)


def test_limit_is_exact_on_one_instance(make_pipeline: type[Pipeline]) -> None:
    pipeline = make_pipeline(experiment_property_limit=3)
    for number in range(6):
        pipeline.send(set_experiment(f"f{number}", user=f"user-{number}"))
    pipeline.send(click({"$set": {f"[Experiment] g{n}": 1 for n in range(3)}}))
    assert pipeline.registry.count("default") == 3
    assert [outcome.limit_dropped for outcome in pipeline.outcomes] == [0, 0, 0, 1, 1, 1, 3]
    assert len(pipeline.events) == 7  # the event is still delivered
    assert pipeline.state("default/u:user-3") is None


def test_limit_within_one_event(make_pipeline: type[Pipeline]) -> None:
    pipeline = make_pipeline(experiment_property_limit=2)
    (outcome,) = pipeline.send(click({"$set": {"[Experiment] a": 1, "[Experiment] b": 1, "[Experiment] c": 1},
                                      "plain": 1}))
    assert pipeline.last.admitted == ["[Experiment] a", "[Experiment] b"] and outcome.limit_dropped == 1
    assert pipeline.state() == {"[Experiment] a": 1, "[Experiment] b": 1, "plain": 1}


def test_admitted_names_keep_working(make_pipeline: type[Pipeline]) -> None:
    pipeline = make_pipeline(experiment_property_limit=1)
    pipeline.send(set_experiment("a", "v1"))
    pipeline.send(set_experiment("b"))
    pipeline.send(set_experiment("a", "v2", user="user-2"))
    assert [outcome.limit_dropped for outcome in pipeline.outcomes] == [0, 1, 0]
    assert pipeline.state("default/u:user-2") == {"[Experiment] a": "v2"}


def test_names_from_state_are_admitted_first(make_pipeline: type[Pipeline]) -> None:
    pipeline = make_pipeline(experiment_property_limit=1)
    pipeline.restore("default/u:user-9", {"[Experiment] old": "x"})
    pipeline.send(set_experiment("new"))
    pipeline.send(set_experiment("old"))
    assert [outcome.limit_dropped for outcome in pipeline.outcomes] == [1, 0]


def test_process_file_admits_state_in_names_first(tmp_path: Path) -> None:
    state_in = tmp_path / "state.jsonl"
    state_in.write_bytes(b'{"key": "p1/u:user-9", "user_properties": {"[Experiment] old": "x", "plan": 1}}\n')
    lines = [{"timestamp": T0, "headers": {"project_id": "p1"}, "value": set_experiment(name)}
             for name in ("new", "old")]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    summary = process_file(source, tmp_path / "out", CoreConfig(experiment_property_limit=1), T0, state_in)
    assert summary.limit_dropped == 1
    rows = [orjson.loads(line) for line in (tmp_path / "out" / "state.jsonl").read_bytes().splitlines()]
    assert rows == [{"key": "p1/u:user-1", "user_properties": {"[Experiment] old": "on"}},
                    {"key": "p1/u:user-9", "user_properties": {"[Experiment] old": "x", "plan": 1}}]


def test_admission_on_first_write_even_when_the_value_is_unchanged(make_pipeline: type[Pipeline]) -> None:
    pipeline = make_pipeline(experiment_property_limit=1)
    # The state holds a name the registry does not (restored from user-state alone).
    pipeline.restore(KEY, {"[Experiment] a": "on"}, admit=False)
    (outcome,) = pipeline.send(set_experiment("a", "on"))
    assert pipeline.last.admitted == ["[Experiment] a"] and outcome.delta is None
    assert pipeline.registry.is_admitted("default", "[Experiment] a")
    (later,) = pipeline.send(set_experiment("b", user="user-2"))
    assert later.limit_dropped == 1


WRITES: list[tuple[str, dict[str, Any]]] = [
    ("$set", {"user_properties": {"$set": {"[Experiment] x": "on"}}}),
    ("$setOnce", {"user_properties": {"$setOnce": {"[Experiment] x": "on"}}}),
    ("$add", {"user_properties": {"$add": {"[Experiment] x": 1}}}),
    ("$append", {"user_properties": {"$append": {"[Experiment] x": 1}}}),
    ("$prepend", {"user_properties": {"$prepend": {"[Experiment] x": [1]}}}),
    ("$preInsert", {"user_properties": {"$preInsert": {"[Experiment] x": 1}}}),
    ("$postInsert", {"user_properties": {"$postInsert": {"[Experiment] x": 1}}}),
    ("plain key", {"user_properties": {"[Experiment] x": "on"}}),
    ("exposure", {"event_type": "$exposure", "event_properties": {"flag_key": "x", "variant": "on"}}),
    ("assignment $set", {"event_type": "[Experiment] Assignment",
                         "user_properties": {"$set": {"[Experiment] x": "on"}}}),
]


@pytest.mark.parametrize("fields", [case[1] for case in WRITES], ids=[case[0] for case in WRITES])
def test_every_writing_operation_needs_admission(make_pipeline: type[Pipeline], fields: dict[str, Any]) -> None:
    full = make_pipeline(experiment_property_limit=1)
    full.registry.load("default", "[Experiment] taken")
    (dropped,) = full.send({**click(), **fields})
    assert dropped.limit_dropped == 1 and full.last.admitted == []
    assert full.state() is None and dropped.event is not None
    room = make_pipeline(experiment_property_limit=1)
    (admitted,) = room.send({**click(), **fields})
    assert room.last.admitted == ["[Experiment] x"] and admitted.limit_dropped == 0
    assert room.registry.is_admitted("default", "[Experiment] x")


@pytest.mark.parametrize(
    "fields",
    [{"user_properties": {"$unset": {"[Experiment] x": "-"}}},
     {"user_properties": {"$set": {"[Experiment] x": None}}},
     {"user_properties": {"[Experiment] x": None}},
     {"user_properties": {"$clearAll": "-"}},
     {"event_type": "$exposure", "event_properties": {"flag_key": "x", "variant": None}}],
    ids=["$unset", "$set null", "plain null", "$clearAll", "unset exposure"],
)
def test_unset_never_needs_admission(make_pipeline: type[Pipeline], fields: dict[str, Any]) -> None:
    pipeline = make_pipeline(experiment_property_limit=0)
    pipeline.restore(KEY, {"[Experiment] x": "on", "plan": 1}, admit=False)
    (outcome,) = pipeline.send({**click(), **fields})
    assert outcome.limit_dropped == 0 and pipeline.last.admitted == []
    state = pipeline.state()
    assert state is not None and "[Experiment] x" not in state


def test_ignored_add_takes_no_place_under_the_limit(make_pipeline: type[Pipeline]) -> None:
    pipeline = make_pipeline(experiment_property_limit=1)
    (ignored,) = pipeline.send(click({"$add": {"[Experiment] n": "abc"}}))
    assert (ignored.add_ignored, ignored.limit_dropped, pipeline.last.admitted) == (1, 0, [])
    pipeline.send(set_experiment("a"))
    assert pipeline.last.admitted == ["[Experiment] a"]


def test_setonce_of_a_present_name_writes_nothing_and_admits_nothing(make_pipeline: type[Pipeline]) -> None:
    pipeline = make_pipeline(experiment_property_limit=0)
    pipeline.restore(KEY, {"[Experiment] x": "on"}, admit=False)
    (outcome,) = pipeline.send(click({"$setOnce": {"[Experiment] x": "other"}}))
    assert (outcome.limit_dropped, pipeline.last.admitted) == (0, [])


def test_limit_is_per_project_and_never_limits_other_names(make_pipeline: type[Pipeline]) -> None:
    pipeline = make_pipeline(experiment_property_limit=1)
    pipeline.send(set_experiment("a"), headers=(("project_id", b"p1"),))
    pipeline.send(set_experiment("b"), headers=(("project_id", b"p2"),))
    pipeline.send(click({"$set": {"plan": 1, "[Experiment]x": 1, "[experiment] y": 1}}),
                  headers=(("project_id", b"p1"),))
    assert [outcome.limit_dropped for outcome in pipeline.outcomes] == [0, 0, 0]
    assert pipeline.state("p1/u:user-1") == {"[Experiment] a": "on", "plan": 1, "[Experiment]x": 1,
                                             "[experiment] y": 1}


def test_skip_sync_event_is_still_limited(make_pipeline: type[Pipeline]) -> None:
    pipeline = make_pipeline(experiment_property_limit=0)
    (outcome,) = pipeline.send(click({"[Experiment] a": "on", "b": 1}, **{"$skip_user_properties_sync": True}))
    assert outcome.limit_dropped == 1
    assert outcome.event is not None and outcome.event["user_properties"] == {"b": 1}


# ---- §3 $skip_user_properties_sync ------------------------------------------------------------


@pytest.mark.parametrize("flag", [True, "true", 1, 1.0, {"x": 1}, [True], False, None])
def test_skip_sync_is_exactly_the_boolean_true(pipeline: Pipeline, flag: Any) -> None:
    pipeline.restore(KEY, {"plan": "free"})
    (outcome,) = pipeline.send(click({"$set": {"visits": 1}}, **{"$skip_user_properties_sync": flag}))
    assert outcome.event is not None and "$skip_user_properties_sync" not in outcome.event
    if flag is True:
        assert outcome.event["user_properties"] == {"visits": 1}
        assert (outcome.delta, pipeline.last.states, pipeline.state()) == (None, [], {"plan": "free"})
    else:
        assert outcome.event["user_properties"] == {"plan": "free", "visits": 1}
        assert pipeline.state() == {"plan": "free", "visits": 1} and outcome.delta is not None


SKIP = {"$skip_user_properties_sync": True}


def test_skip_sync_exposure_is_renamed_and_emitted_without_touching_state(pipeline: Pipeline) -> None:
    pipeline.restore(KEY, {"plan": "free", "[Experiment] f": "old"})
    pipeline.send({"event_type": "$exposure", "user_id": "user-1",
                   "event_properties": {"flag_key": "f", "variant": "on"}, **SKIP})
    (unset,) = pipeline.send({"event_type": "$exposure", "user_id": "user-1",
                              "event_properties": {"flag_key": "f"}, **SKIP})
    (event,) = pipeline.events
    assert event["event_type"] == "[Experiment] Exposure"
    assert event["user_properties"] == {"[Experiment] f": "on"}
    assert unset.event is None and unset.unset_exposure is True
    assert pipeline.deltas == [] and pipeline.state() == {"plan": "free", "[Experiment] f": "old"}


def test_skip_sync_assignment_carries_only_its_experiment_properties(pipeline: Pipeline) -> None:
    pipeline.restore(KEY, {"plan": "free"})
    pipeline.send({"event_type": "[Experiment] Assignment", "user_id": "user-1",
                   "event_properties": {"f.variant": "on"},
                   "user_properties": {"$set": {"[Experiment] f": "on", "x": 1}}, **SKIP})
    assert pipeline.events[0]["user_properties"] == {"[Experiment] f": "on"}
    assert pipeline.events[0]["event_properties"] == {"[Experiment] f.variant": "on"}
    assert pipeline.state() == {"plan": "free"} and pipeline.deltas == []


def test_skip_sync_identify_has_no_effect(pipeline: Pipeline) -> None:
    (outcome,) = pipeline.send({"event_type": "$identify", "user_id": "user-1",
                                "user_properties": {"$set": {"plan": "pro"}}, **SKIP})
    assert (outcome.event, outcome.delta, pipeline.last.states, pipeline.state()) == (None, None, [], None)


# ---- §5.3 $identify, $groupidentify, other events; ingestion order ---------------------------


def test_identify_applies_emits_a_delta_and_no_event(pipeline: Pipeline) -> None:
    (outcome,) = pipeline.send({"event_type": "$identify", "user_id": "user-1", "insert_id": "i-9",
                                "user_properties": {"$set": {"plan": "pro"}, "$add": {"n": 2}}})
    assert outcome.event is None and outcome.unset_exposure is False
    assert outcome.delta is not None and outcome.delta["event_type"] == "$identify"
    pipeline.send(click())
    assert pipeline.events[0]["user_properties"] == {"plan": "pro", "n": 2}


def test_identify_without_changes_emits_nothing(pipeline: Pipeline) -> None:
    (outcome,) = pipeline.send({"event_type": "$identify", "user_id": "user-1",
                                "user_properties": {"$unset": {"a": 1}}})
    assert (outcome.event, outcome.delta, pipeline.last.states) == (None, None, [])


def test_groupidentify_passes_through_and_ignores_user_state(pipeline: Pipeline) -> None:
    pipeline.restore(KEY, {"plan": "free"})
    groups = {"company": ["acme", "globex"]}
    group_properties = {"$set": {"size": 10}, "industry": None}
    (outcome,) = pipeline.send({"event_type": "$groupidentify", "user_id": "user-1", "groups": groups,
                                "group_properties": group_properties,
                                "user_properties": {"$clearAll": "-", "$set": {"x": 1}}})
    assert outcome.event is not None
    assert outcome.event["groups"] == groups and outcome.event["group_properties"] == group_properties
    assert outcome.event["user_properties"] == {} and outcome.event["event_type"] == "$groupidentify"
    assert (outcome.delta, pipeline.last.states, pipeline.state()) == (None, [], {"plan": "free"})


def test_other_events_carry_the_full_state_after_their_ops(pipeline: Pipeline) -> None:
    pipeline.restore(KEY, {"[Experiment] f": "on", "plan": "free"})
    pipeline.send(click({"$set": {"plan": "pro"}, "visits": 1}))
    assert pipeline.events[0]["user_properties"] == {"[Experiment] f": "on", "plan": "pro", "visits": 1}


def test_updates_apply_in_ingestion_order_not_event_time(pipeline: Pipeline) -> None:
    pipeline.send(click({"plan": "new"}, time=T0), timestamp_ms=T0)
    pipeline.send(click({"plan": "late"}, time=T0 - 10 * WEEK_MS), timestamp_ms=T0 + 1)
    assert pipeline.state() == {"plan": "late"}


def test_a_late_event_sees_the_current_state(pipeline: Pipeline) -> None:
    pipeline.send(click({"$append": {"l": "a"}}, time=T0))
    pipeline.send(click({"$append": {"l": "b"}}, time=0))
    assert pipeline.events[-1]["user_properties"] == {"l": ["a", "b"]}


# ---- §8 record shapes ------------------------------------------------------------------------


def test_delta_record_shape(pipeline: Pipeline) -> None:
    pipeline.restore("default/d:device-1", {"gone": 1, "same": 2, "kept": [1]})
    pipeline.send({"event_type": "click", "device_id": "device-1", "user_id": "nil",
                   "user_properties": {"$unset": {"gone": 1}, "$set": {"same": 2, "b": True, "a": 1.5}}},
                  timestamp_ms=T0 + 3)
    assert pipeline.deltas == [{
        "project_id": "default", "user_key": "default/d:device-1", "user_id": None, "device_id": "device-1",
        "event_type": "click", "insert_id": None, "ingested_at": T0 + 3,
        "changes": [{"property": "a", "old": None, "new": 1.5}, {"property": "b", "old": None, "new": True},
                    {"property": "gone", "old": 1, "new": None}],
    }]


def test_state_record_shape_and_when_it_is_written(pipeline: Pipeline) -> None:
    pipeline.send(click({"a": 1}, insert_id="i-1"), timestamp_ms=T0 + 1)
    pipeline.send(click({"a": 1}), timestamp_ms=T0 + 2)  # no change: no record
    pipeline.send(click({"$unset": {"a": 1}}), timestamp_ms=T0 + 3)
    assert pipeline.states == [
        {"project_id": "default", "user_key": KEY, "user_properties": {"a": 1}, "updated_at": T0 + 1},
        {"project_id": "default", "user_key": KEY, "user_properties": {}, "updated_at": T0 + 3},
    ]
    assert pipeline.state() == {}  # a user whose properties were all removed keeps a record


def test_a_user_whose_events_changed_nothing_has_no_state(pipeline: Pipeline) -> None:
    pipeline.send(click())
    pipeline.send(click({"$unset": {"a": 1}, "$remove": {"l": 1}}))
    assert pipeline.states == [] and pipeline.state() is None


def test_iter_states_lists_the_committed_users_only() -> None:
    """The one read of a store outside the pipeline (experiment health counts a restored
    partition's users with it): committed states, never the open batch's."""
    stores = PartitionStores()
    stores.state.load("default/u:a", {"plan": "pro"})
    stores.put_state("default/u:b", {"plan": "free"}, T0)
    assert list(stores.iter_states()) == [("default/u:a", {"plan": "pro"})]
    stores.commit()
    assert dict(stores.iter_states()) == {"default/u:a": {"plan": "pro"}, "default/u:b": {"plan": "free"}}
    stores.state.load("default/u:a", None)  # a tombstone
    assert list(stores.iter_states()) == [("default/u:b", {"plan": "free"})]


def test_enriched_event_shape(pipeline: Pipeline) -> None:
    sent = {"api_key": "secret", "events": [{
        "event_type": "click", "user_id": "user-1", "device_id": "0", "time": 1234.9, "insert_id": "i-1",
        "platform": "iOS", "session_id": 99, "groups": {"g": "x"}, "api_key": "also-secret",
        "event_properties": {"page": "home"}, "user_properties": {"$set": {"plan": "pro"}, "n": 1},
        "$skip_user_properties_sync": False, "billable": "client says", "ingested_at": 5, "project_id": "fake",
    }]}
    pipeline.send(sent, timestamp_ms=T0 + 7)
    assert pipeline.events == [{
        "project_id": "default", "event_type": "click", "user_id": "user-1", "time": 1234, "insert_id": "i-1",
        "event_properties": {"page": "home"}, "user_properties": {"plan": "pro", "n": 1}, "billable": True,
        "ingested_at": T0 + 7, "platform": "iOS", "session_id": 99, "groups": {"g": "x"},
    }]


def test_no_output_contains_api_key_or_skip_sync(pipeline: Pipeline) -> None:
    envelope = {"api_key": "secret-key", "events": [
        click({"$set": {"plan": "pro"}}, api_key="event-key", **SKIP),
        click({"$set": {"plan": "pro"}}, api_key="event-key", **{"$skip_user_properties_sync": "yes"}),
        {"event_type": "$exposure", "user_id": "user-1", "event_properties": {"flag_key": "f", "variant": "v"},
         "api_key": "event-key", **SKIP},
        {"event_type": "[Experiment] Assignment", "user_id": "user-1", "api_key": "event-key"},
        {"event_type": "$groupidentify", "user_id": "user-1", "api_key": "event-key"},
    ]}
    pipeline.send(envelope)
    pipeline.send({"event_type": "$identify", "user_id": "user-1", "api_key": "k", **SKIP,
                   "user_properties": {"a": 1}})
    assert len(pipeline.events) == 5 and pipeline.deltas and pipeline.states
    for record in [*pipeline.events, *pipeline.deltas, *pipeline.states]:
        text = orjson.dumps(record)
        assert b"api_key" not in text and b"secret" not in text and b"event-key" not in text
        assert b"$skip_user_properties_sync" not in text


def test_user_event_survives_the_by_user_topic(pipeline: Pipeline) -> None:
    sent = click({"$set": {"a": [1, 1.0, True]}}, insert_id="i", time=1.5, **SKIP)
    (user_event,) = split_message(RawMessage("events.raw", 2, 3, T0, orjson.dumps({"events": [sent]})),
                                  CoreConfig()).events
    assert UserEvent.from_bytes(user_event.to_bytes()) == user_event
