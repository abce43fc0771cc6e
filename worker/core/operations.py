"""The user-property operation algebra of SPEC §3: parse `user_properties`, apply it to a state.

An event's `user_properties` mixes operations (`$set`: {...}) and plain keys (which mean `$set`).
`parse_operations` flattens it into `Operation`s in the canonical order; `apply_operations` runs
them on a property map. Both are pure; the caller decides which map (the user's state, or an empty
one for `$skip_user_properties_sync`) and which names the experiment-property limit admits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from worker.core.values import JsonObject, contains_value

CLEAR_ALL = "$clearAll"
UNSET = "$unset"
SET = "$set"
SET_ONCE = "$setOnce"
ADD = "$add"
APPEND = "$append"
PREPEND = "$prepend"
PRE_INSERT = "$preInsert"
POST_INSERT = "$postInsert"
REMOVE = "$remove"
PLAIN = "plain"  # a plain key: `$set`, applied after every operation

CANONICAL_ORDER = (CLEAR_ALL, UNSET, SET, SET_ONCE, ADD, APPEND, PREPEND, PRE_INSERT, POST_INSERT, REMOVE)
OPERATIONS = frozenset(CANONICAL_ORDER)
# Operations whose operand must be an object (`$clearAll` takes any value).
KEYED_OPERATIONS = OPERATIONS - {CLEAR_ALL}

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_DECIMAL = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")


# (kind, name, operand): `kind` one of the operations or PLAIN, `name` "" for `$clearAll`. A plain
# tuple: built for every property an event names, so it costs no class call.
Operation = tuple[str, str, Any]
RANK = {kind: rank for rank, kind in enumerate(CANONICAL_ORDER)}


class OperationStats:
    """What `apply_operations` did: the names it may have changed (for the delta), and what it did
    not apply (for metrics)."""

    __slots__ = ("add_ignored", "cleared", "limit_dropped", "touched")

    def __init__(self) -> None:
        self.touched: list[str] = []  # names written or removed, in order, possibly repeated
        self.cleared = False  # `$clearAll` ran: every property of the old map may have changed
        self.limit_dropped = 0
        self.add_ignored = 0


def invalid_operation(user_properties: JsonObject) -> str | None:
    """The first operation whose operand is not an object, or None when all are well formed."""
    for key, value in user_properties.items():
        if key in KEYED_OPERATIONS and type(value) is not dict:
            return key
    return None


def parse_operations(user_properties: JsonObject) -> list[Operation]:
    """Flatten `user_properties` into operations, in the canonical order of SPEC §3: one look at
    each key (most events name one or two)."""
    operations: list[Operation] = []
    plain: list[Operation] = []
    found: list[tuple[int, str]] = []
    for key, operand in user_properties.items():
        rank = RANK.get(key)
        if rank is None:
            plain.append((PLAIN, key, operand))
        else:
            found.append((rank, key))
    if len(found) > 1:
        found.sort()
    for _, kind in found:
        if kind == CLEAR_ALL:
            operations.append((CLEAR_ALL, "", None))
        else:
            operand = user_properties[kind]
            if operand:
                for name, value in operand.items():
                    operations.append((kind, name, value))
    operations.extend(plain)
    return operations


def apply_operations(
    properties: JsonObject, operations: Iterable[Operation], admit: Callable[[str], bool]
) -> OperationStats:
    """Apply `operations` to `properties` in place. `admit(name)` says whether a write may go ahead."""
    stats = OperationStats()
    touched = stats.touched
    for kind, name, value in operations:
        if kind == CLEAR_ALL:
            properties.clear()
            stats.cleared = True
        elif kind == UNSET or (value is None and kind in (SET, PLAIN)):
            if properties.pop(name, None) is not None:  # properties are never null: `$set` of null is `$unset`
                touched.append(name)
        elif kind == REMOVE:
            current = properties.get(name)
            if type(current) is list and value is not None:
                properties[name] = remove_items(current, operand_items(value))
                touched.append(name)
        elif kind == ADD:
            # An ignored `$add` writes nothing, so it must not take a place under the limit (SPEC §6).
            total = add_numbers(properties.get(name, 0), value)
            if total is None:
                stats.add_ignored += 1
            elif not admit(name):
                stats.limit_dropped += 1
            else:
                properties[name] = total
                touched.append(name)
        elif value is None or (kind == SET_ONCE and name in properties):
            continue  # nothing to write: a null list item, or `$setOnce` of a present property
        elif not admit(name):
            stats.limit_dropped += 1
        elif kind in (SET, PLAIN, SET_ONCE):
            properties[name] = value
            touched.append(name)
        else:
            properties[name] = LIST_OPERATIONS[kind](as_list(properties.get(name)), operand_items(value))
            touched.append(name)
    return stats


def parse_number(value: Any) -> int | float | None:
    """A `$add` operand: a JSON number, or a numeric string (an integer when it reads as one)."""
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float:
        return float(value)
    if kind is str:
        if _INTEGER.fullmatch(value):
            return int(value)
        if _DECIMAL.fullmatch(value):
            number = float(value)
            return number if math.isfinite(number) else None
    return None


def add_numbers(current: Any, operand: Any) -> int | float | None:
    """`current + operand`, or None when either is not a number or the sum leaves JSON's range."""
    number = parse_number(operand)
    if number is None or type(current) not in (int, float):
        return None
    total = current + number
    if type(total) is int:
        return int(total) if INT64_MIN <= total <= INT64_MAX else None
    return float(total) if math.isfinite(total) else None


def as_list(current: Any) -> list[Any]:
    """The list a list operation starts from: absent is [], any other non-list `p` is [p]."""
    if current is None:
        return []
    return list(current) if type(current) is list else [current]


def operand_items(value: Any) -> list[Any]:
    return value if type(value) is list else [value]


def unique_missing(items: list[Any], present: list[Any]) -> list[Any]:
    """The items not in `present`, each once, in their own order."""
    fresh: list[Any] = []
    for item in items:
        if not contains_value(present, item) and not contains_value(fresh, item):
            fresh.append(item)
    return fresh


def remove_items(current: list[Any], items: list[Any]) -> list[Any]:
    return [item for item in current if not contains_value(items, item)]


LIST_OPERATIONS: dict[str, Callable[[list[Any], list[Any]], list[Any]]] = {
    APPEND: lambda current, items: current + items,
    PREPEND: lambda current, items: items + current,
    POST_INSERT: lambda current, items: current + unique_missing(items, current),
    PRE_INSERT: lambda current, items: unique_missing(items, current) + current,
}
