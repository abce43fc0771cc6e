"""Experiment health per partition (worker/core/experiment_health.py), through the pure pipeline:
users per variant follow the state, switches and early custom exposures are counted once per
event, and what does not touch the state (skip-sync, duplicates, errors) moves nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from tests.support.clock import T0
from worker.core.config import CoreConfig
from worker.core.experiment_health import CUSTOM, EARLY, SWITCHES, USERS, ExperimentHealth, flag_reports
from worker.core.flags import OTHER_VARIANT, Flags, parse_flags
from worker.core.pipeline import Pipeline
from worker.core.records import Headers, RawMessage
from worker.core.stores import PartitionStores

FLAGS = parse_flags({
    "default": {
        "checkout": {"allocation": {"control": 50, "treatment": 50}, "exposure_event": "Checkout Viewed"},
        "pricing": {"allocation": {"a": 1, "b": 1, "c": 1}},
    },
    "other": {"checkout": {"allocation": {"control": 1, "treatment": 1}, "exposure_event": "Checkout Viewed"}},
})


class Watched:
    """The core pipeline over one partition's stores, every processed event observed, as the
    runner's emitter does. `send` is a batch of its own, committed; `feed` leaves it open."""

    def __init__(self, flags: Flags = FLAGS) -> None:
        self.pipeline, self.stores = Pipeline(CoreConfig()), PartitionStores()
        self.health = ExperimentHealth(flags)
        self.events: list[dict[str, Any]] = []
        self.offset = 0

    def feed(self, value: Any, headers: Headers = ()) -> None:
        message = RawMessage("events.raw", 0, self.offset, T0 + self.offset, orjson.dumps(value), b"key", headers)
        self.offset += 1
        for user_event in self.pipeline.split(message).events:
            outcome = self.pipeline.process(user_event, self.stores)
            self.health.observe(user_event, outcome)
            self.events += [outcome.event] if outcome.event is not None else []

    def send(self, *events: dict[str, Any], user: str = "user-1") -> None:
        self.feed({"api_key": "k", "events": [{"user_id": user, **event} for event in events]})
        self.commit()

    def commit(self) -> None:
        self.stores.commit()
        self.pipeline.registry.commit()
        self.health.commit()

    def rollback(self) -> None:
        self.stores.rollback()
        self.pipeline.registry.rollback()
        self.health.rollback()

    def counts(self, project: str = "default", flag: str = "checkout") -> dict[str, int]:
        return {(what if what != USERS else variant): count for (p, f, what, variant), count
                in self.health.committed.items() if (p, f) == (project, flag) and count}


def exposure(variant: str | None, flag: str = "checkout") -> dict[str, Any]:
    return {"event_type": "$exposure", "event_properties": {"flag_key": flag, "variant": variant}}


def custom(**fields: Any) -> dict[str, Any]:
    return {"event_type": "Checkout Viewed", **fields}


@pytest.fixture
def watched() -> Watched:
    return Watched()


def test_users_follow_the_variant_and_a_move_is_a_switch(watched: Watched) -> None:
    watched.send(exposure("control"))
    assert watched.counts() == {"control": 1}
    watched.send(exposure("control"))  # the same variant again: no change, no switch
    watched.send(exposure("treatment"))
    assert watched.counts() == {"treatment": 1, SWITCHES: 1}
    watched.send(exposure(None))  # leaves the experiment: out, but not a switch
    assert watched.counts() == {SWITCHES: 1}
    watched.send(exposure("treatment", flag="pricing"), exposure("treatment"))  # back in: not a switch either
    assert watched.counts() == {"treatment": 1, SWITCHES: 1}
    watched.send(exposure(None))
    watched.send(exposure("control"), user="user-2")
    watched.send(exposure("control"), user="user-3")
    assert watched.counts() == {"control": 2, SWITCHES: 1}


def test_assignments_set_and_unset_and_unallocated_variants_are_other(watched: Watched) -> None:
    assignment = {"event_type": "[Experiment] Assignment", "event_properties": {},
                  "user_properties": {"$set": {"[Experiment] checkout": "off", "[Experiment] pricing": "b",
                                               "[Experiment] unconfigured": "x"}}}
    watched.send(assignment)
    assert watched.counts() == {OTHER_VARIANT: 1}
    assert watched.counts(flag="pricing") == {"b": 1}
    assert {flag for _, flag, _, _ in watched.health.committed} == {"checkout", "pricing"}  # the file bounds them
    # (its own insert_id: an assignment's derived one would make it a duplicate of the first)
    watched.send({**assignment, "insert_id": "a-2", "user_properties": {"$unset": {"[Experiment] pricing": "-"}}})
    assert watched.counts(flag="pricing") == {}
    watched.send({"event_type": "e", "user_properties": {"$clearAll": "-"}})
    assert watched.counts() == {}


def test_a_custom_exposure_without_the_property_is_early(watched: Watched) -> None:
    watched.send(custom())
    assert watched.counts() == {CUSTOM: 1, EARLY: 1}
    watched.send(exposure("control"), custom())
    assert watched.counts() == {"control": 1, CUSTOM: 2, EARLY: 1}
    assert len(watched.events) == 3  # every custom exposure is still emitted, as always


def test_the_event_that_carries_its_own_experiment_property_is_not_early(watched: Watched) -> None:
    # Analysis reads the property on the emitted event, and the event's own $set is on it.
    watched.send(custom(user_properties={"$set": {"[Experiment] checkout": "treatment"}}))
    assert watched.counts() == {"treatment": 1, CUSTOM: 1}
    assert watched.events[-1]["user_properties"] == {"[Experiment] checkout": "treatment"}
    # ...and one that unsets it goes out without it: that one does not count in analysis.
    watched.send(custom(user_properties={"$unset": {"[Experiment] checkout": "-"}}))
    assert watched.counts() == {CUSTOM: 2, EARLY: 1}


def test_custom_exposures_count_only_in_their_own_project(watched: Watched) -> None:
    watched.send({"event_type": "Checkout Viewed", "user_id": "user-9"})  # project default
    watched.feed({"event_type": "Checkout Viewed", "user_id": "user-9"}, headers=(("project_id", b"other"),))
    watched.feed({"event_type": "Checkout Viewed", "user_id": "user-9"}, headers=(("project_id", b"elsewhere"),))
    watched.commit()
    assert watched.counts() == {CUSTOM: 1, EARLY: 1}
    assert watched.counts(project="other") == {CUSTOM: 1, EARLY: 1}


def test_what_does_not_touch_the_state_moves_nothing(watched: Watched) -> None:
    watched.send(exposure("control"))
    before = Counter(watched.health.committed)
    skip = {"$skip_user_properties_sync": True}
    watched.send({**exposure("treatment"), **skip}, custom(**skip))  # reads and writes no state
    watched.send({**exposure("treatment"), "insert_id": "i-1"})
    watched.send({**exposure("control"), "insert_id": "i-1"})  # a duplicate: dropped
    assert watched.counts() == {"treatment": 1, SWITCHES: 1}
    assert before[("default", "checkout", USERS, "control")] == 1


def test_rollback_drops_the_open_batch_and_commit_returns_it(watched: Watched) -> None:
    watched.send(exposure("control"))
    watched.feed({"user_id": "user-1", **exposure("treatment")})  # observed, not committed
    watched.rollback()
    assert watched.counts() == {"control": 1}
    watched.feed({"user_id": "user-1", **custom()})
    done = watched.health.commit()
    assert done == Counter({("default", "checkout", CUSTOM, ""): 1})
    assert watched.health.commit() == Counter()


def test_load_counts_a_restored_state() -> None:
    health = ExperimentHealth(FLAGS)
    for key, properties in (("default/u:1", {"[Experiment] checkout": "control", "[Experiment] pricing": "c"}),
                            ("default/d:2", {"[Experiment] checkout": "control", "plan": "pro"}),
                            ("default/u:3", {"[Experiment] checkout": 7}),
                            ("other/u:1", {"[Experiment] checkout": "treatment"}),
                            ("unknown/u:1", {"[Experiment] checkout": "treatment"})):
        health.load(key, properties)
    assert health.committed == Counter({
        ("default", "checkout", USERS, "control"): 2, ("default", "checkout", USERS, OTHER_VARIANT): 1,
        ("default", "pricing", USERS, "c"): 1, ("other", "checkout", USERS, "treatment"): 1})
    assert health.pending == Counter()


def test_reports_sum_partitions_and_test_the_allocated_variants() -> None:
    first, second = ExperimentHealth(FLAGS), ExperimentHealth(FLAGS)
    for i in range(600):
        (first if i % 2 else second).load(f"default/u:{i}", {"[Experiment] checkout": "control"})
    for i in range(400):
        first.load(f"default/u:t{i}", {"[Experiment] checkout": "treatment"})
    first.load("default/u:x", {"[Experiment] checkout": "holdout"})
    first.committed[("default", "checkout", EARLY, "")] += 3
    report = flag_reports(FLAGS, [first.committed, second.committed])
    checkout, pricing, other = report
    assert (checkout.users, checkout.other_users, checkout.early_exposures) == ((600, 400), 1, 3)
    assert checkout.test is not None and checkout.test.users == 1000
    assert checkout.test.p_value == pytest.approx(2.54e-10, rel=2e-3)  # 600/400 on 50/50, the holdout aside
    assert pricing.users == (0, 0, 0) and pricing.test is None
    assert (other.flag.project, other.test) == ("other", None)
