"""Every Prometheus metric of the worker, created once on a registry that is passed in.

Labels are low-cardinality: topic, partition, reason, outcome, project. Never a user or device id.
The experiment-health families are labelled by the flags of the flags file only.
Exposure counts carry flag and variant labels, bounded by `max_exposure_series` (further
flag/variant pairs are counted under flag="_other") so a sample-ratio mismatch can be watched
without letting a producer blow up the series count.

Under `run --processes N` the processes' samples are merged (prometheus-client's multiprocess
mode): counters and histograms add up, and each gauge says how it merges.

`Metrics.catalog` names every family as Prometheus scrapes it, with its labels: the unit test
that pins the names, the Grafana dashboard check and the alert-rule check all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "experiment_worker"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RESTORE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OTHER = "_other"
C = TypeVar("C", Counter, Gauge, Histogram)
# The samples a scrape shows for a family, by type (prometheus_client's exposition; a
# counter's family name is its name without `_total`).
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum", "_created"),
}


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family as scraped: counters are named with their `_total`."""

    name: str
    type: str
    labels: tuple[str, ...]
    collector: Counter | Gauge | Histogram = field(compare=False, repr=False)

    def series_names(self) -> tuple[str, ...]:
        base = self.name.removesuffix("_total") if self.type == "counter" else self.name
        return tuple(base + suffix for suffix in SAMPLE_SUFFIXES[self.type])


class Metrics:
    def __init__(self, registry: CollectorRegistry, max_exposure_series: int = 500) -> None:
        self.registry = registry
        self.catalog: dict[str, Family] = {}
        self._children: dict[tuple[Counter, tuple[str, ...]], Counter] = {}  # add_tally's
        counter, gauge = self._counter, self._gauge
        self.messages_in = counter("messages_in_total", "Kafka messages consumed", ("topic",))
        self.records_out = counter("records_out_total", "Records written, by output topic, counted at commit",
                                   ("topic",))
        self.dlq_records = counter("dlq_records_total", "Units sent to the DLQ", ("reason",))
        self.dedupe_dropped = counter("dedupe_dropped_total", "Events dropped as duplicate insert_ids")
        self.unset_exposures = counter("unset_exposures_total", "Exposures that unset a flag, not persisted")
        self.limit_dropped = counter(
            "experiment_property_limit_dropped_total", "Operations dropped by the experiment-property limit",
            ("project",),
        )
        self.add_ignored = counter("add_ignored_total", "$add operations ignored (non-number)")
        self.billable_events = counter("billable_events_total", "Billable events emitted", ("project",))
        self.monthly_tracked_users = gauge(
            "monthly_tracked_users",
            "Users with a billable event this UTC month (since start, per instance; past 256 an estimate, 0.8% error)",
            ("project",), mode="livesum",  # each user lives on one partition, so processes sum exactly
        )
        self._runtime_families()
        self._flag_families(max_exposure_series)

    def _runtime_families(self) -> None:
        """The shell's own: transactions, commits, rebalances, restores, lag and health."""
        counter, gauge, histogram = self._counter, self._gauge, self._histogram
        self.transactions = counter("transactions_total", "Transactions (or offset commits)", ("outcome",))
        self.commit_seconds = histogram("commit_seconds", "Time to commit a batch", LATENCY_BUCKETS)
        self.batch_seconds = histogram("processing_seconds", "Time to process one consumed batch", LATENCY_BUCKETS)
        self.rebalances = counter("rebalances_total", "Rebalance callbacks", ("kind",))
        self.restore_records = counter("restore_records_total", "Changelog records read during restore", ("topic",))
        self.store_rebuilds = counter("store_rebuilds_total", "Local stores thrown away and rebuilt from the "
                                      "changelogs, by why: unreadable, beyond_end, below_low", ("reason",))
        self.restore_seconds = histogram("restore_seconds", "Time to restore one partition", RESTORE_BUCKETS)
        self.restore_target_records = gauge("restore_target_records", "Changelog records a restore under way "
                                            "reads, about (markers included)", ("partition",))
        self.restore_done_records = gauge("restore_done_records", "Changelog records a restore under way has read",
                                          ("partition",))
        self.restoring_partitions = gauge("restoring_partitions", "Partitions whose restore is under way",
                                          mode="livesum")
        self.users_in_state = gauge("users_in_state", "Users in the partition's store", ("partition",), mode="livesum")
        self.consumer_lag = gauge("consumer_lag", "Messages behind the end of the partition", ("topic", "partition"),
                                  mode="livesum")
        self.last_commit = gauge("last_commit_timestamp_seconds", "Unix time of the last successful commit",
                                 mode="livemax")
        self.loop_timestamp = gauge("loop_timestamp_seconds", "Unix time the processing loop last turned (the "
                                    "oldest of the processes)", mode="livemin")
        self.ready = gauge("ready", "1 when every assigned partition is restored (of every process)", mode="livemin")
        self.dlq_ratio = gauge("dlq_ratio", "Share of the recent input window that went to the DLQ", mode="livemax")
        self.abandoned_calls = counter("abandoned_calls_total", "librdkafka calls given up on as hung, each "
                                       "leaving a blocked thread and its client behind", ("call",))
        self.shortcut_events = counter("shortcut_events_total", "Events processed where they were split, their "
                                       "by-user partition being this process's (the by-user shortcut)")
        self.shortcut_partitions = gauge("shortcut_partitions", "By-user partitions whose events from this "
                                         "process's raw partitions skip the by-user topic", mode="livesum")

    def _flag_families(self, max_exposure_series: int) -> None:
        """The families labelled by flag, each with a bound on its series. Exposures: by
        `max_exposure_series` (see `count_exposure`). Experiment health (issue 17): by the flags
        of the flags file. A user lives on one partition, so users per variant sum exactly over
        the processes of `run --processes N`; the allocation and the critical chi-square are the
        same in every process; a process's own p-value tests its part of the users only, so the
        merge shows the lowest (a hint, not the instance's test)."""
        counter, gauge = self._counter, self._gauge
        self.exposures = counter("exposures_total", "Exposures emitted", ("project", "flag", "variant"))
        self._exposure_series: set[tuple[str, str, str]] = set()
        self._max_exposure_series = max_exposure_series
        flag_labels, variant_labels = ("project", "flag"), ("project", "flag", "variant")
        self.experiment_users = gauge(
            "experiment_users", "Users whose state holds the variant, over this instance's partitions", variant_labels,
            mode="livesum")
        self.experiment_allocation = gauge(
            "experiment_allocation", "The variant's share of the flag's allocation (flags file)", variant_labels,
            mode="livemax")
        self.srm_p_value = gauge(
            "srm_p_value", "Sample-ratio-mismatch p-value over this instance's partitions (of every process: "
            "the lowest)", flag_labels, mode="livemin")
        self.srm_critical_chi_square = gauge(
            "srm_critical_chi_square", "Chi-square above which the SRM p-value is below 0.001", flag_labels,
            mode="livemax")
        self.variant_switches = counter(
            "variant_switches_total", "Users whose variant changed to another one", flag_labels)
        self.custom_exposures = counter(
            "custom_exposures_total", "Events of a flag's custom exposure type, counted at commit", flag_labels)
        self.exposure_before_property = counter(
            "exposure_before_property_total", "Custom exposures whose user had no variant of the flag yet", flag_labels)

    def count_exposure(self, project: str, flag: str, variant: str, amount: int = 1) -> None:
        self.exposures.labels(*self.exposure_labels(project, flag, variant)).inc(amount)

    def exposure_labels(self, project: str, flag: str, variant: str) -> tuple[str, str, str]:
        """The series an exposure counts in: its own, or (project, _other, _other) past the bound."""
        labels = (project, flag, variant)
        if labels not in self._exposure_series:
            if len(self._exposure_series) >= self._max_exposure_series:
                labels = (project, OTHER, OTHER)
            self._exposure_series.add(labels)
        return labels

    def count_abandoned(self, call: str) -> None:
        self.abandoned_calls.labels(call).inc()

    def add_tally(self, tally: dict[tuple[Counter, tuple[str, ...]], int]) -> None:
        """Add a batch's counts, gathered per (counter, labels) while the batch ran, once it committed:
        counters count committed work, and the hot path takes no metric lock per event. Each
        series' child is looked up once (labels() takes a lock and builds a key each time)."""
        children = self._children
        for key, amount in tally.items():
            child = children.get(key)
            if child is None:
                counter, labels = key
                if counter is self.exposures:
                    labels = self.exposure_labels(*labels)
                child = children[key] = counter.labels(*labels) if labels else counter
            child.inc(amount)
        tally.clear()

    def series_names(self) -> frozenset[str]:
        """Every sample name a scrape can show: what a PromQL expression may refer to."""
        return frozenset(name for family in self.catalog.values() for name in family.series_names())

    # ---- one place that names families ----------------------------------------------------------
    def _name(self, name: str) -> str:
        full = f"{PREFIX}_{name}"
        if full in self.catalog:
            raise ValueError(f"metric {full} defined twice")
        return full

    def _add(self, collector: C, kind: str, labels: tuple[str, ...], name: str) -> C:
        self.catalog[name] = Family(name, kind, labels, collector)
        return collector

    def _counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        full = self._name(name)
        return self._add(Counter(full, doc, labels, registry=self.registry), "counter", labels, full)

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...] = (), mode: str = "livesum") -> Gauge:
        """`mode`: how `run --processes N` merges the processes' values (prometheus-client's
        multiprocess mode; one process ignores it)."""
        full = self._name(name)
        gauge = Gauge(full, doc, labels, registry=self.registry, multiprocess_mode=mode)  # type: ignore[arg-type]
        return self._add(gauge, "gauge", labels, full)

    def _histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        full = self._name(name)
        return self._add(Histogram(full, doc, registry=self.registry, buckets=buckets), "histogram", (), full)
