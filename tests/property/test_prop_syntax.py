"""The JSON check that judges a message over the size limit without building it
(worker/core/syntax.py) says what orjson says, for any bytes: JSON when orjson decodes them, not
JSON when orjson refuses them (for another reason than its depth limit), and defers to orjson only
past that limit. And the split stage gives an oversized message the same reason as before, in
memory that does not grow with it."""

from __future__ import annotations

import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.core import reasons
from worker.core.config import CoreConfig
from worker.core.records import RawMessage
from worker.core.split import split_message
from worker.core.syntax import JSON, NOT_JSON, ORJSON_MAX_DEPTH, TOO_DEEP, check_json

EXAMPLES = settings(max_examples=400, deadline=None)
# Bytes that matter to the grammar, and some that never may appear outside a string.
SIGNIFICANT = [b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b" ", b"\n", b"0", b"1", b"-", b".", b"e", b"E",
               b"+", b"t", b"n", b"\x00", b"\x1f", b"\x7f", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\\u", b"\\ud800",
               b"\\udc00", b"\\uD83D\\uDE00", b"NaN", b"1e400", b"9" * 320, b"true", b"null"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=30)


def orjson_says(value: bytes) -> int:
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return TOO_DEEP if "depth limit" in str(exc) else NOT_JSON
    return JSON


def spaced(encoded: bytes, spaces: list[int]) -> bytes:
    """JSON with whitespace after some of its structural bytes (outside strings they are harmless)."""
    out, in_string, escaped, n = bytearray(), False, False, 0
    for byte in encoded:
        out.append(byte)
        if in_string:
            escaped, in_string = (not escaped and byte == 0x5C), in_string and (escaped or byte != 0x22)
        elif byte == 0x22:
            in_string = True
        elif byte in b"[]{},:" and spaces:
            out += b" \t\n\r"[: spaces[n % len(spaces)] % 5]
            n += 1
    return bytes(out)


@st.composite
def json_ish(draw: Any) -> bytes:
    """Valid JSON, then perhaps a few bytes inserted, deleted or replaced."""
    encoded = spaced(orjson.dumps(draw(values)), draw(st.lists(st.integers(0, 9), max_size=8)))
    data = bytearray(encoded)
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        piece = draw(st.sampled_from(SIGNIFICANT))
        if action == "insert":
            data[where:where] = piece
        elif action == "delete":
            del data[where:where + 1]
        elif action == "replace":
            data[where:where + 1] = piece
        else:
            del data[where:]
    return bytes(data)


@EXAMPLES
@given(json_ish())
@example(b"[" * ORJSON_MAX_DEPTH + b"]" * ORJSON_MAX_DEPTH)
@example(b"[" * 100 + b"}")
@example(b'{"a":[1,2,{"b":[3,{"c":{"d":[]}}]}],"e":1e5,"f":-0.5E-3}')
@example(b'["\\ud83d\\ude00", "\\u00e9", "caf\xc3\xa9"]')
def test_the_check_says_what_orjson_says(value: bytes) -> None:
    verdict, problem = check_json(value)
    if verdict == TOO_DEEP:  # deferred: orjson judges those itself
        assert value.count(b"[") + value.count(b"{") > ORJSON_MAX_DEPTH
        return
    assert verdict == orjson_says(value), problem
    assert (problem != "") == (verdict == NOT_JSON)


@pytest.mark.parametrize("value", [b"1", b'"x"', b"[]", b"{}", b" [1] ", b"-0", b"1E+2",
                                   b"123456789012345678901234567890", b'{"a":{"b":{"c":{"d":{"e":[1]}}}}}'])
def test_json_is_json(value: bytes) -> None:
    assert check_json(value) == (JSON, "")


@pytest.mark.parametrize("value", [b"", b" ", b"01", b"1.", b".5", b"[1,]", b'{"a":1,}', b'{"a" 1}', b"{1:2}", b"NaN",
                                   b'"\\ud800"', b'"\\udc00"', b'"\t"', b"\xef\xbb\xbf1", b'"\xff"', b"[1]x", b"1e400",
                                   b"9" * 309, b"[tru]", b"[1 2]", b'{"a":1]', b"[1}"])
def test_what_orjson_refuses_is_not_json(value: bytes) -> None:
    assert check_json(value)[0] == NOT_JSON == orjson_says(value)


def test_past_the_depth_limit_the_check_defers_to_orjson() -> None:
    assert check_json(b"[" * (ORJSON_MAX_DEPTH + 1) + b"]" * (ORJSON_MAX_DEPTH + 1))[0] == TOO_DEEP
    assert check_json(b'{"a":' * (ORJSON_MAX_DEPTH + 1))[0] == TOO_DEEP
    assert check_json(b"[" * 10 + b"}" + b"[" * 2000)[0] == NOT_JSON  # the error comes first


CONFIG = CoreConfig(max_message_bytes=1000)


def reason(value: bytes, config: CoreConfig = CONFIG) -> str:
    (record,) = split_message(RawMessage("events.raw", 0, 0, 1, value), config).rejected
    return record.reason


@EXAMPLES
@given(json_ish())
def test_an_oversized_message_gets_the_reason_it_got_when_it_was_parsed(value: bytes) -> None:
    oversized = value + b" " * (CONFIG.max_message_bytes + 1 - len(value)) if len(value) <= 1000 else value
    expected = {JSON: reasons.PAYLOAD_TOO_LARGE, NOT_JSON: reasons.MALFORMED_JSON}.get(orjson_says(oversized))
    if expected is not None:
        assert reason(oversized) == expected


def test_an_oversized_message_is_rejected_without_building_it() -> None:
    event = {"event_type": "click", "user_id": "user-1", "event_properties": {"n": 1, "list": [1, 2, {"a": "b"}]}}
    value = orjson.dumps({"events": [event] * 40_000})  # 3.3 MB
    config = CoreConfig(max_message_bytes=1_000_000)
    for oversized, expected in ((value, reasons.PAYLOAD_TOO_LARGE), (value[:-1], reasons.MALFORMED_JSON)):
        reason(oversized, config)  # the first call compiles the check's patterns
        tracemalloc.start()
        try:
            assert reason(oversized, config) == expected
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < len(value) / 10  # parsed, it takes about 20 times its size
