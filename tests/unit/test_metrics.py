"""The metric names are an interface (dashboards, alerts, SREs' queries): this pins them.

Adding, removing or renaming a metric, or changing its labels, must update `EXPECTED` here and,
where they use it, deploy/grafana/ and deploy/prometheus/.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.runtime.metrics import OTHER, Metrics

# name as scraped {labels}: one line per family
EXPECTED = """
experiment_worker_messages_in_total{topic}
experiment_worker_records_out_total{topic}
experiment_worker_dlq_records_total{reason}
experiment_worker_dedupe_dropped_total{}
experiment_worker_unset_exposures_total{}
experiment_worker_experiment_property_limit_dropped_total{project}
experiment_worker_add_ignored_total{}
experiment_worker_billable_events_total{project}
experiment_worker_exposures_total{project,flag,variant}
experiment_worker_monthly_tracked_users{project}
experiment_worker_transactions_total{outcome}
experiment_worker_commit_seconds{}
experiment_worker_processing_seconds{}
experiment_worker_rebalances_total{kind}
experiment_worker_restore_records_total{topic}
experiment_worker_store_rebuilds_total{reason}
experiment_worker_restore_seconds{}
experiment_worker_restore_target_records{partition}
experiment_worker_restore_done_records{partition}
experiment_worker_restoring_partitions{}
experiment_worker_users_in_state{partition}
experiment_worker_consumer_lag{topic,partition}
experiment_worker_last_commit_timestamp_seconds{}
experiment_worker_loop_timestamp_seconds{}
experiment_worker_ready{}
experiment_worker_dlq_ratio{}
experiment_worker_experiment_users{project,flag,variant}
experiment_worker_experiment_allocation{project,flag,variant}
experiment_worker_srm_p_value{project,flag}
experiment_worker_srm_critical_chi_square{project,flag}
experiment_worker_variant_switches_total{project,flag}
experiment_worker_custom_exposures_total{project,flag}
experiment_worker_exposure_before_property_total{project,flag}
experiment_worker_abandoned_calls_total{call}
experiment_worker_shortcut_events_total{}
experiment_worker_shortcut_partitions{}
"""


def defined(metrics: Metrics) -> set[str]:
    return {f"{f.name}{{{','.join(f.labels)}}}" for f in metrics.catalog.values()}


def test_metric_names_and_labels_are_pinned() -> None:
    expected = set(EXPECTED.split())
    got = defined(Metrics(CollectorRegistry()))
    assert got == expected, f"added: {sorted(got - expected)}; removed or renamed: {sorted(expected - got)}"


def test_the_catalog_covers_every_family_in_the_registry() -> None:
    """A metric created beside the catalog (not through Metrics' helpers) would escape the pin."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    registered = {family.name for family in registry.collect()}
    catalogued = {family.name.removesuffix("_total") for family in metrics.catalog.values()}
    assert registered == catalogued


def test_series_names_match_a_real_scrape() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for family in metrics.catalog.values():  # give every labelled family one child, so it shows samples
        if family.labels:
            family.collector.labels(*("x" for _ in family.labels))
    scraped = {sample.name for family in text_string_to_metric_families(generate_latest(registry).decode())
               for sample in family.samples}
    assert scraped == metrics.series_names()


def test_no_label_names_a_user_or_device() -> None:
    labels = {label for family in Metrics(CollectorRegistry()).catalog.values() for label in family.labels}
    assert not labels & {"user", "user_id", "device", "device_id", "user_key", "insert_id"}


def exposure_samples(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["project"], s.labels["flag"], s.labels["variant"]): s.value
        for family in registry.collect() if family.name == "experiment_worker_exposures"
        for s in family.samples if s.name.endswith("_total")
    }


def test_exposure_series_beyond_the_bound_are_counted_under_other() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_exposure_series=3)
    for flag in ("f1", "f2", "f3", "f4", "f5"):
        metrics.count_exposure("p", flag, "on")
    metrics.count_exposure("p", "f1", "on")  # a pair admitted before the bound keeps its own series
    metrics.count_exposure("p", "f1", "off")  # a new variant of an admitted flag is a new pair: _other
    assert exposure_samples(registry) == {
        ("p", "f1", "on"): 2.0, ("p", "f2", "on"): 1.0, ("p", "f3", "on"): 1.0, ("p", OTHER, OTHER): 3.0,
    }


def test_exposure_series_count_stays_bounded() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_exposure_series=10)
    for i in range(1000):
        metrics.count_exposure("p", f"flag-{i}", f"variant-{i % 7}")
    samples = exposure_samples(registry)
    assert len(samples) == 11  # the bound, plus the one _other series
    assert sum(samples.values()) == 1000
    assert samples[("p", OTHER, OTHER)] == 990
