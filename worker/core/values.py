"""JSON value rules shared by every stage: strict equality, nesting depth and string truncation.

Events are plain decoded JSON (dict, list, str, int, float, bool, None). Equality here is JSON
equality, not Python's: `true` is not `1` and `1` is not `1.0` (SPEC §3), so `==` cannot be used.

Depth and truncation (SPEC §2) are judged by one walk, `scan`, that allocates nothing: almost no
event is too deep or holds a long string, so the copying `truncate_strings` runs only for the few
that do. `encode_unit` writes JSON of any depth (a DLQ unit may be nested past orjson's limit).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

JsonObject = dict[str, Any]

# What `scan` found: nothing, a string or key over the length limit, a container past the depth limit.
FINE: Final = 0
LONG: Final = 1
DEEP: Final = 2


def same_value(a: Any, b: Any) -> bool:
    """JSON equality that keeps bool, int and float apart, at any depth."""
    if a is b:  # the common case: a property no operation touched is the same object
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        return bool(a.keys() == b.keys()) and all(same_value(v, b[k]) for k, v in a.items())
    if kind is list:
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def contains_value(items: list[Any], value: Any) -> bool:
    return any(same_value(item, value) for item in items)


def scan(value: Any, depth: int, max_depth: int, max_length: int) -> int:
    """FINE, LONG or DEEP for the container `value` at nesting `depth` (the event itself is at 1).

    DEEP wins over LONG and ends the walk; the walk never goes below `max_depth + 1`, so it
    recurses at most that far whatever the input."""
    if depth > max_depth:
        return DEEP
    found = FINE
    if type(value) is dict:
        for key, item in value.items():
            if len(key) > max_length:
                found = LONG
            kind = type(item)
            if kind is str:
                if len(item) > max_length:
                    found = LONG
            elif kind is dict or kind is list:
                inner = scan(item, depth + 1, max_depth, max_length)
                if inner == DEEP:
                    return DEEP
                found |= inner
    else:
        for item in value:
            kind = type(item)
            if kind is str:
                if len(item) > max_length:
                    found = LONG
            elif kind is dict or kind is list:
                inner = scan(item, depth + 1, max_depth, max_length)
                if inner == DEEP:
                    return DEEP
                found |= inner
    return found


def truncate_strings(value: Any, limit: int) -> Any:
    """Cut every string value and every key longer than `limit` characters, at any depth."""
    kind = type(value)
    if kind is str:
        text: str = value
        return text if len(text) <= limit else text[:limit]
    if kind is dict:
        return {
            (key if len(key) <= limit else key[:limit]): truncate_strings(item, limit)
            for key, item in value.items()
        }
    if kind is list:
        return [truncate_strings(item, limit) for item in value]
    return value


def encode_unit(unit: JsonObject) -> bytes:
    """Compact JSON of a rejected unit. orjson encodes at most 255 levels of nesting but decodes
    1024, and a rejected event may be that deep, so a deep unit takes a path with no depth limit."""
    try:
        return orjson.dumps(unit)
    except orjson.JSONEncodeError:
        return encode_deep(unit)


def encode_deep(value: Any) -> bytes:
    """Compact JSON without recursion: containers push their syntax (bytes) and children on a stack."""
    parts: list[bytes] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if type(item) is bytes:  # syntax pushed below; decoded JSON never holds bytes
            parts.append(item)
        elif type(item) is dict:
            stack.append(b"}")
            pairs = list(item.items())
            for position in range(len(pairs) - 1, -1, -1):
                key, child = pairs[position]
                stack.extend((child, orjson.dumps(key) + b":", b"," if position else b""))
            stack.append(b"{")
        elif type(item) is list:
            stack.append(b"]")
            for position in range(len(item) - 1, -1, -1):
                stack.extend((item[position], b"," if position else b""))
            stack.append(b"[")
        else:
            parts.append(orjson.dumps(item))
    return b"".join(parts)
