"""The operations commands that talk to Kafka (`topics`, `state get`, `dlq`, `lag`): what they print.

The cli runs each behind `broker.kafka_command`: one short try of the broker first, and any Kafka
error one line (exit status 3 when no broker answered, 2 when one refused).
"""

from __future__ import annotations

import argparse
import sys

import orjson

from worker.runtime.settings import WorkerSettings


def run_topics(args: argparse.Namespace, settings: WorkerSettings) -> int:
    from worker.runtime.topics import admin_client, check_topics, create_topics, describe_topics

    admin = admin_client(settings)
    if args.action == "create":
        created = create_topics(admin, settings)
        print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
        check_topics(admin, settings)
    elif args.action == "check":
        counts = check_topics(admin, settings)
        print("topics ok: " + ", ".join(f"{name} ({n} partitions)" for name, n in counts.items()))
    else:
        for line in describe_topics(admin, settings):
            print(line)
    return 0


def run_state(args: argparse.Namespace, settings: WorkerSettings) -> int:
    from worker.runtime.ops import state_get

    record = state_get(settings, args.user_key)
    if record is None:
        print(f"no state for {args.user_key}", file=sys.stderr)
        return 1
    print(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode())
    return 0


def run_dlq(args: argparse.Namespace, settings: WorkerSettings) -> int:
    from worker.runtime.ops import dlq_replay, dlq_stats

    if args.action == "stats":
        counts = dlq_stats(settings)
        for reason, count in counts.most_common():
            print(f"{reason:28} {count:>10,}")
        print(f"{'total':28} {sum(counts.values()):>10,}")
    else:
        replayed = dlq_replay(settings, args.reason, args.dry_run)
        verb = "would republish" if args.dry_run else "republished"
        print(f"{verb} {replayed:,} DLQ records to {settings.topics.raw}")
    return 0


def run_lag(args: argparse.Namespace, settings: WorkerSettings) -> int:
    from worker.runtime.ops import consumer_lag
    from worker.runtime.topics import admin_client

    rows = consumer_lag(settings, admin_client(settings))
    for topic, partition, done, end, lag in rows:
        print(f"{topic:45} {partition:>4} committed {done:>12,} end {end:>12,} lag {lag:>10,}")
    print(f"total lag {sum(row[4] for row in rows):,}")
    return 0
