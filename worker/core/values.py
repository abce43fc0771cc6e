"""JSON value rules shared by every stage: strict equality, nesting depth and string truncation.

Events are plain decoded JSON (dict, list, str, int, float, bool, None). Equality here is JSON
equality, not Python's: `true` is not `1` and `1` is not `1.0` (SPEC §3), so `==` cannot be used.
"""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]


def same_value(a: Any, b: Any) -> bool:
    """JSON equality that keeps bool, int and float apart, at any depth."""
    if a is b:  # the common case: a property no operation touched is the same object
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        return a.keys() == b.keys() and all(same_value(v, b[k]) for k, v in a.items())
    if kind is list:
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def contains_value(items: list[Any], value: Any) -> bool:
    return any(same_value(item, value) for item in items)


def deeper_than(value: Any, limit: int) -> bool:
    """True when `value` nests deeper than `limit`; the value itself is at depth 1 (SPEC §2)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        if type(current) is dict:
            stack.extend((child, depth + 1) for child in current.values() if type(child) in (dict, list))
        elif type(current) is list:
            stack.extend((child, depth + 1) for child in current if type(child) in (dict, list))
    return False


def truncate_strings(value: Any, limit: int) -> Any:
    """Cut every string value and every key longer than `limit` characters, at any depth."""
    kind = type(value)
    if kind is str:
        return value if len(value) <= limit else value[:limit]
    if kind is dict:
        return {
            (key if len(key) <= limit else key[:limit]): truncate_strings(item, limit)
            for key, item in value.items()
        }
    if kind is list:
        return [truncate_strings(item, limit) for item in value]
    return value
