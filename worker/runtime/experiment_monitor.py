"""Experiment health in the running worker (issue 17): one `ExperimentHealth` per owned by-user
partition, turned into Prometheus series.

Its owner is the `PartitionManager`, which calls it where the partitions' stores change: `install`
when a partition's restored stores go in (counting its users from `iter_states()`), `commit` /
`rollback` with the stores, `drop` when a partition goes. The `Emitter` calls `observe` per
processed event, with the partition, the event and its `Outcome`. Event counters grow at commit,
so an aborted batch counts nothing. The gauges (users per variant, the SRM p-value) are set from
a running sum of the partitions' committed counts, when a partition comes or goes and at a commit
that moved a user: never per event, and never stale while the stream is idle. Without a flags
file every call returns at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Iterable

from worker.core.experiment_health import CUSTOM, EARLY, SWITCHES, USERS, ExperimentHealth, Key, flag_reports
from worker.core.flags import OTHER_VARIANT, Flag, Flags
from worker.core.pipeline import Outcome
from worker.core.records import UserEvent
from worker.core.srm import SRM_ALERT_P_VALUE, chi_square_critical
from worker.core.values import JsonObject
from worker.runtime.clock import Clock, SystemClock
from worker.runtime.metrics import Metrics

log = logging.getLogger(__name__)
LOG_EVERY_S = 60.0  # at most one early-exposure line per flag this often: never one per event
NO_EVIDENCE_P_VALUE = 1.0  # what a process without users shows when series cannot be removed


class ExperimentMonitor:
    def __init__(self, flags: Flags, metrics: Metrics, clock: Clock | None = None) -> None:
        self.flags, self.metrics = flags, metrics
        self.clock: Clock = clock or SystemClock()
        self.enabled = bool(flags)
        self.partitions: dict[int, ExperimentHealth] = {}
        self.total: Counter[Key] = Counter()  # the partitions' committed counts, summed
        self.logged_at: dict[tuple[str, str], float] = {}
        self.unlogged: Counter[tuple[str, str]] = Counter()
        if self.enabled:
            self.create_series()

    def create_series(self) -> None:
        """Every series of every configured flag from the start: counters at 0 (so `rate()` sees
        their first increase), the allocation, and the critical chi-square of its degrees of freedom."""
        m = self.metrics
        for flag in self.flags.flags:
            for variant, share in zip(flag.variants, flag.shares(), strict=True):
                m.experiment_allocation.labels(flag.project, flag.key, variant).set(share)
            m.srm_critical_chi_square.labels(flag.project, flag.key).set(
                chi_square_critical(SRM_ALERT_P_VALUE, len(flag.variants) - 1))
            for family in (m.variant_switches, m.custom_exposures, m.exposure_before_property):
                family.labels(flag.project, flag.key)
        self.refresh()

    def install(self, partition: int, states: Iterable[tuple[str, JsonObject]]) -> None:
        """A restored partition: its users are counted from its committed state."""
        if not self.enabled:
            return
        self.drop(partition)  # (never installed twice; if it were, its users would count twice)
        health = self.partitions[partition] = ExperimentHealth(self.flags).load_all(states)
        self.total.update(health.committed)
        self.refresh()

    def drop(self, partition: int) -> None:
        health = self.partitions.pop(partition, None)
        if health is not None:
            self.total.subtract(health.committed)
            self.refresh()

    def observe(self, partition: int, user_event: UserEvent, outcome: Outcome) -> None:
        health = self.partitions.get(partition)
        if health is not None:
            health.observe(user_event, outcome)

    def rollback(self) -> None:
        for health in self.partitions.values():
            health.rollback()

    def commit(self) -> None:
        done: Counter[Key] = Counter()
        for health in self.partitions.values():
            done.update(health.commit())
        if not done:
            return
        self.total.update(done)
        m = self.metrics
        counters = {SWITCHES: m.variant_switches, CUSTOM: m.custom_exposures, EARLY: m.exposure_before_property}
        for (project, flag, what, _), count in done.items():
            if what in counters and count:
                counters[what].labels(project, flag).inc(count)
                if what == EARLY:
                    self.unlogged[(project, flag)] += count
        if self.unlogged:
            self.log_early_exposures()
        if any(what == USERS and count for (_, _, what, _), count in done.items()):
            self.refresh()

    def log_early_exposures(self) -> None:
        """One line per flag and minute at most, naming the flag and the event type, never a user."""
        now = self.clock.monotonic()
        for (project, key), count in list(self.unlogged.items()):
            if now - self.logged_at.get((project, key), -LOG_EVERY_S) < LOG_EVERY_S:
                continue
            flag = next(f for f in self.flags.flags if (f.project, f.key) == (project, key))
            log.info("%d custom exposure(s) %r of flag %s in project %s came before the user had %r: "
                     "experiment analysis does not count them", count, flag.exposure_event, key, project,
                     flag.property)
            self.logged_at[(project, key)] = now
            del self.unlogged[(project, key)]

    def refresh(self) -> None:
        """The gauges, from the running sum: a few look-ups and one test per flag."""
        m = self.metrics
        for report in flag_reports(self.flags, [self.total]):
            flag = report.flag
            for variant, users in zip(flag.variants, report.users, strict=True):
                m.experiment_users.labels(flag.project, flag.key, variant).set(users)
            m.experiment_users.labels(flag.project, flag.key, OTHER_VARIANT).set(report.other_users)
            if report.test is None:  # nobody to test: no p-value rather than a made-up one
                self.clear_p_value(flag)
            else:
                m.srm_p_value.labels(flag.project, flag.key).set(report.test.p_value)

    def clear_p_value(self, flag: Flag) -> None:
        """Merged across processes (`run --processes N`) a series cannot be removed: the process
        shows p = 1, no evidence of a mismatch, which the merge (the lowest) passes over."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self.metrics.srm_p_value.labels(flag.project, flag.key).set(NO_EVIDENCE_P_VALUE)
            return
        with contextlib.suppress(KeyError):
            self.metrics.srm_p_value.remove(flag.project, flag.key)
