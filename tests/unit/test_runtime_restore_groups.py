"""restore.by_project: a restore batch's state records by the project of their key."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.core.identity import raw_project_of
from worker.runtime.restore import by_project


def test_records_go_to_their_project_in_order_and_tombstones_to_none() -> None:
    keys = [b"a/u:1", b"a/u:2", b"b/u:1", b"a/u:3", b"ab/u:1", b"a/u:4", b"b/d:9"]
    values: list[bytes | None] = [b"1", None, b"2", b"3", b"4", b"5", b"6"]
    assert by_project(keys, values) == {b"a": [b"1", b"3", b"5"], b"b": [b"2", b"6"], b"ab": [b"4"]}


@given(st.lists(st.tuples(st.sampled_from([b"p", b"q", b"p.q", b"", b"\0", b"p/x"]),
                          st.binary(max_size=4), st.booleans())))
def test_the_same_groups_as_splitting_every_key(rows: list[tuple[bytes, bytes, bool]]) -> None:
    """Whatever the keys (no slash, a NUL, a project that prefixes another), as if each were split."""
    keys = [project + b"/" + rest if slash else project + rest for project, rest, slash in rows]
    values: list[bytes | None] = [None if n % 5 == 4 else bytes([n % 256]) for n in range(len(keys))]
    expected: dict[bytes, list[bytes]] = {}
    for key, value in zip(keys, values, strict=True):
        if value is not None:
            expected.setdefault(raw_project_of(key), []).append(value)
    assert by_project(keys, values) == expected
