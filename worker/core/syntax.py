"""Is a value JSON, without building it? For a message over the size limit (SPEC §2): not-JSON
(`malformed_json`) comes before too large (`payload_too_large`), so the split stage must know which
it is, but it need not build the objects of a value it rejects whole.

`check_json` reads the bytes once, left to right, in the grammar orjson accepts (RFC 8259, UTF-8
checked first, no NaN, a lone surrogate escape or a number that is infinite as a double is not
JSON), in memory that does not grow with the value. Regular expressions take whole runs of members
(scalars, and containers of scalars) at a time, so Python steps about once per container that holds
containers, not per byte or per member. A value nested deeper than orjson's 1024 levels is
`TOO_DEEP`: how orjson judges one is its own affair (its messages differ by input), so the caller asks it.
"""

from __future__ import annotations

import codecs
import math
import re

JSON, NOT_JSON, TOO_DEEP = 0, 1, 2
ORJSON_MAX_DEPTH = 1024
UTF8_CHUNK = 1 << 16  # the UTF-8 check decodes this much at a time: no full copy of a large value

# Possessive and atomic throughout: the grammar never has to take back what it matched, and a pattern
# that may would try every way of splitting a long string when a run ends.
_WS = rb"[ \t\n\r]*+"
# A string: no control character, valid escapes, a high surrogate escape only before a low one.
_STRING = (rb'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u(?:[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}'
           rb'|(?![dD][89a-fA-F])[0-9a-fA-F]{4}))*+"')
# A number that is finite as a double for sure (at most 200 integer digits, an exponent below 100);
# any other number is taken on its own and checked.
_SAFE_NUMBER = rb"-?(?:0|[1-9][0-9]{0,199})(?:\.[0-9]++)?(?:[eE](?:-[0-9]++|\+?[0-9]{1,2}))?(?![0-9eE.+-])"
_NUMBER = rb"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?"
_SCALAR = rb"(?>" + _STRING + rb"|" + _SAFE_NUMBER + rb"|true|false|null)"
_KEY = _STRING + _WS + rb":"


def _container(member: bytes) -> bytes:
    """An array or object whose members are all `member`."""
    pair = _KEY + _WS + member
    return (rb"(?>\[" + _WS + rb"(?:" + member + _WS + rb"(?:," + _WS + member + _WS + rb")*+)?\]"
            rb"|\{" + _WS + rb"(?:" + pair + _WS + rb"(?:," + _WS + pair + _WS + rb")*+)?\})")


# A member of up to NESTED levels of containers (a typical event: its properties, their objects) is
# taken by one match.
NESTED = 3
_MEMBER = _SCALAR
for _ in range(NESTED):
    _MEMBER = rb"(?>" + _SCALAR + rb"|" + _container(_MEMBER) + rb")"
_FLAT = _container(_MEMBER)  # a container of such members: NESTED + 1 levels at most
# What the reader expects next.
VALUE, VALUE_OR_CLOSE, KEY, KEY_OR_CLOSE, COMMA_OR_CLOSE, END = range(6)
# One token, of those that may come in each state; near the depth limit, containers one bracket at a time.
_VALUE = rb"(?P<v>" + _STRING + rb"|true|false|null)|(?P<n>" + _NUMBER + rb")|(?P<o>[\[{])|(?P<c>[\]}])"


class Grammar:
    """The compiled patterns: a few hundred ms to compile, so on the first large value, not at import."""

    def __init__(self) -> None:
        # Members with their comma; then perhaps the last member and the closing bracket.
        self.array_run = re.compile(rb"(?>" + _WS + _MEMBER + _WS + rb",)*+")
        self.object_run = re.compile(rb"(?>" + _WS + _KEY + _WS + _MEMBER + _WS + rb",)*+")
        self.array_tail = re.compile(_WS + _MEMBER + _WS + rb"\]")
        self.object_tail = re.compile(_WS + _KEY + _WS + _MEMBER + _WS + rb"\}")
        value = re.compile(_WS + rb"(?:(?P<f>" + _FLAT + rb")|" + _VALUE + rb")")
        key = re.compile(_WS + rb"(?:(?P<k>" + _KEY + rb")|(?P<c>[\]}]))")
        after = re.compile(_WS + rb"(?:(?P<p>,)|(?P<c>[\]}]))")
        self.tokens = {VALUE: value, VALUE_OR_CLOSE: value, KEY: key, KEY_OR_CLOSE: key, COMMA_OR_CLOSE: after,
                       END: re.compile(_WS + rb"\Z")}
        plain = re.compile(_WS + rb"(?:" + _VALUE + rb")")
        self.plain_tokens = {**self.tokens, VALUE: plain, VALUE_OR_CLOSE: plain}


_compiled: list[Grammar] = []


def grammar() -> Grammar:
    if not _compiled:
        _compiled.append(Grammar())
    return _compiled[0]


MISPLACED, DEEP = -1, -2
ARRAY, OBJECT = ord("["), ord("{")


def check_json(value: bytes) -> tuple[int, str]:
    """(JSON, "") when orjson would decode `value`; (NOT_JSON, where and why) when it would not;
    (TOO_DEEP, "") when the value nests past orjson's depth limit before any error shows."""
    problem = utf8_problem(value)
    if problem:
        return NOT_JSON, problem
    patterns = grammar()
    stack: list[int] = []
    expect, position = VALUE, 0
    while True:
        roomy = len(stack) + NESTED < ORJSON_MAX_DEPTH  # room below the limit for what one match takes
        if stack and roomy:
            position, expect = skip_members(patterns, value, position, expect, stack)
        token = (patterns.tokens if roomy else patterns.plain_tokens)[expect].match(value, position)
        if token is None:
            at = len(value) - len(value[position:].lstrip(b" \t\n\r"))
            return NOT_JSON, "unexpected end of data" if at == len(value) else f"unexpected byte at {at}"
        if expect == END:
            return JSON, ""
        kind = token.lastgroup or ""
        expect = step(kind, value, token.start(kind), token.end(), expect, stack)
        if expect == DEEP:
            return TOO_DEEP, ""
        if expect == MISPLACED:
            return NOT_JSON, f"unexpected byte at {token.start(kind)}"
        position = token.end()


def skip_members(patterns: Grammar, value: bytes, position: int, expect: int, stack: list[int]) -> tuple[int, int]:
    """Past the members (scalars, flat containers) of the container the reader is in, and past its
    closing bracket when every member up to it was one of those."""
    array = stack[-1] == ARRAY
    if expect == COMMA_OR_CLOSE or array != (expect in (VALUE, VALUE_OR_CLOSE)):
        return position, expect
    run = (patterns.array_run if array else patterns.object_run).match(value, position)
    assert run is not None  # a pattern of `*` always matches
    end = run.end()
    if end > position:
        expect = VALUE if array else KEY  # after a comma: a member must come, not the bracket
    tail = (patterns.array_tail if array else patterns.object_tail).match(value, end)
    if tail is None:
        return end, expect
    stack.pop()
    return tail.end(), after_value(stack)


def step(kind: str, value: bytes, start: int, end: int, expect: int, stack: list[int]) -> int:
    """The state after the token of `kind` at value[start:end]: MISPLACED when it may not come
    here, DEEP when it opens a container past the depth limit."""
    if kind == "v":
        return after_value(stack)
    if kind == "n":
        return MISPLACED if math.isinf(float(value[start:end])) else after_value(stack)
    if kind == "k":
        return VALUE
    if kind == "p":
        return VALUE if stack[-1] == ARRAY else KEY
    if kind == "f":
        return after_value(stack)
    if kind == "o":
        if len(stack) >= ORJSON_MAX_DEPTH:
            return DEEP
        stack.append(value[start])
        return VALUE_OR_CLOSE if value[start] == ARRAY else KEY_OR_CLOSE
    # A closing bracket: misplaced after a comma (a member must come) or when it is another container's.
    if expect in (VALUE, KEY) or not stack or value[start] != (ord("]") if stack[-1] == ARRAY else ord("}")):
        return MISPLACED
    stack.pop()
    return after_value(stack)


def after_value(stack: list[int]) -> int:
    return COMMA_OR_CLOSE if stack else END


def utf8_problem(value: bytes) -> str:
    """Where `value` stops being UTF-8 (orjson checks the whole value first), or ""."""
    if value.isascii():
        return ""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    view = memoryview(value)
    for start in range(0, len(value), UTF8_CHUNK):
        try:
            decoder.decode(view[start:start + UTF8_CHUNK], start + UTF8_CHUNK >= len(value))
        except UnicodeDecodeError as exc:
            return f"not UTF-8 near byte {start + exc.start}"
    return ""
