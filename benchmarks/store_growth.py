"""Disk-store reads as the store grows (`python -m benchmarks.store_growth`): three partition stores
(worker.runtime.kv.RocksKV, the product's own options and shared caches) take the worker's pattern
per event (a dedupe read that misses, a state read for 30% of events, the dedupe entry and the
user's state written in batches of 5,000 with one expiry index record per batch), over 100,000
Zipf-skewed users, and the rate is printed every ROUND events. A store whose reads slow down as it
grows shows here long before an hour-long soak does. Measured back to back (2026-12-03, 2.4 million
events): with whole-file filters in the block cache the rate fell from ~100,000 to 21,000 events/s
at 1.4 million and 4,400 at 2.4 million; with partitioned filters it went from 113,000 to 82,000
(last/first 0.73).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from worker.runtime.kv import RocksKV, Write, shared_memory

ROUND = 200_000
BATCH = 5_000
STATE_SHARE = 0.3  # events whose user's state is not in the decoded-user cache
VALUE = os.urandom(700)  # a state record of the bench's size


def run(root: Path, users: int, rounds: int, stores: int = 3) -> list[float]:
    kvs = [RocksKV(root / str(n)) for n in range(stores)]
    keys = [f"p/u:{n}".encode() for n in range(users)]
    store_of = {key: n % stores for n, key in enumerate(keys)}  # a user's partition, as at load
    for n, kv in enumerate(kvs):
        kv.write((b"s" + key, VALUE) for key in keys[n::stores])
    weights = [1 / (n + 1) ** 0.8 for n in range(users)]
    chance, seq, rates = random.Random(1), 0, []
    pending: list[list[Write]] = [[] for _ in kvs]
    groups: list[list[bytes]] = [[] for _ in kvs]  # each batch's expiry index record (worker.runtime.state)
    for _ in range(rounds):
        started = time.perf_counter()
        for user in chance.choices(keys, weights, k=ROUND):
            seq += 1
            n = store_of[user]
            kv, dedupe = kvs[n], user + b"/" + chance.randbytes(16).hex().encode()
            kv.get(b"d" + dedupe)
            if chance.random() < STATE_SHARE:
                kv.get(b"s" + user)
            when = seq.to_bytes(8, "big")
            pending[n] += [(b"d" + dedupe, when), (b"s" + user, VALUE)]
            groups[n] += (when, len(dedupe).to_bytes(4, "big"), dedupe)
            if seq % BATCH == 0:
                for batch_kv, writes, group in zip(kvs, pending, groups, strict=True):
                    batch_kv.write([*writes, (b"e" + when + when, b"".join(group))])
                pending, groups = [[] for _ in kvs], [[] for _ in kvs]
        rates.append(ROUND / (time.perf_counter() - started))
        print(f"after {seq:>10,} events: {rates[-1]:>8,.0f} events/s, "
              f"block cache {shared_memory()[0].get_usage() / 2**20:.0f} MiB", flush=True)
    for kv in kvs:
        kv.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15, help=f"rounds of {ROUND:,} events")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="store-growth-") as root:
        rates = run(Path(root), args.users, args.rounds)
    print(f"last round / first round: {rates[-1] / rates[0]:.2f}")


if __name__ == "__main__":
    main()
