"""Byte key-value backends for a partition's committed state: RocksDB on local disk
(`state_store=disk`, through rocksdict) or a dict in memory (`state_store=memory`).

Both take one atomic batch of writes at a time (`write`), so a batch's state, dedupe entries and
checkpoint are applied together or not at all, and both list the records of the expiry index in
order (`items_below`), at a cost that grows with what expires, not with the store.

RocksDB was chosen over LMDB by measurement on this workload (README, "State on disk"): restore
writes 1.2M records/s against 0.8M, point misses (most dedupe reads) cost about the same, and
its memory is bounded by its caches, where LMDB's mapped pages count in the process's RSS.
"""

from __future__ import annotations

import heapq
import shutil
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Protocol

from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

Write = tuple[bytes, bytes | None]  # a value of None deletes the key
# Shared by every store of a process, so RocksDB's memory does not grow with the partitions owned:
# one block cache, and one budget for all memtables (a store past its share flushes).
BLOCK_CACHE_BYTES = 64 * 2**20
WRITE_BUFFERS_BYTES = 64 * 2**20
WRITE_BUFFER_BYTES = 16 * 2**20  # one memtable of one store


@cache
def shared_memory() -> tuple[Cache, WriteBufferManager]:
    return Cache(BLOCK_CACHE_BYTES), WriteBufferManager(WRITE_BUFFERS_BYTES, False)


class KeyValue(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def write(self, writes: Iterable[Write]) -> None:
        """Apply every write, atomically."""
        ...

    def items_below(self, prefix: bytes, below: bytes) -> list[tuple[bytes, bytes]]:
        """The (key, value) pairs whose keys start with `prefix` and sort below `below`, by key."""
        ...

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with `prefix` (in key order on disk)."""
        ...

    def close(self) -> None: ...


class MemoryKV:
    """A dict; the keys under `index_prefix` are also kept in a heap, for `items_below`."""

    def __init__(self, index_prefix: bytes) -> None:
        self.data: dict[bytes, bytes] = {}
        self.index_prefix = index_prefix
        self.index: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def write(self, writes: Iterable[Write]) -> None:
        data, prefix = self.data, self.index_prefix
        for key, value in writes:
            if value is None:
                data.pop(key, None)
            else:
                if key.startswith(prefix) and key not in data:
                    heapq.heappush(self.index, key)
                data[key] = value

    def items_below(self, prefix: bytes, below: bytes) -> list[tuple[bytes, bytes]]:
        assert prefix == self.index_prefix, "MemoryKV orders only its index keys"
        items: list[tuple[bytes, bytes]] = []
        while self.index and self.index[0] < below:
            key = heapq.heappop(self.index)
            value = self.data.get(key)
            if value is not None:
                items.append((key, value))
        return items

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return ((key, value) for key, value in list(self.data.items()) if key.startswith(prefix))

    def close(self) -> None:
        self.data.clear()


class RocksKV:
    """One RocksDB per partition directory. RocksDB's LOCK file keeps a second process out."""

    def __init__(self, path: Path) -> None:
        block_cache, write_buffers = shared_memory()
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(2)
        options.set_write_buffer_manager(write_buffers)
        # A bloom filter on each memtable too (a tenth of its size, inside the write-buffer bound):
        # the dedupe read of every event mostly misses, and without it searches the skiplist
        # (benchmarks/store_growth.py: 12–18% more store traffic, two pairs; a whole worker run, 1.02×:
        # the store is a tenth of its time).
        options.set_memtable_prefix_bloom_ratio(0.1)
        options.set_memtable_whole_key_filtering(True)
        table = BlockBasedOptions()
        table.set_block_cache(block_cache)
        table.set_bloom_filter(10, False)  # most dedupe reads miss: a bloom filter answers them in memory
        # Index and filters live in the block cache, so memory stays bounded as the store grows, and
        # are partitioned into small blocks: a whole-file filter of a compacted file (1 MB and more
        # past a million dedupe entries) outgrows its cache shard, is evicted at once and read back
        # from disk on every get (measured: ~100,000 → 4,400 events/s; benchmarks/store_growth.py).
        table.set_cache_index_and_filter_blocks(True)
        table.set_index_type(BlockBasedIndexType.two_level_index_search())
        table.set_partition_filters(True)
        table.set_pin_top_level_index_and_filter(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        self.path = path
        self.db = Rdict(str(path), options)
        # No write-ahead log, as Kafka Streams runs its RocksDB stores: the changelogs are the log.
        # A process killed before a memtable reaches disk reopens at the last one that did (each
        # write is one batch with its checkpoint, so that is a checkpoint too) and reads the
        # changelogs from there; close() writes the memtables out. The WAL was ~2% of the loop.
        write_options = WriteOptions()
        write_options.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub says method
        self.db.set_write_options(write_options)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def write(self, writes: Iterable[Write]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in writes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.db.write(batch)

    def items_below(self, prefix: bytes, below: bytes) -> list[tuple[bytes, bytes]]:
        items: list[tuple[bytes, bytes]] = []
        cursor = self.db.iter()
        cursor.seek(prefix)
        while cursor.valid():
            key: bytes = cursor.key()
            if not key.startswith(prefix) or key >= below:
                break
            items.append((key, cursor.value()))
            cursor.next()
        del cursor
        return items

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        cursor = self.db.iter()
        cursor.seek(prefix)
        while cursor.valid():
            key: bytes = cursor.key()
            if not key.startswith(prefix):
                break
            yield key, cursor.value()
            cursor.next()

    def close(self) -> None:
        self.db.close()


def destroy(path: Path) -> None:
    """Remove a partition's store directory (a rebuild starts from nothing)."""
    shutil.rmtree(path, ignore_errors=True)
