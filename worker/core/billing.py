"""Billing (SPEC §7): which emitted events are billable, and monthly tracked users (users with at
least one billable event in the UTC calendar month of ingestion).
"""

from __future__ import annotations

from typing import Final

NOT_BILLABLE: Final = frozenset({"[Experiment] Exposure", "[Experiment] Assignment", "[Experiment] Impression"})
DAY_MS: Final = 86_400_000


def is_billable(event_type: str) -> bool:
    """For the emitted (renamed) event type."""
    return event_type not in NOT_BILLABLE


def utc_month(ms: int) -> int:
    """The UTC calendar month of a Unix time in ms, as year * 12 + month - 1 (civil-from-days)."""
    days = ms // DAY_MS + 719_468  # days since 0000-03-01
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153  # 0 = March
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year * 12 + month - 1


class MonthlyTrackedUsers:
    """Users with a billable event in the current UTC month of ingestion, per project.

    A new month starts the count again; a late event of an earlier month does not count."""

    __slots__ = ("month", "users")

    def __init__(self) -> None:
        self.month = -1
        self.users: dict[str, set[str]] = {}

    def track(self, project: str, user_key: str, ingested_at: int) -> int | None:
        """Count a billable event; returns the project's new count when it grew, else None."""
        month = utc_month(ingested_at)
        if month > self.month:
            self.month = month
            self.users.clear()
        elif month < self.month:
            return None
        users = self.users.get(project)
        if users is None:
            users = self.users[project] = set()
        if user_key in users:
            return None
        users.add(user_key)
        return len(users)
