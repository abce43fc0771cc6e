"""The settings the pure core needs, as one frozen value (the runtime builds it from its settings)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class CoreConfig:
    min_id_length: int = 5
    max_message_bytes: int = 1_000_000
    max_events_per_message: int = 2000
    experiment_property_limit: int = 1500
    # api_key → project_id; None means every envelope belongs to the project `default`.
    projects: Mapping[str, str] | None = None
    max_depth: int = 40
    max_string_length: int = 1024
    dedupe_window_ms: int = 7 * DAY_MS
