"""SPEC §3: each user-property operation, their canonical order and JSON equality, on plain maps
(`parse_operations` + `apply_operations`), and change detection through the pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from worker.core.operations import (
    ADD,
    APPEND,
    CANONICAL_ORDER,
    CLEAR_ALL,
    PLAIN,
    POST_INSERT,
    PRE_INSERT,
    PREPEND,
    REMOVE,
    SET,
    SET_ONCE,
    UNSET,
    OperationStats,
    apply_operations,
    parse_operations,
)
from worker.core.records import changes_between
from worker.core.values import same_value

if TYPE_CHECKING:
    from tests.conftest import Pipeline


def apply(state: dict[str, Any], user_properties: dict[str, Any]) -> tuple[dict[str, Any], OperationStats]:
    properties = dict(state)
    stats = apply_operations(properties, parse_operations(user_properties), lambda name: True)
    return properties, stats


def after(state: dict[str, Any], user_properties: dict[str, Any]) -> dict[str, Any]:
    return apply(state, user_properties)[0]


def assert_same(actual: Any, expected: Any) -> None:
    """JSON equality: `True == 1` and `1 == 1.0` in Python, but not here."""
    assert same_value(actual, expected), f"{actual!r} != {expected!r}"


@pytest.mark.parametrize("operand", [1, None, "-", {}, [], False, {"a": 1}])
def test_clear_all_takes_any_value(operand: Any) -> None:
    assert after({"a": 1, "b": [2]}, {"$clearAll": operand}) == {}


OPERATIONS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # $unset: remove p, operand ignored
    ("unset", {"a": 1, "b": 2}, {"$unset": {"a": "-"}}, {"b": 2}),
    ("unset any operand", {"a": 1}, {"$unset": {"a": None}}, {}),
    ("unset absent", {"b": 2}, {"$unset": {"a": 1}}, {"b": 2}),
    # $set
    ("set", {}, {"$set": {"a": 1}}, {"a": 1}),
    ("set replaces", {"a": [1]}, {"$set": {"a": {"x": True}}}, {"a": {"x": True}}),
    ("set null is unset", {"a": 1, "b": 2}, {"$set": {"a": None}}, {"b": 2}),
    ("set null of absent", {}, {"$set": {"a": None}}, {}),
    ("set false and zero are values", {}, {"$set": {"f": False, "z": 0, "e": "", "l": [], "o": {}}},
     {"f": False, "z": 0, "e": "", "l": [], "o": {}}),
    # $setOnce
    ("setOnce absent", {}, {"$setOnce": {"a": 1}}, {"a": 1}),
    ("setOnce present", {"a": 0}, {"$setOnce": {"a": 1}}, {"a": 0}),
    ("setOnce present false", {"a": False}, {"$setOnce": {"a": True}}, {"a": False}),
    ("setOnce null writes nothing", {}, {"$setOnce": {"a": None}}, {}),
    # $add
    ("add to absent", {}, {"$add": {"n": 3}}, {"n": 3}),
    ("add int", {"n": 2}, {"$add": {"n": 3}}, {"n": 5}),
    ("add negative", {"n": 2}, {"$add": {"n": -5}}, {"n": -3}),
    ("add float", {"n": 2}, {"$add": {"n": 0.5}}, {"n": 2.5}),
    ("add to float", {"n": 1.5}, {"$add": {"n": 1}}, {"n": 2.5}),
    ("int plus float 1.0 is a float", {"n": 2}, {"$add": {"n": 1.0}}, {"n": 3.0}),
    ("numeric string with spaces", {"n": 2}, {"$add": {"n": " 3 "}}, {"n": 5}),
    ("signed numeric strings", {"n": 2}, {"$add": {"n": "-4"}}, {"n": -2}),
    ("plus-signed numeric string", {"n": 2}, {"$add": {"n": "+4"}}, {"n": 6}),
    ("decimal string", {"n": 2}, {"$add": {"n": "2.5"}}, {"n": 4.5}),
    ("leading-dot decimal string", {"n": 2}, {"$add": {"n": ".5"}}, {"n": 2.5}),
    ("exponent string", {"n": 2}, {"$add": {"n": "1e3"}}, {"n": 1002.0}),
    ("integral decimal string stays a float", {}, {"$add": {"n": "3.0"}}, {"n": 3.0}),
    # $append / $prepend
    ("append scalar to absent", {}, {"$append": {"l": 1}}, {"l": [1]}),
    ("append list to absent", {}, {"$append": {"l": [1, 2]}}, {"l": [1, 2]}),
    ("append list", {"l": [0]}, {"$append": {"l": [1, 2]}}, {"l": [0, 1, 2]}),
    ("append keeps duplicates", {"l": [1]}, {"$append": {"l": [1, 1]}}, {"l": [1, 1, 1]}),
    ("append to scalar", {"l": 0}, {"$append": {"l": 1}}, {"l": [0, 1]}),
    ("append to object", {"l": {"a": 1}}, {"$append": {"l": [2]}}, {"l": [{"a": 1}, 2]}),
    ("append a nested list adds it as one item", {"l": []}, {"$append": {"l": [[1, 2]]}}, {"l": [[1, 2]]}),
    ("append an empty list", {"l": 5}, {"$append": {"l": []}}, {"l": [5]}),
    ("prepend scalar to absent", {}, {"$prepend": {"l": "a"}}, {"l": ["a"]}),
    ("prepend list as a block in its order", {"l": [0]}, {"$prepend": {"l": [1, 2]}}, {"l": [1, 2, 0]}),
    ("prepend to scalar", {"l": "x"}, {"$prepend": {"l": "y"}}, {"l": ["y", "x"]}),
    ("prepend to object", {"l": {"k": 1}}, {"$prepend": {"l": 0}}, {"l": [0, {"k": 1}]}),
    # $preInsert / $postInsert
    ("postInsert only missing items", {"l": [1, 2]}, {"$postInsert": {"l": [2, 3]}}, {"l": [1, 2, 3]}),
    ("postInsert repeated operand item once", {"l": [1]}, {"$postInsert": {"l": [3, 3, 1, 4, 3]}},
     {"l": [1, 3, 4]}),
    ("postInsert scalar", {"l": [1]}, {"$postInsert": {"l": 1}}, {"l": [1]}),
    ("postInsert to absent", {}, {"$postInsert": {"l": [2, 2]}}, {"l": [2]}),
    ("postInsert to scalar", {"l": "a"}, {"$postInsert": {"l": ["a", "b"]}}, {"l": ["a", "b"]}),
    ("postInsert keeps existing duplicates", {"l": [1, 1]}, {"$postInsert": {"l": [1]}}, {"l": [1, 1]}),
    ("preInsert only missing items as a block", {"l": [1, 2]}, {"$preInsert": {"l": [3, 1, 4]}},
     {"l": [3, 4, 1, 2]}),
    ("preInsert repeated operand item once", {"l": [9]}, {"$preInsert": {"l": [5, 6, 5]}}, {"l": [5, 6, 9]}),
    ("preInsert to object", {"l": {"a": 1}}, {"$preInsert": {"l": {"a": 1}}}, {"l": [{"a": 1}]}),
    ("preInsert to scalar", {"l": 2}, {"$preInsert": {"l": 1}}, {"l": [1, 2]}),
    # $remove
    ("remove every occurrence", {"l": [1, 2, 1, 3]}, {"$remove": {"l": 1}}, {"l": [2, 3]}),
    ("remove each listed item", {"l": [1, 2, 1, 3]}, {"$remove": {"l": [1, 3]}}, {"l": [2]}),
    ("remove to empty list", {"l": [1]}, {"$remove": {"l": [1]}}, {"l": []}),
    ("remove from scalar unchanged", {"l": "x"}, {"$remove": {"l": "x"}}, {"l": "x"}),
    ("remove from object unchanged", {"l": {"a": 1}}, {"$remove": {"l": {"a": 1}}}, {"l": {"a": 1}}),
    ("remove from absent", {}, {"$remove": {"l": 1}}, {}),
    ("remove an object item", {"l": [{"a": 1}, {"a": 2}]}, {"$remove": {"l": {"a": 1}}}, {"l": [{"a": 2}]}),
    # unknown $-keys and plain keys
    ("unknown $-key is a plain property", {}, {"$foo": 1, "$Set": {"a": 1}}, {"$foo": 1, "$Set": {"a": 1}}),
    ("plain key null unsets", {"a": 1, "$foo": 2}, {"a": None, "$foo": None}, {}),
    ("plain keys are $set", {"a": 1}, {"a": 2, "b": [3]}, {"a": 2, "b": [3]}),
]


@pytest.mark.parametrize(
    ("state", "user_properties", "expected"),
    [case[1:] for case in OPERATIONS],
    ids=[case[0] for case in OPERATIONS],
)
def test_operation(state: dict[str, Any], user_properties: dict[str, Any], expected: dict[str, Any]) -> None:
    result, stats = apply(state, user_properties)
    assert_same(result, expected)
    assert (stats.limit_dropped, stats.add_ignored) == (0, 0)


def test_int_plus_int_stays_int() -> None:
    result = after({"n": 2}, {"$add": {"n": 3}})
    assert type(result["n"]) is int
    assert type(after({}, {"$add": {"n": " 7 "}})["n"]) is int
    assert type(after({"n": 10**15}, {"$add": {"n": "2"}})["n"]) is int


ADD_IGNORED: list[tuple[str, dict[str, Any], Any]] = [
    ("NaN", {"n": 2}, "NaN"),
    ("nan lowercase", {"n": 2}, "nan"),
    ("inf", {"n": 2}, "inf"),
    ("-Infinity", {"n": 2}, "-Infinity"),
    ("overflowing exponent", {"n": 2}, "1e400"),
    ("text", {"n": 2}, "abc"),
    ("empty string", {"n": 2}, ""),
    ("blank string", {"n": 2}, "  "),
    ("underscored digits", {"n": 2}, "1_000"),
    ("hex", {"n": 2}, "0x10"),
    ("two numbers", {"n": 2}, "1 2"),
    ("bool operand", {"n": 2}, True),
    ("null operand", {"n": 2}, None),
    ("list operand", {"n": 2}, [1]),
    ("object operand", {"n": 2}, {"v": 1}),
    ("p a numeric string", {"n": "5"}, 1),
    ("p a bool", {"n": True}, 1),
    ("p a list", {"n": [1]}, 1),
    ("p an object", {"n": {"v": 1}}, 1),
    ("sum beyond 64 bits", {"n": 2**63 - 1}, 1),
    ("string beyond 64 bits", {}, "99999999999999999999"),
]


@pytest.mark.parametrize(
    ("state", "operand"), [case[1:] for case in ADD_IGNORED], ids=[case[0] for case in ADD_IGNORED]
)
def test_add_ignores_and_counts_non_numbers(state: dict[str, Any], operand: Any) -> None:
    result, stats = apply(state, {"$add": {"n": operand}})
    assert_same(result, state)
    assert stats.add_ignored == 1


def test_add_counts_each_ignored_property() -> None:
    result, stats = apply({"a": "x"}, {"$add": {"a": 1, "b": "abc", "c": 2}})
    assert result == {"a": "x", "c": 2}
    assert stats.add_ignored == 2


# ---- JSON equality in list operations --------------------------------------------------------

JSON_EQUALITY: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("true is not 1 (postInsert)", {"l": [1]}, {"$postInsert": {"l": True}}, {"l": [1, True]}),
    ("1 is not true (preInsert)", {"l": [True]}, {"$preInsert": {"l": 1}}, {"l": [1, True]}),
    ("1.0 is not 1 (postInsert)", {"l": [1]}, {"$postInsert": {"l": [1.0]}}, {"l": [1, 1.0]}),
    ("0 is not false", {"l": [False]}, {"$postInsert": {"l": [0, 0.0]}}, {"l": [False, 0, 0.0]}),
    ("nested 1.0 is not 1", {"l": [{"a": 1}]}, {"$postInsert": {"l": {"a": 1.0}}}, {"l": [{"a": 1}, {"a": 1.0}]}),
    ("equal objects are one", {"l": [{"a": [1, True]}]}, {"$postInsert": {"l": {"a": [1, True]}}},
     {"l": [{"a": [1, True]}]}),
    ("remove 1 keeps true and 1.0", {"l": [1, True, 1.0, "1"]}, {"$remove": {"l": 1}}, {"l": [True, 1.0, "1"]}),
    ("remove true keeps 1", {"l": [1, True, 1.0]}, {"$remove": {"l": True}}, {"l": [1, 1.0]}),
    ("remove 1.0 keeps 1", {"l": [1, True, 1.0]}, {"$remove": {"l": [1.0]}}, {"l": [1, True]}),
    ("repeated operand 1 and true are distinct", {}, {"$preInsert": {"l": [1, True, 1, 1.0]}},
     {"l": [1, True, 1.0]}),
]


@pytest.mark.parametrize(
    ("state", "user_properties", "expected"),
    [case[1:] for case in JSON_EQUALITY],
    ids=[case[0] for case in JSON_EQUALITY],
)
def test_list_operations_compare_json_values(state: dict[str, Any], user_properties: dict[str, Any],
                                             expected: dict[str, Any]) -> None:
    assert_same(after(state, user_properties), expected)


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [(1, 1.0, True), (1, True, True), (0, False, True), ([1], [True], True), ({"a": 1}, {"a": 1.0}, True),
     (1, 1, False), ([1, {"a": "b"}], [1, {"a": "b"}], False), ("1", 1, True)],
)
def test_change_detection_compares_json_values(old: Any, new: Any, changed: bool, pipeline: Pipeline) -> None:
    changes = changes_between({"p": old}, {"p": new})
    assert bool(changes) is changed
    pipeline.restore("default/u:user-1", {"p": old})
    pipeline.send({"event_type": "e", "user_id": "user-1", "user_properties": {"$set": {"p": new}}})
    assert len(pipeline.deltas) == int(changed) == len(pipeline.states)
    if changed:
        (change,) = pipeline.deltas[0]["changes"]
        assert_same(change, {"property": "p", "old": old, "new": new})
    assert_same(pipeline.state(), {"p": new})


# ---- canonical order -------------------------------------------------------------------------


def test_parse_operations_is_in_canonical_order_whatever_the_key_order() -> None:
    user_properties = {
        "z": 1, "$remove": {"r": 1}, "$postInsert": {"q": 1}, "$preInsert": {"p": 1}, "$prepend": {"o": 1},
        "$append": {"n": 1}, "$add": {"m": 1}, "$setOnce": {"l": 1}, "$set": {"k": 1}, "$unset": {"j": 1},
        "$clearAll": "-", "a": 2,
    }
    kinds = [kind for kind, _, _ in parse_operations(user_properties)]
    assert kinds == [*CANONICAL_ORDER, PLAIN, PLAIN]
    assert CANONICAL_ORDER == (CLEAR_ALL, UNSET, SET, SET_ONCE, ADD, APPEND, PREPEND, PRE_INSERT, POST_INSERT,
                               REMOVE)


CANONICAL: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("clearAll before set", {"a": 1, "b": 2}, {"$set": {"a": 3}, "$clearAll": "-"}, {"a": 3}),
    ("unset before set", {"a": 1}, {"$set": {"a": 2}, "$unset": {"a": "-"}}, {"a": 2}),
    ("set before setOnce", {}, {"$setOnce": {"a": 1}, "$set": {"a": 2}}, {"a": 2}),
    ("setOnce before add", {}, {"$add": {"n": 1}, "$setOnce": {"n": 10}}, {"n": 11}),
    ("set before add", {"n": 100}, {"$add": {"n": 1}, "$set": {"n": 5}}, {"n": 6}),
    ("add before append", {}, {"$append": {"n": 2}, "$add": {"n": 1}}, {"n": [1, 2]}),
    ("append before prepend", {}, {"$prepend": {"l": 0}, "$append": {"l": 1}}, {"l": [0, 1]}),
    ("prepend before preInsert", {}, {"$preInsert": {"l": [1, 2]}, "$prepend": {"l": 1}}, {"l": [2, 1]}),
    ("preInsert before postInsert", {}, {"$postInsert": {"l": [1, 2]}, "$preInsert": {"l": 1}}, {"l": [1, 2]}),
    ("append before remove", {}, {"$remove": {"l": 1}, "$append": {"l": [1, 2]}}, {"l": [2]}),
    ("plain keys last", {}, {"a": "plain", "$set": {"a": "op"}, "$unset": {"b": 1}, "b": 2},
     {"a": "plain", "b": 2}),
    ("plain key after add", {"n": 1}, {"n": 10, "$add": {"n": 5}}, {"n": 10}),
    ("plain null after set", {}, {"a": None, "$set": {"a": 1}}, {}),
]


@pytest.mark.parametrize(
    ("state", "user_properties", "expected"),
    [case[1:] for case in CANONICAL],
    ids=[case[0] for case in CANONICAL],
)
def test_operations_apply_in_canonical_order(state: dict[str, Any], user_properties: dict[str, Any],
                                             expected: dict[str, Any]) -> None:
    assert_same(after(state, user_properties), expected)


def test_operations_never_leave_a_null_property() -> None:
    result = after({"a": 1}, {"$set": {"a": None, "b": None}, "$setOnce": {"c": None}, "d": None})
    assert result == {}


def test_apply_does_not_touch_the_caller_state_lists() -> None:
    state = {"l": [1, 2]}
    result = after(state, {"$append": {"l": 3}, "$remove": {"l": 1}})
    assert state == {"l": [1, 2]} and result == {"l": [2, 3]}
