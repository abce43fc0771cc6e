"""The raw topic's value, JSON or Avro, as the JSON bytes the core reads (SPEC §2, §9).

Producers may send a bare event in Avro single-object encoding (`schemas/raw_event.avsc`, current or
kept older versions) instead of JSON. The `C3 01` marker tells the two apart without a setting: no
JSON text (UTF-8) can start with those bytes. An Avro event becomes the JSON bytes of the same event,
so the unchanged core validates both alike; what cannot be decoded is a `RawDecodeError` with a
reason code, for the runner to send to the DLQ with the original bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.serde.codecs import MARKER, SerdeError, codec_for, dump_json


@dataclass(frozen=True, slots=True)
class RawDecodeError:
    """Why a raw value marked as Avro cannot be read: `unknown_schema` or `malformed_avro`."""

    reason: str
    detail: str


def raw_to_json(value: bytes) -> bytes | RawDecodeError:
    """JSON input unchanged (the same object, no copy); Avro input as the equivalent JSON event."""
    if not value.startswith(MARKER):
        return value
    try:
        event = codec_for("raw", "avro").decode(value)
    except SerdeError as exc:
        return RawDecodeError(exc.reason, exc.detail)
    return dump_json(event)
