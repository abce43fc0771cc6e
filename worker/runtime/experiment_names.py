"""The experiment property names in JSON state records, found in their bytes while a restore reads
them (SPEC §6: names in use keep working under the limit, whatever the registry says).

Most users of a project hold the same few names, so the question per batch of records is which
records might hold a name not known yet; only those are decoded. The known names of a project are
one compiled pattern: an occurrence of `"[Experiment] ` not followed by the rest of a known name
as JSON writes it (its closing quote included) marks its record. One regular-expression search
over the batch, with no object per occurrence, replaces a `findall` that made one per name
written (half the time; the scan was 40% of a restore's CPU). The search runs over the records
joined whole: looking for the prefix in each record first (to search only from there) cost more
than the search it shortened (1.6 against 0.5 µs a record).

A name written with other escapes than orjson's is never matched, so its records are decoded
(correct, slower); so are records holding an unknown name as a value only.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from itertools import accumulate

import orjson

from worker.core.limit import EXPERIMENT_PREFIX

MARKER = EXPERIMENT_PREFIX.encode()
QUOTED = b'"' + MARKER
SCAN_RECORDS = 4096  # records joined for one search (about 1.3 MB of bench state records)


class NameScan:
    """Known names per project, and the records of a batch that may hold another."""

    def __init__(self) -> None:
        self.known: dict[str, set[bytes]] = {}  # project -> the JSON text after QUOTED, closing quote included
        self.patterns: dict[str, tuple[int, re.Pattern[bytes]]] = {}  # project -> (names in it, pattern)

    def learn(self, project: str, name: str) -> None:
        self.known.setdefault(project, set()).add(orjson.dumps(name)[len(QUOTED):])

    def candidates(self, project: str, records: list[bytes]) -> Iterator[int]:
        """The index of each record holding `"[Experiment] ` followed by no known name, once; a
        name learned while the caller goes through them (it decodes each one) counts from then on.
        Records are searched SCAN_RECORDS at a time, which keeps the joined text small (a restore
        thread's freed text stays in its malloc arena: 6 MB each, joined whole)."""
        for first in range(0, len(records), SCAN_RECORDS):
            for index in self.chunk_candidates(project, records[first:first + SCAN_RECORDS]):
                yield first + index

    def chunk_candidates(self, project: str, records: list[bytes]) -> Iterator[int]:
        blob = b"\n".join(records)  # the separator keeps a match from spanning two records
        known = self.known.setdefault(project, set())
        pattern = self.pattern(project, known)
        starts: list[int] = []  # where each record starts in the blob, once a search finds one
        position = 0
        while True:
            found = pattern.search(blob, position)
            if found is None:
                return
            start = found.end()
            end = blob.find(b'"', start) + 1
            if end and blob[start:end] in known:  # learned since the pattern was made
                position = end
                continue
            if not starts:
                starts = list(accumulate((len(record) + 1 for record in records), initial=0))
            index = bisect_right(starts, found.start()) - 1
            yield index
            position = starts[index + 1]

    def pattern(self, project: str, known: set[bytes]) -> re.Pattern[bytes]:
        made = self.patterns.get(project)
        if made is not None and made[0] == len(known):
            return made[1]
        tails = b"|".join(re.escape(tail) for tail in sorted(known))
        pattern = re.compile(re.escape(QUOTED) + (b"(?!" + tails + b")" if known else b""))
        self.patterns[project] = (len(known), pattern)
        return pattern
