"""The user key's layout read two ways: `project_of` on the text, `raw_project_of` on its UTF-8
bytes (the restore groups changelog keys by project without decoding them)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.core.identity import project_of, raw_project_of, user_key


@given(st.text())
def test_the_bytes_form_finds_the_same_project_in_any_key(key: str) -> None:
    assert raw_project_of(key.encode("utf-8")) == project_of(key).encode("utf-8")


@given(st.text(min_size=1).filter(lambda project: "/" not in project), st.text(min_size=1))
def test_a_user_key_s_project_is_the_project_it_was_made_for(project: str, user_id: str) -> None:
    assert raw_project_of(user_key(project, user_id, None).encode("utf-8")) == project.encode("utf-8")
