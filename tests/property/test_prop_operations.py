"""Properties of the user-property operation algebra (SPEC §3): a delta's changes take the old state
to the new one, properties are never null, `$set` then `$unset` leaves nothing, and the insert
operations never duplicate what they insert."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.property.strategies import list_operands, property_names, property_values, states, user_properties
from worker.core.operations import POST_INSERT, PRE_INSERT, SET, UNSET, Operation, apply_operations, parse_operations
from worker.core.records import changes_between
from worker.core.values import same_value

EXAMPLES = settings(max_examples=200, deadline=None)


def admit_all(name: str) -> bool:
    return True


def apply(state: dict[str, Any], operations: list[Operation]) -> dict[str, Any]:
    properties = dict(state)
    apply_operations(properties, operations, admit_all)
    return properties


def count(items: list[Any], value: Any) -> int:
    return sum(1 for item in items if same_value(item, value))


@EXAMPLES
@given(states, user_properties)
def test_applying_the_changes_to_the_old_state_gives_the_new_state(old: dict[str, Any],
                                                                   operations: dict[str, Any]) -> None:
    snapshot = repr(old)
    new = apply(old, parse_operations(operations))
    assert repr(old) == snapshot  # the old state (and the lists in it) is never changed in place
    rebuilt = dict(old)
    for change in changes_between(old, new):
        if change["new"] is None:
            del rebuilt[change["property"]]
        else:
            rebuilt[change["property"]] = change["new"]
    assert same_value(rebuilt, new)
    assert all(value is not None for value in new.values())
    names = [change["property"] for change in changes_between(old, new)]
    assert names == sorted(set(names))


@EXAMPLES
@given(states, property_names, property_values, st.one_of(st.none(), property_values))
def test_set_then_unset_leaves_the_property_absent(state: dict[str, Any], name: str, value: Any,
                                                   unset_operand: Any) -> None:
    after_set = apply(state, parse_operations({"$set": {name: value}}))
    assert same_value(after_set[name], value)
    after_unset = apply(after_set, parse_operations({"$unset": {name: unset_operand}}))
    assert name not in after_unset
    assert same_value(after_unset, {key: item for key, item in after_set.items() if key != name})
    assert name not in apply(state, [(SET, name, value), (UNSET, name, None)])


@EXAMPLES
@given(st.one_of(st.none(), property_values), list_operands, st.sampled_from([PRE_INSERT, POST_INSERT]))
def test_insert_never_duplicates_what_it_inserts(current: Any, operand: Any, kind: str) -> None:
    state = {} if current is None else {"p": current}
    result = apply(state, [(kind, "p", operand)])["p"] if operand is not None else None
    if result is None:
        return  # a null scalar operand writes nothing
    before = [] if current is None else current if type(current) is list else [current]
    items = operand if type(operand) is list else [operand]
    assert type(result) is list
    for item in items:
        assert count(result, item) == max(count(before, item), 1)
    # The existing list stays whole, in order, with the new items as one block before or after it.
    added = len(result) - len(before)
    kept = result[added:] if kind == PRE_INSERT else result[: len(before)]
    assert same_value(kept, before)
