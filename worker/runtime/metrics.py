"""Every Prometheus metric of the worker, created once on a registry that is passed in.

Labels are low-cardinality: topic, partition, reason, outcome, project. Never a user or device id.
Exposure counts carry flag and variant labels, bounded by `max_exposure_series` (further
flag/variant pairs are counted under flag="_other") so a sample-ratio mismatch can be watched
without letting a producer blow up the series count.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "experiment_worker"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OTHER = "_other"


class Metrics:
    def __init__(self, registry: CollectorRegistry, max_exposure_series: int = 500) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=registry)

        self.registry = registry
        self.messages_in = counter("messages_in_total", "Kafka messages consumed", ("topic",))
        self.records_out = counter("records_out_total", "Records produced, by output topic", ("topic",))
        self.dlq_records = counter("dlq_records_total", "Units sent to the DLQ", ("reason",))
        self.dedupe_dropped = counter("dedupe_dropped_total", "Events dropped as duplicate insert_ids")
        self.unset_exposures = counter("unset_exposures_total", "Exposures that unset a flag, not persisted")
        self.limit_dropped = counter(
            "experiment_property_limit_dropped_total", "Operations dropped by the experiment-property limit",
            ("project",),
        )
        self.add_ignored = counter("add_ignored_total", "$add operations ignored (non-number)")
        self.billable_events = counter("billable_events_total", "Billable events emitted", ("project",))
        self.exposures = counter("exposures_total", "Exposures emitted", ("project", "flag", "variant"))
        self.monthly_tracked_users = gauge(
            "monthly_tracked_users", "Users with a billable event this UTC month (since start, per instance)",
            ("project",),
        )
        self.transactions = counter("transactions_total", "Transactions (or offset commits)", ("outcome",))
        self.commit_seconds = Histogram(
            f"{PREFIX}_commit_seconds", "Time to commit a batch", registry=registry, buckets=LATENCY_BUCKETS
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_processing_seconds", "Time to process one consumed batch", registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.rebalances = counter("rebalances_total", "Rebalance callbacks", ("kind",))
        self.restore_records = counter("restore_records_total", "Changelog records read during restore", ("topic",))
        self.restore_seconds = Histogram(
            f"{PREFIX}_restore_seconds", "Time to restore one partition", registry=registry,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.restoring_partitions = gauge("restoring_partitions", "Partitions whose restore is under way")
        self.users_in_state = gauge("users_in_state", "Users held in memory", ("partition",))
        self.consumer_lag = gauge("consumer_lag", "Messages behind the end of the partition", ("topic", "partition"))
        self.last_commit = gauge("last_commit_timestamp_seconds", "Unix time of the last successful commit")
        self.ready = gauge("ready", "1 when every assigned partition is restored")
        self.dlq_ratio = gauge("dlq_ratio", "Share of the recent input window that went to the DLQ")
        self._exposure_series: set[tuple[str, str, str]] = set()
        self._max_exposure_series = max_exposure_series

    def count_exposure(self, project: str, flag: str, variant: str) -> None:
        labels = (project, flag, variant)
        if labels not in self._exposure_series:
            if len(self._exposure_series) >= self._max_exposure_series:
                labels = (project, OTHER, OTHER)
            self._exposure_series.add(labels)
        self.exposures.labels(*labels).inc()
