"""NameScan: which JSON state records a restore decodes to find the experiment names they hold."""

from __future__ import annotations

import json

import orjson
from hypothesis import given
from hypothesis import strategies as st

from worker.runtime.experiment_names import SCAN_RECORDS, TRIE_DEPTH, NameScan


def record(properties: dict[str, object]) -> bytes:
    return orjson.dumps({"user_key": "p/u:x", "user_properties": properties, "updated_at": 1})


def decoded_names(scan: NameScan, project: str, records: list[bytes]) -> tuple[list[bytes], set[str]]:
    """What a restore does: decode each candidate and learn its experiment names."""
    decoded: list[bytes] = []
    names: set[str] = set()
    for index in scan.candidates(project, records):
        value = records[index]
        decoded.append(value)
        for name in orjson.loads(value)["user_properties"]:
            if name.startswith("[Experiment] "):
                scan.learn(project, name)
                names.add(name)
    return decoded, names


def test_each_new_name_costs_one_decode_and_known_names_none() -> None:
    scan = NameScan()
    records = [record({"plan": "pro", f"[Experiment] flag-{n % 3}": "on"}) for n in range(30)]
    decoded, names = decoded_names(scan, "p", records)
    assert decoded == records[:3]
    assert names == {"[Experiment] flag-0", "[Experiment] flag-1", "[Experiment] flag-2"}
    again, _ = decoded_names(scan, "p", records)  # the next batch: the compiled pattern knows them
    assert again == []
    newcomer = record({"[Experiment] flag-0": "on", "[Experiment] flag-9": "off"})
    decoded, names = decoded_names(scan, "p", [*records, newcomer, newcomer])
    assert decoded == [newcomer]


def test_names_are_known_per_project() -> None:
    scan = NameScan()
    value = record({"[Experiment] a": 1})
    assert decoded_names(scan, "p", [value])[0] == [value]
    assert decoded_names(scan, "q", [value])[0] == [value]
    assert decoded_names(scan, "p", [value])[0] == []


def test_a_name_that_extends_a_known_one_is_not_taken_for_it() -> None:
    scan = NameScan()
    scan.learn("p", "[Experiment] flag-1")
    longer = record({"[Experiment] flag-13": "on"})
    assert decoded_names(scan, "p", [record({"[Experiment] flag-1": 1}), longer])[0] == [longer]


def test_escaped_names_and_other_writers_are_decoded() -> None:
    scan = NameScan()
    tricky = record({'[Experiment] say "hi"\\': "on", "[Experiment] é\n": 1})
    assert decoded_names(scan, "p", [tricky]) == ([tricky], {'[Experiment] say "hi"\\', "[Experiment] é\n"})
    assert decoded_names(scan, "p", [tricky])[0] == []  # orjson's escapes are matched once learned
    ascii_escaped = json.dumps({"user_properties": {"[Experiment] é\n": 1}}).encode()  # \u00e9 here
    assert decoded_names(scan, "p", [ascii_escaped])[0] == [ascii_escaped]
    spaced = b'{"user_properties": {"[Experiment] new" : 1}}'
    assert decoded_names(scan, "p", [spaced]) == ([spaced], {"[Experiment] new"})


@given(st.lists(st.dictionaries(st.sampled_from(["plan", "[Experiment] a", "[Experiment] b\"", "[Experiment] a b",
                                                 "[Experiment] \\", "[Experiment] ü"]),
                                st.sampled_from(["x", "[Experiment] a", "[Experiment] zz", 1])),
                max_size=12),
       st.lists(st.sampled_from(["[Experiment] a", "[Experiment] \\", "[Experiment] ü"]), max_size=2))
def test_every_name_in_the_records_is_found(users: list[dict[str, object]], learned: list[str]) -> None:
    """Whatever was known before, after a batch every experiment key of its records is known."""
    scan = NameScan()
    for name in learned:
        scan.learn("p", name)
    records = [record(properties) for properties in users]
    decoded_names(scan, "p", records)
    expected = {name for properties in users for name in properties if name.startswith("[Experiment] ")}
    assert expected <= {name for name in expected if decoded_names(scan, "p", [record({name: 1})])[0] == []}


def test_a_record_is_searched_past_a_value_that_holds_the_prefix() -> None:
    scan = NameScan()
    scan.learn("p", "[Experiment] a")
    late = record({"note": "see [Experiment] a", "plan": "x", "[Experiment] b": 1})
    quiet = record({"note": "[Experiment] a", "[Experiment] a": 1})
    assert decoded_names(scan, "p", [quiet, late, quiet]) == ([late], {"[Experiment] b"})


def test_records_past_the_first_search_are_found_at_their_own_index() -> None:
    """A batch longer than one search (SCAN_RECORDS): each candidate's index is its place in the
    whole batch, and a name learned in an earlier search is known to the later ones."""
    scan = NameScan()
    plain = [record({"plan": "pro", "[Experiment] a": "on"}) for _ in range(SCAN_RECORDS * 2 + 10)]
    plain[5] = record({"[Experiment] b": "on"})
    plain[SCAN_RECORDS + 3] = record({"[Experiment] c": "on"})
    plain[SCAN_RECORDS * 2 + 1] = record({"[Experiment] b": "off"})  # learned from record 5
    decoded, names = decoded_names(scan, "p", plain)
    assert decoded == [plain[0], plain[5], plain[SCAN_RECORDS + 3]]
    assert names == {"[Experiment] a", "[Experiment] b", "[Experiment] c"}


@given(st.sets(st.text(alphabet='ab"\\é\n', max_size=6), max_size=12),
       st.lists(st.text(alphabet='ab"\\é\n', max_size=6), max_size=8), st.binary(max_size=4))
def test_the_name_pattern_matches_exactly_the_known_names(known: set[str], others: list[str], after: bytes) -> None:
    """The factored pattern (a trie) says "known" at `"[Experiment] <name>"` for the known names
    and only for them, whatever follows in the record."""
    scan = NameScan()
    for name in known:
        scan.learn("p", "[Experiment] " + name)
    pattern = scan.pattern("p", scan.known.get("p", set()))
    for name in {*known, *others}:
        text = orjson.dumps("[Experiment] " + name) + after
        assert (pattern.match(text) is None) == (name in known)


def test_names_nested_past_the_trie_depth_are_still_told_apart() -> None:
    """Names that branch at every character (a, aa, aaa, …) go past TRIE_DEPTH: the rest is a
    plain alternation, and every name is still known, a longer one still not."""
    scan = NameScan()
    names = ["a" * n for n in range(1, TRIE_DEPTH * 3)]
    for name in names:
        scan.learn("p", "[Experiment] " + name)
    pattern = scan.pattern("p", scan.known["p"])
    assert all(pattern.match(orjson.dumps("[Experiment] " + name)) is None for name in names)
    assert pattern.match(orjson.dumps("[Experiment] " + "a" * TRIE_DEPTH * 3)) is not None
    assert pattern.match(orjson.dumps("[Experiment] b")) is not None
