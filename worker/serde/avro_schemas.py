"""The Avro schemas of `schemas/`: each record kind's current schema and its older versions, parsed
once and known by their CRC-64-AVRO fingerprints (SPEC §9).

`schemas/<name>.avsc` is the current schema of a kind; `schemas/history/<name>.v<N>.avsc` are
versions that records already on a topic may have been written with. A reader resolves a record's
fingerprint to its writer schema and lets fastavro map it onto the current one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import orjson
from fastavro.schema import SchemaParseException, fingerprint, to_parsing_canonical_form

from worker.errors import ConfigError

# worker/schemas links to the repository's schemas/; a wheel holds a copy (package data).
SCHEMA_DIR = Path(__file__).parents[1] / "schemas"
# The record kind (the name of its topic in the settings' `topics`) → the schema file's stem.
SCHEMA_FILES = {
    "raw": "raw_event",
    "enriched": "enriched_event",
    "deltas": "user_property_delta",
    "state": "user_state",
    "dlq": "dlq_record",
}
BIG_INT = "io.experimentworker.BigInt"
JSON_ARRAY = "io.experimentworker.JsonArray"
JSON_OBJECT = "io.experimentworker.JsonObject"


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """One version of a kind's schema, parsed, with what decoding needs to know about it."""

    path: Path
    parsed: dict[str, Any]
    fingerprint: bytes
    # The first byte of each varint a JSON-value union index can open a nested array or object with:
    # counting them in a body bounds how deep its JSON values can nest (see `codecs.nesting_bound`).
    container_bytes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SchemaVersions:
    kind: str
    current: WriterSchema
    by_fingerprint: dict[bytes, WriterSchema]


def schema_fingerprint(schema: Any) -> bytes:
    """The 8 bytes single-object encoding puts after `C3 01`: the CRC-64-AVRO (Rabin) fingerprint of
    the Parsing Canonical Form, little-endian. fastavro's hex string is already in that byte order."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def read_schema(path: Path) -> WriterSchema:
    try:
        schema = orjson.loads(path.read_bytes())
        named: dict[str, Any] = {}
        parsed = fastavro.parse_schema(schema, named_schemas=named)
    except (OSError, ValueError, SchemaParseException) as exc:
        raise ConfigError(f"Avro schema {path}: {exc}") from exc
    if type(parsed) is not dict or parsed.get("type") != "record":
        raise ConfigError(f"Avro schema {path}: a record schema expected")
    return WriterSchema(path, parsed, schema_fingerprint(schema), container_bytes(named.get(JSON_ARRAY)))


def container_bytes(json_array: dict[str, Any] | None) -> tuple[int, ...]:
    """The union index of the JsonArray and JsonObject branches, zig-zag encoded: its varint's first
    byte holds the low 7 bits, with or without the continuation bit (a writer may pad a varint).
    Every JSON-value union of a schema lists its branches in one order (a test checks it)."""
    if json_array is None:
        return ()
    branches = json_array["fields"][0]["type"]["items"]
    low_bits = [(2 * i) & 0x7F for i, branch in enumerate(branches) if name_of(branch) in (JSON_ARRAY, JSON_OBJECT)]
    return tuple(sorted({byte for low in low_bits for byte in (low, low | 0x80)}))


def name_of(branch: Any) -> str | None:
    name = branch.get("name") if isinstance(branch, dict) else branch
    return name if isinstance(name, str) else None


@functools.cache
def schema_versions(kind: str, directory: Path = SCHEMA_DIR) -> SchemaVersions:
    """The current schema of `kind` and every older one kept in `history/`, parsed once per process."""
    if kind not in SCHEMA_FILES:
        raise ConfigError(f"no Avro schema for {kind!r}; kinds: {', '.join(SCHEMA_FILES)}")
    stem = SCHEMA_FILES[kind]
    current = read_schema(directory / f"{stem}.avsc")
    older = [read_schema(path) for path in sorted((directory / "history").glob(f"{stem}.v*.avsc"))]
    by_fingerprint = {schema.fingerprint: schema for schema in older}
    by_fingerprint[current.fingerprint] = current
    return SchemaVersions(kind, current, by_fingerprint)
