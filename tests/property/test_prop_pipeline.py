"""Properties of the whole pure pipeline (split + process, SPEC §2–§8) over short streams of mixed
messages for a few users: it never raises, never stores a null property, every output can be
encoded, and each delta takes the user's state before the event to the state after it."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.property.strategies import configs, headers, message_values
from tests.support.clock import T0
from worker.core.config import CoreConfig
from worker.core.pipeline import Pipeline
from worker.core.records import RawMessage
from worker.core.stores import PartitionStores
from worker.core.values import same_value

WEEK_MS = 7 * 86_400_000
# Each message: a value, its headers, and the step of the ingestion clock before it.
streams = st.lists(st.tuples(message_values, headers, st.sampled_from([0, 1, WEEK_MS - 1, WEEK_MS])), max_size=8)


def apply_changes(old: dict[str, Any], changes: list[dict[str, Any]]) -> dict[str, Any]:
    rebuilt = dict(old)
    for change in changes:
        if change["new"] is None:
            rebuilt.pop(change["property"])
        else:
            rebuilt[change["property"]] = change["new"]
    return rebuilt


@settings(max_examples=200, deadline=None)
@given(streams, configs)
def test_the_pipeline_never_raises_and_deltas_explain_the_state(stream: list[Any], config: CoreConfig) -> None:
    pipeline, stores = Pipeline(config), PartitionStores()
    registry = pipeline.registry
    now = T0
    for offset, (value, message_headers, step) in enumerate(stream):
        now += step
        message = RawMessage("events.raw", 0, offset, now, orjson.dumps(value), None, message_headers)
        split = pipeline.split(message)
        for user_event in split.events:
            before = stores.state.get(user_event.user_key) or {}
            outcome = pipeline.process_event(user_event, stores)  # unguarded: any exception fails
            after = stores.state.get(user_event.user_key) or {}
            assert all(value is not None for value in after.values())
            if outcome.delta is None:
                assert same_value(before, after)
            else:
                assert outcome.delta["changes"] and same_value(apply_changes(before, outcome.delta["changes"]), after)
            for record in (outcome.event, outcome.delta):
                if record is not None:
                    orjson.dumps(record)  # every output is encodable JSON
            if outcome.event is not None:
                assert "api_key" not in outcome.event and "$skip_user_properties_sync" not in outcome.event
                assert all(value is not None for value in outcome.event["user_properties"].values())
            assert not outcome.duplicate or (outcome.event, outcome.delta) == (None, None)
        for record in split.rejected:
            orjson.dumps(record.to_json())
        for key, state in stores.state_records():  # the batch's state records: each user's last value
            assert state["user_key"] == key and same_value(state["user_properties"], stores.state.get(key))
            orjson.dumps(state)
        stores.commit()
        registry.commit()
    for project in {key.partition("/")[0] for key, _ in stores.state.items()}:
        assert registry.count(project) <= config.experiment_property_limit
