"""The tests' fixed clock: no test reads the real time to build its input."""

from __future__ import annotations

T0 = 1_700_000_000_000  # an ingestion time (ms) far from any day boundary
