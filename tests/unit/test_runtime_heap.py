"""worker.runtime.heap: freed heap memory goes back to the system (the restore calls it when done)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.runtime import heap


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_freed_pages_between_live_blocks_go_back_to_the_system() -> None:
    if heap.malloc_trim() is None:
        pytest.skip("this C library has no malloc_trim (not glibc)")
    # 200 MB in 4 KiB blocks (past Python's small-object allocator, so from malloc); one block in a
    # hundred stays, so the freed ones lie between live ones, where free() alone keeps them.
    blocks = [bytes(4096) for _ in range(50_000)]
    kept = blocks[::100]
    del blocks
    before = resident_bytes()
    assert heap.give_back()
    assert before - resident_bytes() > 100 * 2**20
    assert len(kept) == 500
