"""The load generator: same seed, same stream; every kind of bad input it sends gets the reason
SPEC §2 gives it; a keyed message carries exactly the user key the split stage derives."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

from dev.loadgen import BAD_RECORDS, StreamGenerator, encode_line, events_in
from tests.support.clock import T0
from worker.core import reasons
from worker.core.config import CoreConfig
from worker.core.records import RawMessage
from worker.core.split import split_message
from worker.offline import process_file


def split(record_value: bytes, headers: tuple[tuple[str, bytes], ...] = ()) -> tuple[list[str], list[str]]:
    """(user keys of the accepted events, reasons of the rejected units) of one raw message."""
    result = split_message(RawMessage("events.raw", 0, 0, T0, record_value, None, headers), CoreConfig())
    return [event.user_key for event in result.events], [record.reason for record in result.rejected]


def test_the_same_seed_gives_the_same_stream_and_another_seed_another() -> None:
    def first(seed: int) -> list[bytes]:
        return [encode_line(record) for record in itertools.islice(StreamGenerator(seed, 200).messages(), 300)]

    assert first(3) == first(3)
    assert first(3) != first(4)


def test_records_hold_about_the_events_asked_for() -> None:
    records = list(StreamGenerator(5, 100, bad_share=0.05).records(2000))
    held = sum(max(1, events_in(record)) for record in records)
    assert 2000 <= held < 2000 + 50


def test_each_bad_kind_gets_its_reason_and_the_stream_sends_them() -> None:
    assert [split(record.encoded())[1] for record in BAD_RECORDS] == [
        [reasons.MALFORMED_JSON], [reasons.MALFORMED_JSON], [reasons.INVALID_ENVELOPE], [reasons.INVALID_TIME],
        [reasons.MISSING_USER_IDENTITY], [reasons.INVALID_EXPOSURE], [reasons.INVALID_USER_PROPERTIES],
        [reasons.INVALID_EVENT]]
    bad = {record.encoded() for record in BAD_RECORDS}
    sent = {record.encoded() for record in StreamGenerator(1, 50, bad_share=0.2).records(3000)}
    assert bad <= sent


def test_a_keyed_message_carries_the_user_key_of_its_events() -> None:
    """Else one user's events would be spread over raw partitions, and their order (so the state
    each one sees) would depend on timing: the Kafka path could not equal process-file."""
    projects, anonymous = set(), False
    for record in StreamGenerator(2, 300, bad_share=0.05).records(3000):
        headers = tuple((name, value.encode()) for name, value in record.headers.items())
        keys, _ = split(record.encoded(), headers)
        assert set(keys) <= {record.key}, record
        projects.update(key.split("/")[0] for key in keys)
        anonymous = anonymous or any("/d:" in key for key in keys)
    assert projects == {"default", "shop"}
    assert anonymous, "every tenth user sends a device id only"


def test_an_unkeyed_stream_has_no_keys() -> None:
    assert {record.key for record in StreamGenerator(2, 300, bad_share=0.2, keyed=False).records(2000)} == {None}


def test_written_lines_are_process_file_input(tmp_path: Path) -> None:
    out = io.BytesIO()
    written = StreamGenerator(9, 100, bad_share=0.05, keyed=False).write(out, 400)
    assert written.records == 400 and written.bytes == len(out.getvalue()) and written.events > 400
    source = tmp_path / "raw.jsonl"
    source.write_bytes(out.getvalue())
    summary = process_file(source, tmp_path / "out", CoreConfig(), now_ms=T0)
    assert summary.events > 0
    assert (tmp_path / "out" / "dlq.jsonl").read_bytes()
