"""The DLQ limit of SPEC §10, arroyo-style: a few bad units are normal, but when most of the recent
input goes to the DLQ, or a long run of it does, the producer or the deploy is broken, and
stopping is kinder than quietly filling the DLQ with everything.
"""

from __future__ import annotations

from collections import deque


class DlqLimit:
    """Tracks the last `window` units of input (accepted events and DLQ records)."""

    def __init__(self, max_ratio: float, window: int, max_consecutive: int | None = None) -> None:
        self.max_ratio, self.window, self.max_consecutive = max_ratio, window, max_consecutive
        self._recent: deque[bool] = deque(maxlen=window)
        self._invalid = 0
        self.consecutive = 0

    def record(self, valid: int, invalid: int) -> None:
        """One message's units: its accepted events, then its rejected ones."""
        for is_invalid in (False,) * valid + (True,) * invalid:
            if len(self._recent) == self.window and self._recent[0]:
                self._invalid -= 1
            self._recent.append(is_invalid)
            self._invalid += is_invalid
        if invalid and not valid:
            self.consecutive += invalid
        elif valid:
            self.consecutive = invalid

    @property
    def ratio(self) -> float:
        return self._invalid / len(self._recent) if self._recent else 0.0

    def exceeded(self) -> str | None:
        """Why the limit tripped, or None."""
        if self.max_consecutive is not None and self.consecutive > self.max_consecutive:
            return f"{self.consecutive} consecutive input units went to the DLQ (limit {self.max_consecutive})"
        if self.max_ratio < 1.0 and len(self._recent) == self.window and self.ratio > self.max_ratio:
            return (f"{self.ratio:.0%} of the last {self.window} input units went to the DLQ "
                    f"(limit {self.max_ratio:.0%})")
        return None
