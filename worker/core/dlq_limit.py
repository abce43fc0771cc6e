"""The DLQ limit of SPEC §10, arroyo-style: a few bad units are normal, but when most of the recent
input goes to the DLQ the producer or the deploy is broken, and stopping is kinder than filling
the DLQ with everything.
"""

from __future__ import annotations

from collections import deque


class DlqLimit:
    """Tracks the last `window` units (events, or whole rejected messages) of input."""

    def __init__(self, max_ratio: float, window: int) -> None:
        self.max_ratio, self.window = max_ratio, window
        self._recent: deque[bool] = deque(maxlen=window)
        self._invalid = 0

    def record(self, valid: int, invalid: int) -> None:
        for is_invalid in (False,) * valid + (True,) * invalid:
            if len(self._recent) == self.window and self._recent[0]:
                self._invalid -= 1
            self._recent.append(is_invalid)
            self._invalid += is_invalid

    @property
    def ratio(self) -> float:
        return self._invalid / len(self._recent) if self._recent else 0.0

    def exceeded(self) -> bool:
        """True once a full window holds more than `max_ratio` invalid units."""
        return self.max_ratio < 1.0 and len(self._recent) == self.window and self.ratio > self.max_ratio
