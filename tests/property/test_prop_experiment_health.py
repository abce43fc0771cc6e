"""The invariant that lets experiment-health counts survive restarts and rebalances: the users
per variant counted event by event (with batches committed or rolled back at random, as the
runner does on an abort) always equal the users per variant counted from the state alone."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.clock import T0
from worker.core.config import CoreConfig
from worker.core.experiment_health import USERS, ExperimentHealth, Key
from worker.core.flags import parse_flags
from worker.core.pipeline import Pipeline
from worker.core.records import RawMessage
from worker.core.stores import PartitionStores

FLAGS = parse_flags({"default": {
    "f": {"allocation": {"control": 1, "treatment": 1}, "exposure_event": "viewed"},
    "g": {"allocation": {"a": 1, "b": 2}},
}})
variants = st.sampled_from(["control", "treatment", "a", "b", "off", "", None])
flag_keys = st.sampled_from(["f", "g", "h"])
properties = st.sampled_from(["[Experiment] f", "[Experiment] g", "[Experiment] h", "plan"])
events = st.one_of(
    st.builds(lambda flag, variant: {"event_type": "$exposure", "event_properties": {"flag_key": flag,
                                                                                     "variant": variant}},
              flag_keys, variants),
    st.builds(lambda name, value: {"event_type": "[Experiment] Assignment", "user_properties": {"$set": {name: value}}},
              properties, variants),
    st.builds(lambda name, value: {"event_type": "viewed", "user_properties": {"$set": {name: value}}},
              properties, variants),
    st.builds(lambda name: {"event_type": "e", "user_properties": {"$unset": {name: "-"}}}, properties),
    st.just({"event_type": "e", "user_properties": {"$clearAll": "-"}}),
    st.just({"event_type": "viewed", "$skip_user_properties_sync": True}),
)
users = st.sampled_from(["user-1", "user-2", "user-3"])
insert_ids = st.one_of(st.none(), st.sampled_from(["i-1", "i-2"]))
batches = st.lists(st.tuples(st.lists(st.tuples(users, events, insert_ids), max_size=6), st.booleans()), max_size=8)


def users_only(counts: Counter[Key]) -> Counter[Key]:
    return Counter({key: count for key, count in counts.items() if key[2] == USERS and count})


@settings(max_examples=200, deadline=None)
@given(batches)
def test_counted_by_event_equals_counted_from_the_state(stream: list[tuple[list[Any], bool]]) -> None:
    pipeline, stores = Pipeline(CoreConfig()), PartitionStores()
    health = ExperimentHealth(FLAGS)
    for offset, (batch, commit) in enumerate(stream):
        for user, event, insert_id in batch:
            value = {"user_id": user, **event, **({"insert_id": insert_id} if insert_id else {})}
            message = RawMessage("events.raw", 0, offset, T0 + offset, orjson.dumps(value))
            for user_event in pipeline.split(message).events:
                health.observe(user_event, pipeline.process(user_event, stores))
        for store in (stores, pipeline.registry, health):
            if commit:
                store.commit()
            else:
                store.rollback()
    recounted = ExperimentHealth(FLAGS).load_all(stores.iter_states())
    assert users_only(health.committed) == users_only(recounted.committed)
    assert all(count >= 0 for count in health.committed.values())
