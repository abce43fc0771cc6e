"""The value formats of the worker's topics (SPEC §9): JSON (the default) and Avro single-object
encoding, behind one `Codec` interface chosen per topic by `codec_for(kind, fmt)`.

An Avro message is `C3 01`, the writer schema's 8-byte CRC-64-AVRO fingerprint (little-endian),
then the Avro binary body: readers need no registry, only `schemas/`. Decoding resolves the
fingerprint to the current schema or an older one kept in `schemas/history/`, and fastavro maps an
older writer's record onto the current schema (added fields take their defaults).
"""

from __future__ import annotations

import functools
import io
import json
from typing import Any, Protocol

import orjson
from fastavro import schemaless_reader, schemaless_writer
from fastavro._read_py import schemaless_reader as python_schemaless_reader

from worker.core.reasons import MALFORMED_AVRO, MALFORMED_JSON, UNKNOWN_SCHEMA
from worker.core.values import JsonObject
from worker.errors import ConfigError, WorkerError
from worker.serde.avro_schemas import SCHEMA_FILES, SchemaVersions, WriterSchema, schema_versions
from worker.serde.json_values import SHAPES, NotJsonError, Shape

KINDS = tuple(SCHEMA_FILES)
FORMATS = ("json", "avro")
MARKER = b"\xc3\x01"
HEADER_BYTES = len(MARKER) + 8
# fastavro's compiled reader recurses on the C stack and crashes the process (SIGSEGV) on values
# nested a few thousand levels deep, which a 10 kB message can hold. A body that may nest deeper
# than this is read by fastavro's pure-Python reader instead, which raises RecursionError.
FAST_READER_MAX_NESTING = 256


class SerdeError(WorkerError):
    """A value that cannot be decoded (or, for a bug, encoded); `reason` is a DLQ-style reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Codec(Protocol):
    """A topic's value format: the JSON form of a record (SPEC §8) to bytes and back."""

    def encode(self, value: JsonObject) -> bytes: ...

    def decode(self, data: bytes) -> JsonObject: ...


def dump_json(value: Any) -> bytes:
    """Compact UTF-8 JSON. orjson refuses integers beyond 64 bits and nesting past 255 levels; such
    values (possible from Avro input) take the slower standard-library path."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class JsonCodec:
    """SPEC §9's default: the JSON form of §8, compact UTF-8."""

    __slots__ = ()

    def encode(self, value: JsonObject) -> bytes:
        return dump_json(value)

    def decode(self, data: bytes) -> JsonObject:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SerdeError(MALFORMED_JSON, str(exc)) from exc
        if type(value) is not dict:
            raise SerdeError(MALFORMED_JSON, f"a JSON {type(value).__name__}, not an object")
        return value


class AvroCodec:
    """One record kind in Avro single-object encoding, written with the current schema."""

    __slots__ = ("current", "header", "kind", "shape", "writers")

    def __init__(self, versions: SchemaVersions, shape: Shape) -> None:
        self.kind, self.shape = versions.kind, shape
        self.current = versions.current
        self.writers = versions.by_fingerprint
        self.header = MARKER + self.current.fingerprint

    def encode(self, value: JsonObject) -> bytes:
        out = io.BytesIO()
        out.write(self.header)
        try:
            schemaless_writer(out, self.current.parsed, self.shape.to_avro(value))
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise SerdeError(MALFORMED_AVRO, f"cannot encode as {self.kind}: {type(exc).__name__}: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes) -> JsonObject:
        writer = self.writer_of(data)
        body = io.BytesIO(data)
        body.seek(HEADER_BYTES)
        reader_schema = None if writer is self.current else self.current.parsed
        read = schemaless_reader if nesting_bound(data, writer) <= FAST_READER_MAX_NESTING else python_schemaless_reader
        try:
            datum = read(body, writer.parsed, reader_schema, return_record_name=True)
            left = len(data) - body.tell()
            if left:
                raise ValueError(f"{left} bytes after the end of the record")
            if type(datum) is not dict:
                raise ValueError("the body is not a record")
            return self.shape.from_avro(datum)
        except RecursionError as exc:
            raise SerdeError(MALFORMED_AVRO, f"{self.kind} record nested too deeply") from exc
        except NotJsonError as exc:
            raise SerdeError(MALFORMED_AVRO, str(exc)) from exc
        except Exception as exc:  # fastavro reports a bad body with many types (EOFError, ValueError, ...)
            raise SerdeError(MALFORMED_AVRO, f"not a valid {self.kind} record: {type(exc).__name__}: {exc}") from exc

    def writer_of(self, data: bytes) -> WriterSchema:
        if len(data) < HEADER_BYTES or not data.startswith(MARKER):
            raise SerdeError(MALFORMED_AVRO, "not Avro single-object encoding (C3 01 + 8-byte fingerprint)")
        fingerprint = data[len(MARKER) : HEADER_BYTES]
        writer = self.writers.get(fingerprint)
        if writer is None:
            detail = f"schema fingerprint {fingerprint.hex()} is none of the known {self.kind} schemas"
            raise SerdeError(UNKNOWN_SCHEMA, detail)
        return writer


def nesting_bound(data: bytes, writer: WriterSchema) -> int:
    """An upper bound on how deep the JSON values of a body nest: each nested array or map starts
    with a union index whose first byte is one of `container_bytes`. C-speed (bytes.count)."""
    return sum(data.count(byte, HEADER_BYTES) for byte in writer.container_bytes)


JSON_CODEC = JsonCodec()


@functools.cache
def codec_for(kind: str, fmt: str) -> Codec:
    """The codec of a record kind ("raw", "enriched", "deltas", "state", "dlq") in a format ("json",
    "avro"; `settings.Format` values compare equal). One instance per pair, schemas parsed once."""
    if kind not in SHAPES:
        raise ConfigError(f"no record kind {kind!r}; kinds: {', '.join(KINDS)}")
    if fmt == "json":
        return JSON_CODEC
    if fmt == "avro":
        return AvroCodec(schema_versions(kind), SHAPES[kind])
    raise ConfigError(f"no format {fmt!r} for {kind}; formats: {', '.join(FORMATS)}")
