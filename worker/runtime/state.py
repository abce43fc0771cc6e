"""A by-user partition's stores in the Kafka worker: committed state in a byte store (RocksDB or a
dict, `worker.runtime.kv`), a bounded cache of decoded users in front of it, and the batch's
pending writes on top.

The committed layer holds exactly the bytes of the changelogs (a state record as it is on the
user-state topic; a dedupe entry's first-seen time), so a restore copies records without
decoding them, and a user costs its record's bytes, not a tree of Python objects. It is written
only after the batch's transaction committed, in one atomic batch that also records the
checkpoint: the changelog offsets the store has reached and the input offset they belong to.
Never ahead of Kafka, so a restart can trust the store and read the changelogs from there on.

Keys: b"s" + user key → state record; b"d" + dedupe key → first-seen (8 bytes, big-endian);
b"e" + minute end + group number → the dedupe entries of one write first seen in that minute (the
expiry index, in time order; see `expiry_writes`); b"n" + project + NUL + experiment property
name → b"" (names found in the restored state, SPEC §6); b"m" → the checkpoint.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import orjson

from worker.core.identity import project_of
from worker.core.records import state_record
from worker.core.values import JsonObject
from worker.runtime.kv import KeyValue, Write

STATE, DEDUPE, EXPIRY, NAMES, META = b"s", b"d", b"e", b"n", b"m"
FORMAT_VERSION = 2  # 2: the expiry index grouped per write and minute (1 had a key per entry)
DECODED_FACTOR = 4  # a decoded user takes about this many times its record's bytes (measured)
EXPIRY_BUCKET_MS = 60_000  # an entry leaves the store up to this much after its window ends


@dataclass(slots=True)
class StoreCheckpoint:
    """Where the store stands: the next offset to read on each changelog, the next input offset of
    the batch it holds, how many users it holds, and how many expiry groups it ever wrote (the
    next group's tag)."""

    format: int = FORMAT_VERSION
    state_offset: int = 0
    dedupe_offset: int = 0
    input_offset: int = -1
    users: int = 0
    groups: int = 0

    def encode(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass's fields itself, 10x faster than asdict()

    @classmethod
    def decode(cls, data: bytes | None) -> StoreCheckpoint | None:
        """None when there is none, or it is unreadable, or of another format version: rebuild."""
        if data is None:
            return None
        try:
            fields = orjson.loads(data)
            checkpoint = cls(**fields)
        except (orjson.JSONDecodeError, TypeError):
            return None
        return checkpoint if checkpoint.format == FORMAT_VERSION else None


class StateCache:
    """Decoded users, least recently used first out, within `max_bytes` (estimated), shared by the
    partitions of a process. Entries are tagged with their partition: a partition that goes takes
    its entries along, or a later owner's changes would be shadowed by stale ones."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, tuple[int, JsonObject, int]] = OrderedDict()
        self.bytes = 0

    def get(self, key: str) -> JsonObject | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.entries.move_to_end(key)
        return entry[1]

    def put(self, partition: int, key: str, properties: JsonObject, encoded_size: int) -> None:
        size = encoded_size * DECODED_FACTOR
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
        self.entries[key] = (partition, properties, size)
        self.bytes += size
        while self.bytes > self.max_bytes and self.entries:
            _, (_, _, evicted) = self.entries.popitem(last=False)
            self.bytes -= evicted

    def drop_partition(self, partition: int) -> None:
        for key in [key for key, entry in self.entries.items() if entry[0] == partition]:
            self.bytes -= self.entries.pop(key)[2]


class KafkaStores:
    """The `Stores` of one partition in the worker (see worker.core.stores for the protocol)."""

    def __init__(self, partition: int, kv: KeyValue, cache: StateCache,
                 encode: Callable[[JsonObject], bytes], decode: Callable[[bytes], JsonObject]) -> None:
        self.partition, self.kv, self.cache = partition, kv, cache
        self.encode, self.decode = encode, decode
        self.pending_state: dict[str, JsonObject] = {}
        self.changed_at: dict[str, int] = {}
        self.pending_dedupe: dict[str, int] = {}
        # Whether the store held a user when the batch first read it: the commit counts new users
        # without a second read (which, once the store outgrows the block cache, reads from disk).
        self.stored: dict[str, bool] = {}
        self.encoded: list[tuple[str, bytes]] = []  # the batch's state records, encoded once
        stored = kv.get(META)
        self.fresh = stored is None  # nothing was ever written here
        self.trusted = StoreCheckpoint.decode(stored)  # None: none, or unreadable, or another format
        self.checkpoint = self.trusted or StoreCheckpoint()

    # ---- what the pipeline reads and writes ------------------------------------------------------
    def state_of(self, user_key: str) -> JsonObject | None:
        properties = self.pending_state.get(user_key)
        if properties is not None:
            return properties
        properties = self.cache.get(user_key)
        if properties is not None:
            self.stored[user_key] = True  # the cache holds committed users only
            return properties
        raw = self.kv.get(STATE + user_key.encode())
        self.stored[user_key] = raw is not None
        if raw is None:
            return None
        properties = self.decode(raw)["user_properties"]
        assert type(properties) is dict
        self.cache.put(self.partition, user_key, properties, len(raw))
        return properties

    def first_seen(self, dedupe_key: str) -> int | None:
        pending = self.pending_dedupe.get(dedupe_key)
        if pending is not None:
            return pending
        raw = self.kv.get(DEDUPE + dedupe_key.encode())
        return None if raw is None else int.from_bytes(raw, "big")

    def put_state(self, user_key: str, properties: JsonObject, ingested_at: int) -> None:
        self.pending_state[user_key] = properties
        self.changed_at[user_key] = ingested_at

    def put_dedupe(self, dedupe_key: str, ingested_at: int) -> None:
        self.pending_dedupe[dedupe_key] = ingested_at

    # ---- the batch's changelog records, and the commit ------------------------------------------
    def state_changelog(self) -> list[tuple[str, bytes]]:
        """Each changed user's state record, encoded: produced to the changelog, then stored as is."""
        self.encoded = [(key, self.encode(state_record(project_of(key), key, properties, self.changed_at[key])))
                        for key, properties in self.pending_state.items()]
        return self.encoded

    def commit(self, state_offset: int | None, dedupe_offset: int | None, input_offset: int | None) -> None:
        """The batch's transaction committed: write what it changed and where that leaves the store."""
        writes: list[Write] = []
        for key, record in self.encoded:
            state_key = STATE + key.encode()
            stored = self.stored.get(key)
            if stored is None:  # written without being read first
                stored = self.kv.get(state_key) is not None
            if not stored:
                self.checkpoint.users += 1
            writes.append((state_key, record))
            self.cache.put(self.partition, key, self.pending_state[key], len(record))
        entries = [(key.encode(), first_seen) for key, first_seen in self.pending_dedupe.items()]
        writes += [(DEDUPE + key, first_seen.to_bytes(8, "big")) for key, first_seen in entries]
        self.advance(state_offset, dedupe_offset, input_offset)
        writes += self.expiry_writes(entries)
        writes.append((META, self.checkpoint.encode()))
        self.kv.write(writes)
        self.clear()

    def advance(self, state_offset: int | None, dedupe_offset: int | None, input_offset: int | None) -> None:
        if state_offset is not None:
            self.checkpoint.state_offset = max(self.checkpoint.state_offset, state_offset)
        if dedupe_offset is not None:
            self.checkpoint.dedupe_offset = max(self.checkpoint.dedupe_offset, dedupe_offset)
        if input_offset is not None:
            self.checkpoint.input_offset = input_offset

    def rollback(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.pending_state.clear()
        self.changed_at.clear()
        self.pending_dedupe.clear()
        self.stored.clear()
        self.encoded = []

    # ---- restore and expiry ---------------------------------------------------------------------
    def restore(self, states: Iterable[tuple[bytes, bytes | None]], dedupes: Iterable[tuple[bytes, int | None]],
                state_offset: int | None, dedupe_offset: int | None,
                names: Iterable[tuple[str, str]] = ()) -> None:
        """Changelog records read back, keys as bytes (a None value deletes), how far the changelogs
        were read, and the experiment names found in them (kept, so a restart from the checkpoint
        still knows them)."""
        writes: list[Write] = [(NAMES + f"{project}\0{name}".encode(), b"") for project, name in names]
        kv, users = self.kv, 0
        for key, record in dict(states).items():  # a key twice in one read (not compacted yet): its last
            state_key = STATE + key
            users += (record is not None) - (kv.get(state_key) is not None)
            writes.append((state_key, record))
        self.checkpoint.users += users
        entries: list[tuple[bytes, int]] = []
        for key, first_seen in dedupes:
            if first_seen is None:
                writes.append((DEDUPE + key, None))
            else:
                writes.append((DEDUPE + key, first_seen.to_bytes(8, "big")))
                entries.append((key, first_seen))
        self.advance(state_offset, dedupe_offset, None)
        writes += self.expiry_writes(entries)
        writes.append((META, self.checkpoint.encode()))
        self.kv.write(writes)

    def expiry_writes(self, entries: list[tuple[bytes, int]]) -> list[Write]:
        """The expiry index of one store write's dedupe entries: one record per minute they were
        first seen in (a write is a batch, mostly within one minute), not one per entry, which
        halves the keys a batch inserts. Key: the minute's end, then the group's number in this
        store (8 bytes each; counted in the checkpoint, written in the same batch, so groups never
        collide). Value: each entry's first-seen (8 bytes), key length (4) and key."""
        groups: dict[int, list[bytes]] = {}
        for key, first_seen in entries:
            minute_end = (first_seen // EXPIRY_BUCKET_MS + 1) * EXPIRY_BUCKET_MS
            group = groups.get(minute_end)
            if group is None:
                group = groups[minute_end] = []
            group += (first_seen.to_bytes(8, "big"), len(key).to_bytes(4, "big"), key)
        writes: list[Write] = []
        for minute_end, group in groups.items():
            self.checkpoint.groups += 1
            writes.append((EXPIRY + minute_end.to_bytes(8, "big") + self.checkpoint.groups.to_bytes(8, "big"),
                           b"".join(group)))
        return writes

    def expire(self, horizon_ms: int) -> int:
        """Forget dedupe entries first seen before `horizon_ms` (up to a minute later: the index
        holds minutes), walking the expiry index from its oldest group: the cost is the entries that
        expire, not the store."""
        writes: list[Write] = []
        expired = 0
        # A group's key starts with the end of its minute: every entry in it is older than that, so
        # a group goes when its minute ends at the horizon or before.
        below = EXPIRY + (max(horizon_ms, 0) + 1).to_bytes(8, "big")
        for index_key, group in self.kv.items_below(EXPIRY, below):
            writes.append((index_key, None))
            for dedupe_key, first_seen in unpack_group(group):
                if self.kv.get(DEDUPE + dedupe_key) == first_seen:  # not seen again after the window
                    writes.append((DEDUPE + dedupe_key, None))
                    expired += 1
        if writes:
            self.kv.write(writes)
        return expired

    def names(self) -> list[tuple[str, str]]:
        """The (project, experiment name) pairs found by every restore of this store so far."""
        pairs = (key[1:].decode().split("\0", 1) for key, _ in self.kv.items(NAMES))
        return [(project, name) for project, name in pairs]

    def iter_states(self) -> Iterator[tuple[str, JsonObject]]:
        """Every committed user: (user key, properties), decoded one at a time."""
        for key, record in self.kv.items(STATE):
            properties = self.decode(record)["user_properties"]
            assert type(properties) is dict
            yield key[1:].decode(), properties

    @property
    def users(self) -> int:
        return self.checkpoint.users

    def close(self) -> None:
        self.cache.drop_partition(self.partition)
        self.kv.close()


def unpack_group(group: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(dedupe key, first-seen as stored) of each entry of an expiry group."""
    at = 0
    while at < len(group):
        first_seen, size = group[at:at + 8], int.from_bytes(group[at + 8:at + 12], "big")
        yield group[at + 12:at + 12 + size], first_seen
        at += 12 + size
