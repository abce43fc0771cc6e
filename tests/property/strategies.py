"""hypothesis strategies for the core's inputs: JSON values, property maps and `user_properties`
operations, and raw message values that mix valid and invalid events, envelopes and plain junk.

Names and values are drawn from small pools as well as at random, so that operations collide on
the same property and list items repeat: that is where the interesting cases are.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from worker.core.config import CoreConfig

# JSON as orjson decodes it: integers within 64 bits (wider ones arrive as floats), no NaN or infinity.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
# Values that JSON equality must keep apart although Python's == does not.
tricky_items = st.sampled_from([0, 1, 1.0, -0.0, True, False, "1", "", None, [], {}, [1], [True], {"a": 1},
                                {"a": 1.0}])


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)


json_values = st.recursive(json_scalars | tricky_items, _containers, max_leaves=8)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)

property_names = st.sampled_from(["a", "b", "list", "n", "[Experiment] f", "[Experiment] g", "$x", "$set "]) | st.text(
    max_size=5
)
property_values = json_values.filter(lambda value: value is not None)
states = st.dictionaries(property_names, property_values, max_size=4)

numeric_strings = st.sampled_from([" 3 ", "2.5", "1e3", "-4", "+1", ".5", "NaN", "inf", "-Infinity", "abc", "",
                                   "1_0", "0x1", "99999999999999999999", "1e400"])
add_operands = st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats(allow_nan=False,
                                                                                allow_infinity=False) | (
    numeric_strings | json_values
)
list_operands = st.lists(tricky_items | json_values, max_size=4) | tricky_items | json_values


def _operand_map(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(property_names, values, max_size=2)


operations = st.fixed_dictionaries(
    {},
    optional={
        "$clearAll": json_values,
        "$unset": _operand_map(json_values),
        "$set": _operand_map(json_values),
        "$setOnce": _operand_map(json_values),
        "$add": _operand_map(add_operands),
        "$append": _operand_map(list_operands),
        "$prepend": _operand_map(list_operands),
        "$preInsert": _operand_map(list_operands),
        "$postInsert": _operand_map(list_operands),
        "$remove": _operand_map(list_operands),
    },
)
plain_keys = st.dictionaries(property_names.filter(lambda name: not name.startswith("$")) | st.just("$unknown"),
                             json_values, max_size=3)
user_properties = st.builds(lambda ops, plain: {**plain, **ops}, operations, plain_keys)

# ---- raw messages ----------------------------------------------------------------------------

ids = st.sampled_from(["user-1", "user-2", "device-1", "abc", "", "null", " Unknown ", '""', "0", None, 5]) | st.text(
    max_size=7
)
event_types = st.sampled_from(["click", "$identify", "$groupidentify", "$exposure", "$impression",
                               "[Experiment] Assignment", "[Experiment] Exposure", "", " ", None, 5])
times = st.none() | st.sampled_from([True, "2026-01-01", -1, -0.5, 0, 2**63 - 1, 2**63, 2**64 - 1]) | st.integers(
    min_value=0, max_value=2**45
) | st.floats(min_value=-1, max_value=1e20)
exposure_properties = st.fixed_dictionaries(
    {},
    optional={
        "flag_key": st.sampled_from(["f", "g", "", " ", None, 5, "x" * 1030]),
        "variant": st.sampled_from(["on", "off", "", "  ", None, 1, True]),
        "experiment_key": st.sampled_from(["exp", None, 2]),
        "page": json_values,
    },
)
valid_exposure_properties = st.fixed_dictionaries(
    {"flag_key": st.sampled_from(["f", "g", "x" * 1030])},
    optional={
        "variant": st.sampled_from(["on", "off", "", "  ", None]),
        "experiment_key": st.sampled_from(["exp", None]),
        "page": json_values,
    },
)
assignment_properties = st.dictionaries(
    st.sampled_from(["f.variant", "[Experiment] f.variant", "g.variant", "g.details", "[Experiment] g.details",
                     "[Experiment] Environment Name", "x"]),
    json_values | st.sampled_from(["on", "off", " on "]),
    max_size=5,
)
# Events that pass validation (mostly), so that the processing stage sees plenty of them...
valid_events = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from(["click", "$identify", "$groupidentify", "$exposure", "$impression",
                                       "[Experiment] Assignment", "[Experiment] Exposure"]),
        "user_id": st.sampled_from(["user-1", "user-2", "user-3", "null"]),
    },
    optional={
        "device_id": st.sampled_from(["device-1", "device-2", "0"]),
        "time": st.integers(min_value=0, max_value=2**45) | st.floats(min_value=0, max_value=2**45)
        | st.sampled_from([2**63 - 1, 2**63, 1e19, 1e300]),
        "insert_id": st.sampled_from(["i-1", "i-2"]),
        "event_properties": valid_exposure_properties | assignment_properties | json_objects,
        "user_properties": user_properties,
        "$skip_user_properties_sync": st.sampled_from([True, False, "true"]),
        "platform": json_values,
    },
)
# ...and events with any field possibly wrong.
noisy_events = st.fixed_dictionaries(
    {},
    optional={
        "event_type": event_types,
        "user_id": ids,
        "device_id": ids,
        "time": times,
        "insert_id": st.sampled_from(["i-1", "i-2", None, 5]),
        "event_properties": exposure_properties | assignment_properties | json_values,
        "user_properties": user_properties | json_values,
        "$skip_user_properties_sync": st.sampled_from([True, False, "true", 1]),
        "api_key": st.text(max_size=4),
        "platform": json_values,
    },
)
events = valid_events | valid_events | noisy_events
options = st.fixed_dictionaries(
    {}, optional={"min_id_length": st.sampled_from([0, 1, 3, 5, 10, -1, True, 2.0, "2", None])}
) | json_values
envelopes = st.fixed_dictionaries(
    {"events": st.lists(events | events | json_values, max_size=4)},
    optional={"api_key": st.sampled_from(["key-a", "key-z", None, 5]), "options": options, "client": json_values},
)
message_values = events | envelopes | envelopes | json_values | st.fixed_dictionaries({"events": json_values})
headers = st.sampled_from([(), (("project_id", b"p1"),), (("project_id", b"bad id"),), (("project_id", b"\xff"),)])
configs = st.sampled_from([
    CoreConfig(),
    CoreConfig(projects={"key-a": "proj_a"}),
    CoreConfig(min_id_length=0, experiment_property_limit=2, max_message_bytes=400, max_events_per_message=3),
])
