"""The by-user shortcut: an event whose by-user partition this member owns is processed where it is
split, in the same transaction, rather than written to the by-user topic and read back.

The by-user topic exists to bring each user's events to the member that holds the user's state.
When that member is the one that split the event, the round trip adds a record to write and read
back, a decode, and a second transaction of latency, and changes nothing. The records the
shortcut writes (outputs, changelogs, offsets) are those the hop would have caused, in the same
order for each user, and in the same transaction as the raw offsets they come from: exactly-once
is the skip_split path's.

Per-user order (SPEC §10: the order of the user's raw partition) is what has to be kept. A user's
events from one raw partition may already wait in the by-user topic, written by this member
before the partition was in place (while it restored, say) or by the raw partition's earlier owner;
an event processed in place must not overtake them. So a partition goes in place only through a
drain, at a commit boundary:

1. the member pauses its raw partitions (a raw message still delivered is passed over, and read
   again from there when the drain ends) and writes a marker record to each partition to drain,
   after everything it wrote there; the commit makes them readable (every earlier owner of its
   raw partitions committed before it was given them);
2. it then reads only by-user records, processed as always, until each marker has come back:
   every record before it has then been processed;
3. the next commit puts those partitions in place, and the raw partitions resume where they stopped.

From then on the member writes none of its own events for those partitions to the topic, so
nothing of its raw partitions can be waiting there; records other members write still come and
are processed as before. Any new partition for the member (a raw one may bring an earlier owner's
records along) ends the shortcut until the next drain; an abort of the marking commit, a
rebalance during a drain, or a drain longer than DRAIN_TIMEOUT_S cancels it, and a later commit
tries again. With N members about 1/N of the events take the shortcut (all of them when producers
key raw messages by user key, as the same partitioner then puts them on the member's partition).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from confluent_kafka import Consumer, TopicPartition

from worker.runtime.partitioner import partition_of
from worker.runtime.settings import Topics

log = logging.getLogger(__name__)
MARKER_KEY = b"experiment-worker/drain"  # never a user key: those are <project>/u:… or <project>/d:…
DRAIN_TIMEOUT_S = 5.0
RETRY_AFTER_S = 10.0  # after a drain was cancelled


class Drain:
    """One drain in progress: its partitions, and the markers not back yet."""

    __slots__ = ("cancelled", "done", "marked", "partitions", "seen", "started", "token", "waiting")

    def __init__(self, partitions: list[int], token: bytes, started: float) -> None:
        self.partitions, self.token, self.started = set(partitions), token, started
        self.waiting = set(partitions)
        self.seen: list[int] = []  # markers back in the open batch (an abort reads them again)
        self.marked = False  # the markers' commit went through
        self.done = False  # every marker came back in a committed batch
        self.cancelled = False  # a rebalance came: ended at the next step of the loop


class Shortcut:
    def __init__(self, enabled: bool, topics: Topics, instance_id: str) -> None:
        self.enabled, self.raw_topic, self.by_user_topic = enabled, topics.raw, topics.by_user
        self.token_prefix = f"{instance_id}/{os.getpid()}/"
        self.count = 0  # the by-user topic's partitions (start() sets it)
        self.direct: set[int] = set()  # by-user partitions whose events are processed in place
        self.drain: Drain | None = None
        self.paused: set[int] = set()  # raw partitions the drain paused: their messages wait...
        self.skipped: dict[int, int] = {}  # ...from the first one passed over, read again at the end
        self.not_before = 0.0
        self.drains = 0

    def start(self, partition_counts: dict[str, int]) -> None:
        """The topics' partition counts, as the run found them at its start."""
        self.count = partition_counts.get(self.by_user_topic, 0)

    def target(self, user_key: str) -> int:
        """The by-user partition to process this user's event in, or -1: through the topic."""
        if not self.direct:
            return -1
        partition = partition_of(user_key.encode(), self.count)
        return partition if partition in self.direct else -1

    def waits(self, partition: int, offset: int) -> bool:
        """Whether a raw message must wait for the drain's end (it is then read again from there)."""
        if partition not in self.paused:
            return False
        if offset < self.skipped.get(partition, offset + 1):
            self.skipped[partition] = offset
        return True

    # ---- the drain ----------------------------------------------------------------------------
    def due(self, installed: Iterable[int], restoring: bool, now: float) -> list[int]:
        """The installed partitions to drain now (none while a partition still restores)."""
        if not self.enabled or not self.count or self.drain is not None or restoring or now < self.not_before:
            return []
        return sorted(partition for partition in installed if partition not in self.direct)

    def begin(self, consumer: Consumer, partitions: list[int], now: float) -> bytes:
        """Pause the raw partitions; the token the drain's markers carry."""
        raw = [tp for tp in consumer.assignment() if tp.topic == self.raw_topic]
        consumer.pause(raw)
        self.paused = {tp.partition for tp in raw}
        self.drains += 1
        token = f"{self.token_prefix}{self.drains}".encode()
        self.drain = Drain(partitions, token, now)
        return token

    def returned(self, partition: int, token: bytes | None) -> None:
        """A marker came back (another member's, or an earlier drain's, is passed over)."""
        drain = self.drain
        if drain is not None and drain.marked and token == drain.token and partition in drain.waiting:
            drain.waiting.discard(partition)
            drain.seen.append(partition)

    def committed(self) -> None:
        """A commit went through: the markers are readable, or every one came back."""
        drain = self.drain
        if drain is None or drain.cancelled:
            return
        drain.seen.clear()
        if not drain.marked:
            drain.marked = True
        elif not drain.waiting:
            drain.done = True

    def aborted(self, consumer: Consumer, now: float) -> None:
        """The batch was dropped; called before its rewind. A drain whose markers were in it ends
        (in the loop: the markers are written there, never in a rebalance callback); markers that
        came back in it will be read again."""
        drain = self.drain
        if drain is None:
            return
        if not drain.marked:
            self.end(consumer, now)
        else:
            drain.waiting.update(drain.seen)
            drain.seen.clear()

    def step(self, consumer: Consumer, now: float) -> bool:
        """Between two turns of the loop: end a drain that is done or must stop; True when every
        marker is back and the drain wants the commit that completes it."""
        drain = self.drain
        if drain is None:
            return False
        if drain.done and not drain.cancelled:  # a rebalance after the last commit still cancels it
            self.direct |= drain.partitions
            log.info("by-user shortcut: partitions %s in place after a %.0f ms drain", sorted(drain.partitions),
                     (now - drain.started) * 1000)
            self.end(consumer, now, retry=False)
            return False
        if drain.cancelled or now - drain.started > DRAIN_TIMEOUT_S:
            log.info("by-user shortcut: drain of partitions %s %s; they stay on the topic for now",
                     sorted(drain.partitions), "cancelled by a rebalance" if drain.cancelled else "timed out")
            self.end(consumer, now)
            return False
        return drain.marked and not drain.waiting

    def end(self, consumer: Consumer, now: float, retry: bool = True) -> None:
        """Resume the raw partitions, each from the first message it passed over."""
        if self.paused:
            consumer.resume([TopicPartition(self.raw_topic, partition) for partition in sorted(self.paused)])
            for partition, offset in sorted(self.skipped.items()):
                consumer.seek(TopicPartition(self.raw_topic, partition, offset))
        self.drain, self.paused, self.skipped = None, set(), {}
        if retry:
            self.not_before = now + RETRY_AFTER_S

    # ---- rebalance ----------------------------------------------------------------------------
    def assigned(self, partitions: list[TopicPartition]) -> None:
        """New partitions: a raw one may bring an earlier owner's records, so nothing stays in place."""
        if not partitions:
            return
        self.direct.clear()
        if self.drain is not None:
            self.drain.cancelled = True
        grown = [tp.partition for tp in partitions if tp.topic == self.by_user_topic and tp.partition >= self.count]
        if grown and self.enabled and self.count:
            # The partitioner's answer changed with the count: until a restart, every event takes the topic.
            log.warning("by-user partition %d is past the %d the run started with: the by-user shortcut is off "
                        "until a restart", max(grown), self.count)
            self.enabled = False

    def dropped(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self.by_user_topic:
                self.direct.discard(tp.partition)
                if self.drain is not None:
                    self.drain.partitions.discard(tp.partition)
                    self.drain.waiting.discard(tp.partition)
                    if not self.drain.partitions:
                        self.drain.cancelled = True  # nothing left to drain: ended at the next step
            elif tp.topic == self.raw_topic:
                self.paused.discard(tp.partition)
                self.skipped.pop(tp.partition, None)
