"""The partition stores of the Kafka worker (worker.runtime.state, kv, local_state): what a commit
writes and when, what a reopened store trusts, the cache bound, expiry, and rebuilds. RocksDB on a
temporary directory; no broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.settings import offline_settings
from worker.runtime.kv import KeyValue, MemoryKV, RocksKV
from worker.runtime.local_state import StoreFactory
from worker.runtime.restore import unusable_checkpoint
from worker.runtime.state import EXPIRY, META, KafkaStores, StateCache, StoreCheckpoint
from worker.serde import codec_for

CODEC = codec_for("state", "json")
DAY_MS = 86_400_000


def factory(tmp_path: Path, store: str = "disk", cache_bytes: int = 1 << 20) -> StoreFactory:
    settings = offline_settings(state_store=store, state_dir=str(tmp_path), state_cache_bytes=cache_bytes)
    return StoreFactory(settings, CODEC, StateCache(settings.state_cache_bytes))


def committed(stores: KafkaStores, user: str, properties: dict[str, object], offsets: tuple[int, int, int]) -> None:
    stores.put_state(user, properties, 1_000)
    stores.state_changelog()
    stores.commit(*offsets)


def test_a_commit_writes_the_state_and_its_checkpoint_together_and_a_reopened_store_trusts_them(
        tmp_path: Path) -> None:
    stores = factory(tmp_path).open(0)
    assert stores.fresh and stores.trusted is None
    committed(stores, "p/u:1", {"plan": "pro"}, (5, 3, 17))
    stores.close()
    again = factory(tmp_path).open(0)
    assert not again.fresh
    assert again.trusted == StoreCheckpoint(state_offset=5, dedupe_offset=3, input_offset=17, users=1)
    assert again.state_of("p/u:1") == {"plan": "pro"}
    assert again.users == 1
    again.close()


def test_the_stored_state_record_is_the_changelog_record_byte_for_byte(tmp_path: Path) -> None:
    stores = factory(tmp_path).open(0)
    stores.put_state("p/u:1", {"plan": "pro"}, 1_000)
    [(key, record)] = stores.state_changelog()
    stores.commit(1, None, 2)
    assert key == "p/u:1" and stores.kv.get(b"s" + key.encode()) == record
    assert orjson.loads(record)["user_properties"] == {"plan": "pro"}
    stores.close()


def test_pending_writes_never_reach_the_store_before_a_commit_and_a_rollback_drops_them(tmp_path: Path) -> None:
    stores = factory(tmp_path).open(0)
    stores.put_state("p/u:1", {"plan": "pro"}, 1_000)
    stores.put_dedupe("p/u:1/i-1", 1_000)
    assert stores.state_of("p/u:1") == {"plan": "pro"} and stores.first_seen("p/u:1/i-1") == 1_000  # read own writes
    assert stores.kv.get(b"s" + b"p/u:1") is None and stores.kv.get(META) is None
    stores.rollback()
    assert stores.state_of("p/u:1") is None and stores.first_seen("p/u:1/i-1") is None
    stores.close()


def test_changelog_offsets_only_move_forward_and_an_absent_one_stays(tmp_path: Path) -> None:
    stores = factory(tmp_path).open(0)
    committed(stores, "p/u:1", {"a": 1}, (10, 4, 3))
    committed(stores, "p/u:2", {"a": 2}, (8, None, 5))  # a delivery report of an older record: ignored
    checkpoint = stores.checkpoint
    assert (checkpoint.state_offset, checkpoint.dedupe_offset, checkpoint.input_offset) == (10, 4, 5)
    assert stores.users == 2
    stores.close()


class CountingReads:
    """A byte store that notes the keys it is asked for (the compiled stores cannot be patched)."""

    def __init__(self, kv: KeyValue, reads: list[bytes]) -> None:
        self.kv, self.reads = kv, reads

    def get(self, key: bytes) -> bytes | None:
        self.reads.append(key)
        return self.kv.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


def test_a_commit_counts_new_users_from_what_the_batch_read_without_reading_the_store_again(
        tmp_path: Path) -> None:
    stores = factory(tmp_path).open(0)
    committed(stores, "p/u:1", {"a": 1}, (1, None, 1))  # written unread: the commit looks it up
    reads: list[bytes] = []
    stores.kv = CountingReads(stores.kv, reads)
    for user in ("p/u:1", "p/u:2", "p/u:3"):
        old = stores.state_of(user) or {}
        stores.put_state(user, {**old, "b": 2}, 2_000)
    stores.state_changelog()
    before = len(reads)
    stores.commit(2, None, 2)
    assert len(reads) == before, "the commit read the store again for users the batch had read"
    assert stores.users == 3
    stores.state_of("p/u:2")  # cached now: a committed user
    stores.put_state("p/u:2", {"b": 3}, 3_000)
    stores.state_changelog()
    stores.commit(3, None, 3)
    assert stores.users == 3
    stores.close()


def test_a_restore_counts_users_once_deletes_tombstones_and_remembers_experiment_names(tmp_path: Path) -> None:
    stores = factory(tmp_path).open(0)
    record = CODEC.encode({"project_id": "p", "user_key": "p/u:1", "user_properties": {"[Experiment] f": "on"}})
    stores.restore([(b"p/u:1", record), (b"p/u:2", record), (b"p/u:1", record)], [(b"k", 7)], 3, 1,
                   {("p", "[Experiment] f")})
    assert stores.users == 2
    stores.restore([(b"p/u:2", None)], [(b"k", None)], 4, 2)
    assert stores.users == 1 and stores.state_of("p/u:2") is None and stores.first_seen("k") is None
    assert dict(stores.iter_states()) == {"p/u:1": {"[Experiment] f": "on"}}
    stores.close()
    again = factory(tmp_path).open(0)
    assert again.names() == [("p", "[Experiment] f")]
    again.close()


def test_expiry_forgets_entries_before_the_horizon_but_not_one_seen_again_since(tmp_path: Path) -> None:
    for store in ("disk", "memory"):
        stores = factory(tmp_path / store, store).open(0)
        stores.put_dedupe("old", 1 * DAY_MS)
        stores.put_dedupe("again", 1 * DAY_MS)
        stores.put_dedupe("new", 9 * DAY_MS)
        stores.commit(None, 3, 1)
        stores.put_dedupe("again", 8 * DAY_MS)  # first seen anew after its first entry expired upstream
        stores.commit(None, 4, 2)
        assert stores.expire(5 * DAY_MS) == 1, store
        assert stores.first_seen("old") is None
        assert stores.first_seen("again") == 8 * DAY_MS and stores.first_seen("new") == 9 * DAY_MS
        assert stores.kv.items_below(EXPIRY, EXPIRY + (5 * DAY_MS).to_bytes(8, "big")) == []  # the index went too
        stores.close()


def test_the_expiry_index_holds_a_group_per_write_and_minute_and_each_group_expires_whole(tmp_path: Path) -> None:
    minute = 60_000
    for store in ("disk", "memory"):
        stores = factory(tmp_path / store, store).open(0)
        for key, first_seen in (("a", 10 * minute + 5), ("b", 10 * minute + 59_999), ("c", 11 * minute)):
            stores.put_dedupe(key, first_seen)
        stores.commit(None, 3, 1)
        stores.put_dedupe("d", 10 * minute + 7)  # the minute of "a" again, in a later write: its own group
        stores.commit(None, 4, 2)
        stores.restore([], [(b"e", 10 * minute + 1), (b"f", 12 * minute), (b"b", None)], None, 6)
        groups = list(stores.kv.items(EXPIRY))  # minutes 10 and 11; 10; 10 and 12
        assert len(groups) == 5 and stores.checkpoint.groups == 5, store
        # An entry goes once its whole minute is past the horizon: "a" (first seen at 10:00.005)
        # is kept at a horizon of 10:59.999 and forgotten at 11:00; "b" was deleted by the restore.
        assert stores.expire(11 * minute - 1) == 0 and stores.first_seen("a") == 10 * minute + 5
        assert stores.expire(11 * minute) == 3, store  # a, d, e
        assert [stores.first_seen(key) for key in "abcdef"] == [None, None, 11 * minute, None, None, 12 * minute]
        assert stores.expire(13 * minute) == 2
        assert list(stores.kv.items(EXPIRY)) == []
        stores.close()
    again = factory(tmp_path / "disk").open(0)
    assert again.trusted is not None and again.trusted.groups == 5  # a reopened store numbers on
    again.close()


KILLED_WRITER = """
import os, sys
from pathlib import Path
from tests.unit.test_runtime_state import committed, factory
stores = factory(Path(sys.argv[1])).open(0)
committed(stores, "p/u:1", {"n": 1}, (1, 0, 10))
stores.kv.db.flush()  # type: ignore[attr-defined]  # the memtable reaches disk: a checkpoint there
committed(stores, "p/u:1", {"n": 2}, (2, 0, 11))
print("both written", flush=True)
os._exit(9)  # killed: no close(), no flush
"""


def test_a_killed_process_store_reopens_at_the_last_write_on_disk_with_its_own_checkpoint(tmp_path: Path) -> None:
    # No write-ahead log: the second commit was only in the memtable, and the store is back at the
    # first one, state and checkpoint together (the restore reads the changelogs from there).
    writer = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], capture_output=True, text=True,
                            check=False, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert writer.returncode == 9 and writer.stdout == "both written\n", writer.stderr
    stores = factory(tmp_path).open(0)
    assert stores.trusted is not None and stores.trusted.input_offset == 10 and stores.trusted.state_offset == 1
    assert stores.state_of("p/u:1") == {"n": 1}
    stores.close()


def test_the_cache_holds_decoded_users_within_its_bound_and_a_dropped_partition_takes_its_own() -> None:
    cache = StateCache(max_bytes=4 * 100 * 3)  # three users of 100 encoded bytes
    for user in range(5):
        cache.put(user % 2, f"u{user}", {"n": user}, 100)
    assert cache.bytes <= cache.max_bytes and list(cache.entries) == ["u2", "u3", "u4"]
    cache.drop_partition(0)
    assert list(cache.entries) == ["u3"] and cache.bytes == 400


def test_a_store_read_through_the_cache_still_answers_after_its_users_were_evicted(tmp_path: Path) -> None:
    stores = factory(tmp_path, cache_bytes=1).open(0)  # nothing stays cached
    for user in range(50):
        committed(stores, f"p/u:{user}", {"n": user}, (user + 1, 0, user))
    assert len(stores.cache.entries) <= 1
    assert all(stores.state_of(f"p/u:{user}") == {"n": user} for user in range(50))
    stores.close()


def test_a_store_that_cannot_be_opened_is_removed_and_rebuilt_empty(tmp_path: Path) -> None:
    stores_factory = factory(tmp_path)
    path = stores_factory.path(0)
    path.mkdir(parents=True)
    (path / "CURRENT").write_text("MANIFEST-999999\n")  # points at a manifest that is not there
    stores = stores_factory.open(0)
    assert stores.fresh and stores.state_of("p/u:1") is None
    stores.close()


def test_a_checkpoint_of_another_format_or_unreadable_is_not_trusted(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "s")
    kv.write([(META, b'{"format": 99, "state_offset": 1}')])
    stores = KafkaStores(0, kv, StateCache(1 << 20), CODEC.encode, CODEC.decode)
    assert not stores.fresh and stores.trusted is None
    stores.close()
    assert StoreCheckpoint.decode(b"not json") is None and StoreCheckpoint.decode(b'{"nope": 1}') is None


def test_a_memory_store_is_always_fresh() -> None:
    stores = KafkaStores(0, MemoryKV(EXPIRY), StateCache(1 << 20), CODEC.encode, CODEC.decode)
    assert stores.fresh and stores.checkpoint == StoreCheckpoint()


@pytest.mark.parametrize(("state_offset", "dedupe_offset", "reason"), [
    (50, 20, None),           # inside both logs
    (10, 5, None),            # exactly at the low watermarks
    (90, 40, None),           # exactly at the committed ends
    (95, 20, "beyond_end"),   # past the last stable offset: ahead of what Kafka committed
    (101, 20, "beyond_end"),  # past the end: another log (recreated, or truncated by an unclean election)
    (50, 4, "below_low"),     # below the low watermark: records it never saw were deleted
])
def test_a_checkpoint_is_used_only_inside_each_committed_changelog(state_offset: int, dedupe_offset: int,
                                                                    reason: str | None) -> None:
    checkpoint = StoreCheckpoint(state_offset=state_offset, dedupe_offset=dedupe_offset)
    assert unusable_checkpoint(checkpoint, (10, 90, 100), (5, 40, 40)) == reason
