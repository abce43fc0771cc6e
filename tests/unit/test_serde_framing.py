"""SPEC §9 framing: Avro single-object encoding (`C3 01`, the little-endian CRC-64-AVRO fingerprint of
the Parsing Canonical Form, the body), unknown fingerprints, bad bodies, the raw topic's JSON/Avro
detection, and the guard that keeps a deeply nested body away from fastavro's compiled reader."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import orjson
import pytest
from fastavro.schema import to_parsing_canonical_form

from worker.errors import ConfigError
from worker.serde import MALFORMED_AVRO, UNKNOWN_SCHEMA, RawDecodeError, SerdeError, codec_for, raw_to_json
from worker.serde.avro_schemas import SCHEMA_DIR, schema_versions
from worker.serde.codecs import FAST_READER_MAX_NESTING, nesting_bound

STATE = {"project_id": "p", "user_key": "p/u:user-1", "user_properties": {"plan": "pro"}, "updated_at": 5}
EVENT = {"event_type": "click", "user_id": "user-1", "time": 1_700_000_000_000, "event_properties": {"n": 1}}


def rabin_fingerprint(text: str) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it (independent of fastavro)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in text.encode("utf-8"):
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_the_spec_test_vector_for_null() -> None:
    # share/test/data/schema-tests.txt in the Avro repository: "null" → 7195948357588979594
    assert rabin_fingerprint('"null"') == 7195948357588979594


@pytest.mark.parametrize("kind", ["raw", "enriched", "deltas", "state", "dlq"])
def test_header_is_marker_then_little_endian_fingerprint_of_the_canonical_form(kind: str) -> None:
    schema = json.loads(schema_versions(kind).current.path.read_text())
    expected = rabin_fingerprint(to_parsing_canonical_form(schema)).to_bytes(8, "little")
    codec = codec_for(kind, "avro")
    assert codec.header == b"\xc3\x01" + expected  # type: ignore[attr-defined]
    assert schema_versions(kind).current.fingerprint == expected


def test_encoded_value_is_header_then_body() -> None:
    data = codec_for("state", "avro").encode(STATE)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema_versions("state").current.fingerprint
    assert data[10:12] == b"\x02p"  # project_id: zig-zag length 1, then "p"


def test_unknown_fingerprint() -> None:
    data = codec_for("state", "avro").encode(STATE)
    with pytest.raises(SerdeError) as caught:
        codec_for("state", "avro").decode(data[:2] + bytes(8) + data[10:])
    assert caught.value.reason == UNKNOWN_SCHEMA
    assert "0000000000000000" in caught.value.detail


def test_another_kinds_schema_is_unknown() -> None:
    with pytest.raises(SerdeError) as caught:
        codec_for("enriched", "avro").decode(codec_for("state", "avro").encode(STATE))
    assert caught.value.reason == UNKNOWN_SCHEMA


@pytest.mark.parametrize("cut", [1, 3, 10, 12])
def test_truncated_value(cut: int) -> None:
    data = codec_for("state", "avro").encode(STATE)
    with pytest.raises(SerdeError) as caught:
        codec_for("state", "avro").decode(data[:-cut] if cut < len(data) - 10 else data[:cut])
    assert caught.value.reason == MALFORMED_AVRO


def test_trailing_bytes_are_malformed() -> None:
    data = codec_for("state", "avro").encode(STATE)
    with pytest.raises(SerdeError, match="1 bytes after the end"):
        codec_for("state", "avro").decode(data + b"\x00")


def test_bad_utf8_in_a_string_is_malformed() -> None:
    data = codec_for("state", "avro").encode(STATE)
    with pytest.raises(SerdeError) as caught:
        codec_for("state", "avro").decode(data[:11] + b"\xff" + data[12:])
    assert caught.value.reason == MALFORMED_AVRO


@pytest.mark.parametrize("number", [math.nan, math.inf])
def test_a_double_json_cannot_hold_is_malformed(number: float) -> None:
    data = bytearray(codec_for("state", "avro").encode({**STATE, "user_properties": {"x": 1.5}}))
    at = data.index(struct.pack("<d", 1.5))
    data[at : at + 8] = struct.pack("<d", number)
    with pytest.raises(SerdeError, match="not a JSON number"):
        codec_for("state", "avro").decode(bytes(data))


def test_json_codec_rejects_what_is_not_an_object() -> None:
    with pytest.raises(SerdeError):
        codec_for("state", "json").decode(b"[1]")
    with pytest.raises(SerdeError):
        codec_for("state", "json").decode(b"{")


def test_codec_for_unknown_kind_or_format() -> None:
    with pytest.raises(ConfigError, match="kinds: raw, enriched"):
        codec_for("by_user", "avro")
    with pytest.raises(ConfigError, match="formats: json, avro"):
        codec_for("enriched", "protobuf")


def test_codec_for_returns_one_instance_per_pair() -> None:
    assert codec_for("enriched", "avro") is codec_for("enriched", "avro")
    assert codec_for("enriched", "json") is codec_for("state", "json")


# The raw topic


def test_raw_json_passes_through_unchanged() -> None:
    value = orjson.dumps(EVENT)
    assert raw_to_json(value) is value
    assert raw_to_json(b"not json at all") == b"not json at all"  # the core's malformed_json, not ours


def test_raw_avro_becomes_the_equivalent_json() -> None:
    converted = raw_to_json(codec_for("raw", "avro").encode(EVENT))
    assert isinstance(converted, bytes)
    assert orjson.loads(converted) == EVENT


def test_raw_avro_with_an_unknown_schema() -> None:
    result = raw_to_json(codec_for("enriched", "avro").encode(
        {"project_id": "p", "event_type": "e", "time": 1, "event_properties": {}, "user_properties": {},
         "billable": True, "ingested_at": 1}))
    assert isinstance(result, RawDecodeError)
    assert result.reason == UNKNOWN_SCHEMA


@pytest.mark.parametrize("value", [b"\xc3\x01", b"\xc3\x01\x00", b"\xc3\x01" + bytes(8)])
def test_raw_marker_without_a_fingerprint_or_with_an_unknown_one(value: bytes) -> None:
    result = raw_to_json(value)
    assert isinstance(result, RawDecodeError)
    assert result.reason == (UNKNOWN_SCHEMA if len(value) >= 10 else MALFORMED_AVRO)


def test_raw_avro_truncated_body() -> None:
    data = codec_for("raw", "avro").encode(EVENT)
    result = raw_to_json(data[:-3])
    assert isinstance(result, RawDecodeError)
    assert result.reason == MALFORMED_AVRO
    assert result.detail


def deep_state_body(levels: int) -> bytes:
    """A state record whose one property is `levels` arrays nested in each other, written by hand:
    fastavro's own writer would crash on it just as its reader does."""
    def varint(n: int) -> bytes:
        n = (n << 1) ^ (n >> 63)
        out = bytearray()
        while n > 0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    text = lambda s: varint(len(s)) + s  # noqa: E731
    header = codec_for("state", "avro").header  # type: ignore[attr-defined]
    nested = (varint(6) + varint(1)) * levels + varint(0) + varint(0) + varint(0) * levels  # JsonArray, 1 item
    return header + text(b"p") + text(b"k") + varint(1) + text(b"a") + nested + varint(0) + varint(5)


def test_deep_nesting_takes_the_python_reader_and_is_malformed_not_a_crash() -> None:
    data = deep_state_body(20_000)  # fastavro's compiled reader dies with SIGSEGV near 4,000 levels
    assert nesting_bound(data, schema_versions("state").current) > FAST_READER_MAX_NESTING
    with pytest.raises(SerdeError, match="nested too deeply"):
        codec_for("state", "avro").decode(data)


def test_moderate_nesting_still_decodes() -> None:
    data = deep_state_body(50)
    value: object = ""
    for _ in range(50):
        value = [value]
    assert codec_for("state", "avro").decode(data)["user_properties"] == {"a": value}


def test_every_json_value_union_lists_its_branches_in_one_order() -> None:
    """The nesting bound counts the container branches' index bytes, so the order must not vary."""
    unions: list[tuple[str, ...]] = []

    def name(branch: object) -> str:
        return branch if isinstance(branch, str) else str(branch.get("name") if isinstance(branch, dict) else branch)

    def walk(node: object) -> None:
        if isinstance(node, list) and {"JsonArray", "JsonObject"} & {name(branch) for branch in node}:
            unions.append(tuple(name(branch) for branch in node))
        for child in node.values() if isinstance(node, dict) else node if isinstance(node, list) else ():
            walk(child)

    for path in [*SCHEMA_DIR.glob("*.avsc"), *SCHEMA_DIR.glob("history/*.avsc")]:
        walk(json.loads(Path(path).read_text()))
    assert len(unions) >= 5 * 3
    assert set(unions) == {("string", "long", "double", "boolean", "null", "BigInt", "JsonArray", "JsonObject")}
