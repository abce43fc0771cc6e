"""`python -m dev.kafka fetch|up|down|status` (what `make jars`, `make kafka-up`, `make kafka-down`
and `make kafka-status` run): the jars, and the developer's broker recorded in .run/kafka.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from dev.errors import LocalBrokerError
from dev.kafka import developer
from dev.kafka.config import COMMAND
from dev.kafka.jars import fetch_jars


def run_command(args: argparse.Namespace) -> int:
    if args.command == "fetch":
        started = time.monotonic()
        lib_dir = fetch_jars()
        jar_count = len(list(lib_dir.glob("*.jar")))
        developer.say(f"{jar_count} jars ready in {lib_dir} ({time.monotonic() - started:.1f} s)")
    elif args.command == "up":
        print(developer.up(args.port).bootstrap)  # alone on stdout: `export KAFKA_BOOTSTRAP_SERVERS=$(... up)`
    elif args.command == "down":
        developer.down()
    else:
        developer.status()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="A local single-node Kafka broker (KRaft).")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="copy the Kafka jars from Maven Central into .cache/kafka/lib (once)")
    up_parser = commands.add_parser("up", help="start the broker (or reuse the running one); prints its address")
    up_parser.add_argument("--port", type=int, help="broker port on 127.0.0.1 (default: a free one)")
    commands.add_parser("down", help="stop the broker and remove its data")
    commands.add_parser("status", help="say whether the broker runs, and where")
    try:
        return run_command(parser.parse_args(argv))
    except LocalBrokerError as exc:
        developer.say(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
