"""SPEC §4 (assignment insert_id), §5 (exposures, impressions, assignments) and §7 (billing),
through the pure pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.clock import T0
from worker.core.dedupe import DAY_MS, assignment_insert_id, java_string_hash

if TYPE_CHECKING:
    from tests.conftest import Pipeline

KEY = "default/u:user-1"
ASSIGNMENT = "[Experiment] Assignment"


def exposure(variant: Any = "control", event_type: str = "$exposure", flag_key: str = "flag-a",
             **fields: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"flag_key": flag_key}
    if variant is not ...:
        properties["variant"] = variant
    return {"event_type": event_type, "user_id": "user-1", "event_properties": properties, **fields}


def assignment(event_properties: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"event_type": ASSIGNMENT, "user_id": "user-1", "device_id": "device-1",
            "event_properties": event_properties, **fields}


# ---- §5.1 exposures and impressions ----------------------------------------------------------


@pytest.mark.parametrize(("sent", "emitted"), [("$exposure", "[Experiment] Exposure"),
                                                ("$impression", "[Experiment] Impression")])
def test_exposure_is_renamed_and_sets_the_experiment_property(pipeline: Pipeline, sent: str, emitted: str) -> None:
    pipeline.restore(KEY, {"plan": "pro"})
    event_properties = {"flag_key": "flag-a", "variant": "treatment", "experiment_key": "exp-1", "page": "home"}
    pipeline.send({"event_type": sent, "user_id": "user-1", "event_properties": event_properties})
    (event,) = pipeline.events
    assert event["event_type"] == emitted
    assert event["event_properties"] == {
        "[Experiment] Flag Key": "flag-a", "[Experiment] Variant": "treatment",
        "[Experiment] Experiment Key": "exp-1", "page": "home",
    }
    assert event["user_properties"] == {"plan": "pro", "[Experiment] flag-a": "treatment"}  # full state after
    assert event["billable"] is False
    (delta,) = pipeline.deltas
    assert delta["event_type"] == emitted
    assert delta["changes"] == [{"property": "[Experiment] flag-a", "old": None, "new": "treatment"}]
    assert pipeline.state() == {"plan": "pro", "[Experiment] flag-a": "treatment"}


@pytest.mark.parametrize("properties", [{"experiment_key": None}, {}])
def test_absent_or_null_experiment_key_is_omitted(pipeline: Pipeline, properties: dict[str, Any]) -> None:
    pipeline.send(exposure(event_properties={"flag_key": "f", "variant": "on", **properties}))
    assert pipeline.events[0]["event_properties"] == {"[Experiment] Flag Key": "f", "[Experiment] Variant": "on"}


def test_blank_but_non_empty_variant_sets(pipeline: Pipeline) -> None:
    pipeline.send(exposure("  "))
    assert pipeline.state() == {"[Experiment] flag-a": "  "}
    assert len(pipeline.events) == 1


@pytest.mark.parametrize("variant", ["", None, ...], ids=["empty", "null", "missing"])
def test_empty_null_or_missing_variant_unsets_and_is_not_persisted(pipeline: Pipeline, variant: Any) -> None:
    pipeline.restore(KEY, {"[Experiment] flag-a": "control", "plan": "pro"})
    (outcome,) = pipeline.send(exposure(variant))
    assert pipeline.events == [] and outcome.unset_exposure is True
    (delta,) = pipeline.deltas
    assert delta["event_type"] == "[Experiment] Exposure"
    assert delta["changes"] == [{"property": "[Experiment] flag-a", "old": "control", "new": None}]
    assert pipeline.state() == {"plan": "pro"}


def test_unset_exposure_without_the_property_changes_nothing(pipeline: Pipeline) -> None:
    (outcome,) = pipeline.send(exposure(None))
    assert (pipeline.events, pipeline.deltas, pipeline.states, pipeline.dlq) == ([], [], [], [])
    assert outcome.unset_exposure is True and pipeline.state() is None


@pytest.mark.parametrize(
    "own",
    [
        {"$set": {"[Experiment] flag-a": "mine"}},
        {"$unset": {"[Experiment] flag-a": "-"}},
        {"$setOnce": {"[Experiment] flag-a": "mine"}},
        {"$append": {"[Experiment] flag-a": "mine"}},
        {"[Experiment] flag-a": "mine"},
        {"[Experiment] flag-a": None},
        {"$clearAll": "-"},
    ],
    ids=["$set", "$unset", "$setOnce", "$append", "plain", "plain null", "$clearAll"],
)
def test_variant_wins_over_the_events_own_ops_on_that_key(pipeline: Pipeline, own: dict[str, Any]) -> None:
    pipeline.restore(KEY, {"[Experiment] flag-a": "old", "plan": "pro"})
    pipeline.send(exposure("control", user_properties=own))
    state = pipeline.state()
    assert state is not None and state["[Experiment] flag-a"] == "control"
    assert ("plan" in state) is ("$clearAll" not in own)


@pytest.mark.parametrize(
    "own", [{"$set": {"[Experiment] flag-a": "mine"}}, {"[Experiment] flag-a": "mine"}, {"$clearAll": 1}]
)
def test_unset_wins_over_the_events_own_ops_on_that_key(pipeline: Pipeline, own: dict[str, Any]) -> None:
    pipeline.restore(KEY, {"[Experiment] flag-a": "old"})
    pipeline.send(exposure("", user_properties=own))
    assert pipeline.state() == {}
    assert pipeline.events == []


def test_exposure_applies_its_own_ops_on_other_keys(pipeline: Pipeline) -> None:
    pipeline.send(exposure("on", user_properties={"$set": {"plan": "pro"}, "$add": {"visits": 1}}))
    assert pipeline.state() == {"plan": "pro", "visits": 1, "[Experiment] flag-a": "on"}
    pipeline.send(exposure(None, user_properties={"$add": {"visits": 1}}))
    assert pipeline.state() == {"plan": "pro", "visits": 2}


def test_server_side_exposure_is_an_ordinary_event(pipeline: Pipeline) -> None:
    sent = {"event_type": "[Experiment] Exposure", "user_id": "user-1",
            "event_properties": {"[Experiment] Flag Key": "f", "flag_key": "raw"},
            "user_properties": {"$set": {"[Experiment] f": "on"}}}
    pipeline.send(sent)
    (event,) = pipeline.events
    assert event["event_type"] == "[Experiment] Exposure"
    assert event["event_properties"] == {"[Experiment] Flag Key": "f", "flag_key": "raw"}
    assert event["user_properties"] == {"[Experiment] f": "on"}
    assert event["billable"] is False


def test_experiment_property_name_is_derived_from_the_truncated_flag_key_and_not_cut_again(
    pipeline: Pipeline,
) -> None:
    flag = "f" * 1500
    pipeline.send(exposure("on", flag_key=flag))
    assert pipeline.state() == {"[Experiment] " + "f" * 1024: "on"}
    assert pipeline.events[0]["event_properties"]["[Experiment] Flag Key"] == "f" * 1024


# ---- §5.2 assignments ------------------------------------------------------------------------


def test_assignment_properties_get_the_prefix(pipeline: Pipeline) -> None:
    pipeline.send(assignment({
        "flag-a.variant": "on", "flag-a.details": "v5 rule:default",
        "[Experiment] flag-b.variant": "off", "[Experiment] Environment Name": "production", "other": 1,
    }))
    assert pipeline.events[0]["event_properties"] == {
        "[Experiment] flag-a.variant": "on", "[Experiment] flag-a.details": "v5 rule:default",
        "[Experiment] flag-b.variant": "off", "[Experiment] Environment Name": "production", "other": 1,
    }


def test_prefixed_form_wins_when_both_name_one_flag(pipeline: Pipeline) -> None:
    both = {"flag-a.variant": "from-sdk", "[Experiment] flag-a.variant": "prefixed",
            "flag-a.details": "a", "[Experiment] flag-a.details": "b"}
    pipeline.send(assignment(both, time=T0))
    (event,) = pipeline.events
    assert event["event_properties"] == {"[Experiment] flag-a.variant": "prefixed", "[Experiment] flag-a.details": "b"}
    prefixed_only = assignment_insert_id("user-1", "device-1", {"[Experiment] flag-a.variant": "prefixed"}, T0)
    unprefixed_only = assignment_insert_id("user-1", "device-1", {"flag-a.variant": "from-sdk"}, T0)
    assert event["insert_id"] == prefixed_only != unprefixed_only


def test_assignment_applies_only_experiment_set_and_unset(pipeline: Pipeline) -> None:
    pipeline.restore(KEY, {"plan": "free", "[Experiment] g": "old", "[Experiment] keep": "k"})
    pipeline.send(assignment({"f.variant": "on"}, user_properties={
        "$set": {"[Experiment] f": "on", "plan": "pro"},
        "$unset": {"[Experiment] g": "-", "plan": "-"},
        "$setOnce": {"[Experiment] h": "x"},
        "$add": {"[Experiment] n": 1},
        "$append": {"[Experiment] l": 1},
        "[Experiment] plain": "y",
        "country": "NZ",
        "$clearAll": "-",
    }))
    assert pipeline.state() == {"plan": "free", "[Experiment] keep": "k", "[Experiment] f": "on"}
    (event,) = pipeline.events
    # The user's non-experiment state + the experiment properties this event set.
    assert event["user_properties"] == {"plan": "free", "[Experiment] f": "on"}
    assert event["billable"] is False
    assert pipeline.deltas[0]["changes"] == [
        {"property": "[Experiment] f", "old": None, "new": "on"},
        {"property": "[Experiment] g", "old": "old", "new": None},
    ]


def test_assignment_inherits_non_experiment_properties(pipeline: Pipeline) -> None:
    pipeline.send({"event_type": "$identify", "user_id": "user-1", "user_properties": {"$set": {"plan": "pro"}}})
    pipeline.send(assignment({}, user_properties={"$set": {"[Experiment] f": "on", "[Experiment] gone": None}}))
    assert pipeline.events[-1]["user_properties"] == {"plan": "pro", "[Experiment] f": "on"}


def test_first_event_an_assignment_carries_experiment_properties_only(pipeline: Pipeline) -> None:
    pipeline.send(assignment({"f.variant": "on"}, user_properties={"$set": {"[Experiment] f": "on", "plan": "x"}}))
    assert pipeline.events[0]["user_properties"] == {"[Experiment] f": "on"}


def test_assignment_shows_what_it_sets_even_when_unchanged(pipeline: Pipeline) -> None:
    pipeline.restore(KEY, {"[Experiment] f": "on", "[Experiment] other": "x"})
    pipeline.send(assignment({}, user_properties={"$set": {"[Experiment] f": "on"}}))
    assert pipeline.events[0]["user_properties"] == {"[Experiment] f": "on"}
    assert pipeline.deltas == []


def test_assignment_does_not_show_what_the_limit_refused(make_pipeline: type[Pipeline]) -> None:
    pipeline = make_pipeline(experiment_property_limit=1)
    pipeline.send(assignment({}, user_properties={"$set": {"[Experiment] a": "on", "[Experiment] b": "on"}}))
    assert pipeline.events[0]["user_properties"] == {"[Experiment] a": "on"}
    assert pipeline.state() == {"[Experiment] a": "on"}
    assert pipeline.outcomes[0].limit_dropped == 1


# ---- §4 assignment insert_id -----------------------------------------------------------------

SPEC_CANONICAL = (
    "user device basic control default off different_value on empty_metadata on holdout holdout mutex slot-1 "
    "partial_metadata on "
)


def test_java_string_hash_matches_the_spec_check_value() -> None:
    assert java_string_hash(SPEC_CANONICAL) == 3841036661


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello", 99162322),
        ("polygenelubricants", 2**31),  # Integer.MIN_VALUE in Java, unsigned here
        ("\U0001F600", (31 * 0xD83D + 0xDE00)),  # a non-BMP character is two UTF-16 code units
        ("a\U0001F600", (31 * (31 * 97 + 0xD83D) + 0xDE00)),
        ("é", 0xE9),
        ("\ud800", 0xD800),  # a lone surrogate (from a JSON escape) is one code unit, as in Java
        ("a\udc00b", (31 * (31 * 97 + 0xDC00) + 98)),
    ],
)
def test_java_string_hash_over_utf16_code_units(text: str, expected: int) -> None:
    assert java_string_hash(text) == expected


def java_hash_by_characters(text: str) -> int:
    """The definition, character by character: a character past U+FFFF is two UTF-16 units."""
    h = 0
    for char in text:
        code = ord(char)
        units = [code] if code < 0x10000 else [0xD800 | (code - 0x10000) >> 10, 0xDC00 | (code - 0x10000) & 0x3FF]
        for unit in units:
            h = (31 * h + unit) % 2**32
    return h


@given(st.text(st.characters(codec=None, exclude_categories=()), max_size=80))
def test_java_string_hash_is_the_definition_for_any_text(text: str) -> None:
    assert java_string_hash(text) == java_hash_by_characters(text)


def test_derived_insert_id_of_the_spec_example() -> None:
    flags = {"basic": "control", "default": "off", "different_value": "on", "empty_metadata": "on",
             "holdout": "holdout", "mutex": "slot-1", "partial_metadata": "on"}
    # Given in reverse order, with and without the prefix: the canonical string sorts the flags.
    event_properties: dict[str, Any] = {}
    for number, (flag, variant) in enumerate(reversed(flags.items())):
        name = f"{flag}.variant" if number % 2 else f"[Experiment] {flag}.variant"
        event_properties[name] = variant
        event_properties[f"{flag}.details"] = {"ignored": True}
    time_ms = 20_000 * DAY_MS + DAY_MS - 1
    assert assignment_insert_id("user", "device", event_properties, time_ms) == "user device 3841036661 20000"


def test_derived_insert_id_prints_missing_ids_as_none(pipeline: Pipeline) -> None:
    pipeline.send(assignment({"f.variant": "on"}, user_id="null", time=DAY_MS * 3 + 5))
    expected_hash = java_string_hash("None device-1 f on ")
    assert pipeline.events[0]["insert_id"] == f"None device-1 {expected_hash} 3"
    assert "user_id" not in pipeline.events[0]


def test_derived_insert_id_trims_only_the_canonical_string() -> None:
    insert_id = assignment_insert_id(" user-1 ", "device-1", {" f .variant": " on "}, 0)
    assert insert_id == f" user-1  device-1 {java_string_hash('user-1 device-1 f on ')} 0"


def test_derived_insert_id_sorts_flags_by_code_point_and_takes_only_string_variants() -> None:
    properties = {"b.variant": "1", "a.variant": "2", "B.variant": "3", "é.variant": "4", "c.variant": 5,
                  "d.variant": None, "e.details": "x", "f.variant": {"key": "on"}}
    expected = java_string_hash("None None B 3 a 2 b 1 é 4 ")
    assert assignment_insert_id(None, None, properties, 0) == f"None None {expected} 0"


def test_derived_insert_id_day_uses_the_floored_time_or_the_ingestion_time(pipeline: Pipeline) -> None:
    pipeline.send(assignment({"f.variant": "on"}, time=2 * DAY_MS - 0.5))
    pipeline.send(assignment({"f.variant": "on"}), timestamp_ms=T0)
    assert pipeline.events[0]["insert_id"].endswith(" 1")
    assert pipeline.events[1]["insert_id"].endswith(f" {T0 // DAY_MS}")


def test_given_insert_id_is_kept(pipeline: Pipeline) -> None:
    pipeline.send(assignment({"f.variant": "on"}, insert_id="mine"))
    pipeline.send({"event_type": "click", "user_id": "user-1"})
    assert pipeline.events[0]["insert_id"] == "mine"
    assert "insert_id" not in pipeline.events[1]  # only assignments get a derived one


def test_one_assignment_per_user_per_result_per_day(pipeline: Pipeline) -> None:
    day = 19_000 * DAY_MS
    pipeline.send(assignment({"f.variant": "on"}, time=day + 1), timestamp_ms=T0)
    pipeline.send(assignment({"f.variant": "on"}, time=day + DAY_MS - 1), timestamp_ms=T0 + 1)  # same day
    pipeline.send(assignment({"f.variant": "off"}, time=day + 2), timestamp_ms=T0 + 2)  # another result
    pipeline.send(assignment({"f.variant": "on"}, time=day + DAY_MS), timestamp_ms=T0 + 3)  # next day
    pipeline.send(assignment({"f.variant": "on"}, time=day + 3, device_id="device-2"), timestamp_ms=T0 + 4)
    assert [outcome.duplicate for outcome in pipeline.outcomes] == [False, True, False, False, False]
    assert len(pipeline.events) == 4


# ---- §7 billing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "billable"),
    [
        (exposure("on"), False),
        (exposure("on", event_type="$impression"), False),
        (assignment({"f.variant": "on"}), False),
        ({"event_type": "[Experiment] Exposure", "user_id": "user-1"}, False),
        ({"event_type": "[Experiment] Impression", "user_id": "user-1"}, False),
        ({"event_type": "click", "user_id": "user-1"}, True),
        ({"event_type": "$groupidentify", "user_id": "user-1"}, True),
        ({"event_type": "[Experiment] assignment", "user_id": "user-1"}, True),  # names are exact
        ({"event_type": "$exposure ", "user_id": "user-1"}, True),
    ],
)
def test_billable(pipeline: Pipeline, sent: dict[str, Any], billable: bool) -> None:
    pipeline.send(sent)
    assert pipeline.events[0]["billable"] is billable
