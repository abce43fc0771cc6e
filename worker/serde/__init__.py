"""Value formats of the worker's topics (SPEC §9): `codec_for(kind, fmt)` for the output topics
and `raw_to_json` for the raw topic. The runtime uses these; the core never sees anything but JSON.
"""

from worker.core.reasons import MALFORMED_AVRO, UNKNOWN_SCHEMA
from worker.serde.codecs import (
    FORMATS,
    KINDS,
    AvroCodec,
    Codec,
    JsonCodec,
    SerdeError,
    codec_for,
)
from worker.serde.raw import RawDecodeError, raw_to_json

__all__ = [
    "FORMATS",
    "KINDS",
    "MALFORMED_AVRO",
    "UNKNOWN_SCHEMA",
    "AvroCodec",
    "Codec",
    "JsonCodec",
    "RawDecodeError",
    "SerdeError",
    "codec_for",
    "raw_to_json",
]
