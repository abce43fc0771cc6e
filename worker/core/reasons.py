"""DLQ reason codes (SPEC §2), in the order validation checks them."""

from __future__ import annotations

MALFORMED_JSON = "malformed_json"
PAYLOAD_TOO_LARGE = "payload_too_large"
INVALID_ENVELOPE = "invalid_envelope"
INVALID_API_KEY = "invalid_api_key"
INVALID_EVENT = "invalid_event"
MISSING_EVENT_TYPE = "missing_event_type"
MISSING_USER_IDENTITY = "missing_user_identity"
INVALID_TIME = "invalid_time"
INVALID_EXPOSURE = "invalid_exposure"
INVALID_USER_PROPERTIES = "invalid_user_properties"
PROCESSING_ERROR = "processing_error"
# Avro raw input (SPEC §9), told apart by its C3 01 marker before the checks above.
UNKNOWN_SCHEMA = "unknown_schema"
MALFORMED_AVRO = "malformed_avro"

ALL_REASONS = (
    MALFORMED_JSON,
    PAYLOAD_TOO_LARGE,
    INVALID_ENVELOPE,
    INVALID_API_KEY,
    INVALID_EVENT,
    MISSING_EVENT_TYPE,
    MISSING_USER_IDENTITY,
    INVALID_TIME,
    INVALID_EXPOSURE,
    INVALID_USER_PROPERTIES,
    PROCESSING_ERROR,
    UNKNOWN_SCHEMA,
    MALFORMED_AVRO,
)
