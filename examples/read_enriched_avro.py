"""Read enriched events in Avro from Kafka, as an analytics job would: confluent-kafka, fastavro and
the schemas in `schemas/`, nothing from the worker.

    python examples/read_enriched_avro.py --bootstrap 127.0.0.1:9092 --topic events.enriched --count 10

Each value is Avro single-object encoding: `C3 01`, the writer schema's 8-byte CRC-64-AVRO
fingerprint (little-endian), then the Avro body. The fingerprint picks the writer schema (current or
kept in schemas/history/); fastavro resolves it to the current one. JSON values (property maps,
`extra`) are a union of scalars and the records BigInt, JsonArray and JsonObject.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Consumer
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
NAMESPACE = "io.experimentworker."


def load_schemas() -> tuple[Any, dict[bytes, Any]]:
    """The current enriched-event schema, and every known version by fingerprint."""
    paths = [SCHEMAS / "enriched_event.avsc", *sorted((SCHEMAS / "history").glob("enriched_event.v*.avsc"))]
    writers: dict[bytes, Any] = {}
    for path in paths:
        schema = json.loads(path.read_text())
        writers[bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))] = \
            fastavro.parse_schema(schema)
    return writers[next(iter(writers))], writers


CURRENT, WRITERS = load_schemas()


def json_value(datum: Any) -> Any:
    """A JSON-value union datum (read with return_record_name=True) as a plain JSON value."""
    if isinstance(datum, tuple):
        name, record = datum
        if name == NAMESPACE + "JsonObject":
            return {key: json_value(item) for key, item in record["fields"].items()}
        if name == NAMESPACE + "JsonArray":
            return [json_value(item) for item in record["items"]]
        return int(record["digits"])  # BigInt
    return datum


def decode(value: bytes) -> dict[str, Any]:
    """One message value as the enriched event's JSON form (SPEC §8.1)."""
    if value[:2] != b"\xc3\x01" or value[2:10] not in WRITERS:
        raise ValueError("not an enriched event in Avro single-object encoding")
    writer = WRITERS[value[2:10]]
    body = io.BytesIO(value[10:])
    datum: Any = fastavro.schemaless_reader(body, writer, None if writer is CURRENT else CURRENT,
                                       return_record_name=True)
    event = {name: datum[name] for name in ("project_id", "event_type", "user_id", "device_id", "time",
                                            "insert_id") if datum[name] is not None}
    for name in ("event_properties", "user_properties"):
        event[name] = {key: json_value(item) for key, item in datum[name].items()}
    event["billable"], event["ingested_at"] = datum["billable"], datum["ingested_at"]
    event.update((key, json_value(item)) for key, item in datum["extra"].items())
    return event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="events.enriched")
    parser.add_argument("--group", default="read-enriched-avro-example")
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe([args.topic])
    seen = 0
    try:
        while seen < args.count:
            message = consumer.poll(5.0)
            if message is None:
                break
            value = message.value()
            if message.error() or value is None:
                continue
            event = decode(value)
            experiments = {k: v for k, v in event["user_properties"].items() if k.startswith("[Experiment] ")}
            print(f"{event['time']} {event['event_type']:<26} user={event.get('user_id')} "
                  f"billable={event['billable']} experiments={experiments}")
            seen += 1
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
