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
TRIE_DEPTH = 32  # nested groups in a name pattern at most (sre compiles groups recursively)
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
        Records are searched SCAN_RECORDS at a time, which keeps the joined text small (a batch
        joined whole made 6 MB texts, and a 1M-user restore's RSS after it 20 MB higher)."""
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
        pattern = re.compile(re.escape(QUOTED) + (b"(?!" + trie(sorted(known)) + b")" if known else b""))
        self.patterns[project] = (len(known), pattern)
        return pattern


def trie(words: list[bytes], depth: int = 0) -> bytes:
    """A pattern matching any of `words` (sorted, distinct) at a position, their shared prefixes
    factored out. sre tries an alternation's branches one after another, so a lookahead listing n
    names costs up to n tries at each `"[Experiment] ` (500 names: 2.9 µs a bench record); as a
    trie it is one walk along the name (0.4 µs; 31 names: 0.46 against 0.34 µs). Below TRIE_DEPTH
    branchings, or where one word ends inside another (a name's text ends with its closing quote,
    so only for odd input), the rest is a plain alternation."""
    if len(words) == 1:
        return re.escape(words[0])
    first, last = words[0], words[-1]  # sorted: the first and the last share the least
    shared = 0
    while shared < min(len(first), len(last)) and first[shared] == last[shared]:
        shared += 1
    prefix = first[:shared]
    rests = [word[shared:] for word in words]
    if depth >= TRIE_DEPTH or not all(rests):
        return re.escape(prefix) + b"(?:" + b"|".join(re.escape(rest) for rest in rests) + b")"
    groups: dict[int, list[bytes]] = {}
    for rest in rests:
        groups.setdefault(rest[0], []).append(rest)
    return re.escape(prefix) + b"(?:" + b"|".join(trie(group, depth + 1) for group in groups.values()) + b")"
