"""Encode and decode cost per record, Avro against JSON, on realistic records from the real core.

Not a test: `python -m benchmarks.serde [--events N]`. The loadgen stream goes through split +
process (as process-file does); each codec then encodes and decodes every record of a kind. Best of
five runs, in one process; prints µs per record, bytes per record and the Avro/JSON ratios.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import orjson

from dev.loadgen import START_MS, StreamGenerator
from worker.core.config import CoreConfig
from worker.core.pipeline import Pipeline
from worker.core.records import RawMessage
from worker.core.stores import PartitionStores
from worker.serde import codec_for

REPEATS = 5


def realistic_records(events: int) -> dict[str, list[dict[str, Any]]]:
    pipeline, stores = Pipeline(CoreConfig()), PartitionStores()
    records: dict[str, list[dict[str, Any]]] = {"enriched": [], "deltas": [], "state": []}
    for offset, raw in enumerate(StreamGenerator(seed=11, bad_share=0.0).records(events)):
        value = orjson.dumps(raw.value) if raw.value_raw is None else raw.value_raw.encode()
        message = RawMessage("events.raw", 0, offset, START_MS + offset, value)
        for outcome in pipeline.run(message, stores).outcomes:
            for kind, record in (("enriched", outcome.event), ("deltas", outcome.delta)):
                if record is not None:
                    records[kind].append(record)
        records["state"] += [state for _, state in stores.state_records()]
        stores.commit()
        pipeline.registry.commit()
    return records


def best_us_per_item(run: Callable[[], object], items: int) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings) / items * 1e6


def measure(kind: str, fmt: str, records: list[dict[str, Any]]) -> tuple[float, float, float]:
    codec = codec_for(kind, fmt)
    encoded = [codec.encode(record) for record in records]
    encode_us = best_us_per_item(lambda: [codec.encode(record) for record in records], len(records))
    decode_us = best_us_per_item(lambda: [codec.decode(data) for data in encoded], len(records))
    return encode_us, decode_us, sum(map(len, encoded)) / len(encoded)


def main() -> None:
    parser = argparse.ArgumentParser(description="Avro vs JSON encode/decode cost per record")
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    records = realistic_records(args.events)
    print(f"{'kind':<9}{'records':>8}  {'format':<6}{'encode µs':>11}{'decode µs':>11}{'bytes':>8}")
    for kind, items in records.items():
        json_figures = measure(kind, "json", items)
        avro_figures = measure(kind, "avro", items)
        for fmt, (encode_us, decode_us, size) in (("json", json_figures), ("avro", avro_figures)):
            print(f"{kind:<9}{len(items):>8}  {fmt:<6}{encode_us:>11.2f}{decode_us:>11.2f}{size:>8.0f}")
        ratios = [avro / json for avro, json in zip(avro_figures, json_figures, strict=True)]
        print(f"{'':<17}{'avro/json':<6}{ratios[0]:>10.1f}x{ratios[1]:>10.1f}x{ratios[2]:>7.2f}x")


if __name__ == "__main__":
    main()
