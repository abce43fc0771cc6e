"""Who an event belongs to: the id rules of SPEC §2 and the user key of SPEC §1."""

from __future__ import annotations

import re

# Ids that SDKs send when they have none; compared after trimming and ignoring case.
# `""` stands for both the empty string and the two characters `""`.
INVALID_IDS = frozenset(
    {
        "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown",
        "", '""', "{}", "lmy47d", "0", "-1", "00000000-0000-0000-0000-000000000000",
    }
)
PROJECT_ID = re.compile(r"[A-Za-z0-9_.-]+")


def is_usable_id(value: str, min_length: int) -> bool:
    """An id is kept when it is at least `min_length` characters as sent and not a placeholder."""
    return len(value) >= min_length and value.strip().lower() not in INVALID_IDS


def is_project_id(value: str) -> bool:
    return PROJECT_ID.fullmatch(value) is not None


def user_key(project_id: str, user_id: str | None, device_id: str | None) -> str:
    """`<project>/u:<user_id>` when there is a user id, else `<project>/d:<device_id>`."""
    if user_id is not None:
        return f"{project_id}/u:{user_id}"
    if device_id is not None:
        return f"{project_id}/d:{device_id}"
    raise ValueError("an event without a usable id has no user key")


def project_of(key: str) -> str:
    """The project id at the front of a user key."""
    return key.partition("/")[0]


def raw_project_of(key: bytes) -> bytes:
    """`project_of` for a user key as its UTF-8 bytes (a changelog's key, not decoded)."""
    return key.partition(b"/")[0]
