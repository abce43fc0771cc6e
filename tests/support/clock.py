"""The tests' fixed clock: no test reads the real time to build its input. `FakeClock` is the
`Clock` a runner piece is handed in a unit test: it moves only when the test moves `now`."""

from __future__ import annotations

T0 = 1_700_000_000_000  # an ingestion time (ms) far from any day boundary


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return T0 / 1000 + self.now
