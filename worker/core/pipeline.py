"""The one composition point of the core: what a raw message, or a validated event, causes.

`process-file`, the Kafka runner (both of its stages, or one step with `skip_split`), the tests
and the benchmarks all call a `Pipeline`, so every path gives the same records:

    split(message)            SPEC §2: validated events keyed by user, and DLQ records
    process(event, stores)    SPEC §3–§8: dedupe, the rules of the event's kind, the operations
    run(message, stores)      both, for a path without the by-user hop

Per event, `process` returns an `Outcome` (the enriched event, the delta, a DLQ record, counts).
The changelog records — state (last value per user), dedupe entries and registry admissions —
are not per event: they wait in the stores' pending layers (worker.core.stores.Stores), and the
caller writes them once per batch and then commits or rolls back the stores with the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from worker.core import reasons
from worker.core.config import CoreConfig
from worker.core.dedupe import dedupe_key, is_duplicate
from worker.core.experiments import Transformed, renamed_type, transform
from worker.core.limit import Admission, ExperimentRegistry
from worker.core.records import DlqRecord, RawMessage, UserEvent, delta_record
from worker.core.split import PROJECT_HEADER, SKIP_SYNC, Judge, Split, judge_event, split_message
from worker.core.stores import Stores
from worker.core.values import JsonObject

Transform = Callable[[UserEvent, JsonObject, Admission], Transformed]


class Outcome:
    """Everything one event produced; the caller turns it into records and metrics."""

    __slots__ = ("add_ignored", "delta", "dlq", "duplicate", "event", "limit_dropped", "unset_exposure")

    def __init__(self, event: JsonObject | None = None, delta: JsonObject | None = None,
                 dlq: DlqRecord | None = None, duplicate: bool = False) -> None:
        self.event, self.delta, self.dlq, self.duplicate = event, delta, dlq, duplicate
        self.unset_exposure = False
        self.limit_dropped = 0
        self.add_ignored = 0


class Processed:
    """What one raw message caused, through both stages."""

    __slots__ = ("outcomes", "rejected")

    def __init__(self, outcomes: list[Outcome], rejected: list[DlqRecord]) -> None:
        self.outcomes, self.rejected = outcomes, rejected


class Pipeline:
    """The rules of SPEC §2–§8 over one instance's experiment-property registry.

    `judge` and `transform` are the two rule sets an event goes through (SPEC §2, and §3–§7 by
    event kind); a test may hand in a failing one to see a `processing_error` cost one event."""

    __slots__ = ("config", "judge", "registry", "transform")

    def __init__(self, config: CoreConfig, registry: ExperimentRegistry | None = None,
                 judge: Judge = judge_event, transform: Transform = transform) -> None:
        self.config = config
        self.registry = registry if registry is not None else ExperimentRegistry(config.experiment_property_limit)
        self.judge = judge
        self.transform = transform

    def split(self, message: RawMessage) -> Split:
        return split_message(message, self.config, self.judge)

    def run(self, message: RawMessage, stores: Stores) -> Processed:
        split = self.split(message)
        return Processed([self.process(event, stores) for event in split.events], split.rejected)

    def process(self, user_event: UserEvent, stores: Stores) -> Outcome:
        """`process_event`, with an unexpected exception turned into a `processing_error` DLQ record."""
        try:
            return self.process_event(user_event, stores)
        except Exception as exc:
            return Outcome(dlq=processing_error(user_event, exc))

    def process_event(self, user_event: UserEvent, stores: Stores) -> Outcome:
        config = self.config
        user_key, ingested_at = user_event.user_key, user_event.ingested_at
        insert_id = user_event.event.get("insert_id")
        entry = None
        if insert_id is not None:
            entry = dedupe_key(user_key, insert_id)
            if is_duplicate(stores.first_seen(entry), ingested_at, config.dedupe_window_ms):
                return Outcome(duplicate=True)
        admission = Admission(self.registry, user_event.project_id, config.experiment_property_limit)
        old = {} if user_event.skip_sync else (stores.state_of(user_key) or {})
        result = self.transform(user_event, old, admission)
        outcome = Outcome(result.event)
        if result.changes:
            outcome.delta = delta_record(user_event, renamed_type(user_event.event["event_type"]), result.changes)
        outcome.unset_exposure = result.unset_exposure
        outcome.limit_dropped = result.stats.limit_dropped
        outcome.add_ignored = result.stats.add_ignored
        # The commit point of this event: nothing above wrote to a store.
        if entry is not None:
            stores.put_dedupe(entry, ingested_at)
        if result.properties is not None and result.changes:
            stores.put_state(user_key, result.properties, ingested_at)
        admission.record(ingested_at)
        return outcome


def processing_error(user_event: UserEvent, exc: Exception) -> DlqRecord:
    """The rejected unit is the normalised event, sent as a bare event with its project header:
    republished to the raw topic it is processed exactly as the original was."""
    bare = {name: value for name, value in user_event.event.items() if name not in ("billable", "ingested_at")}
    if user_event.skip_sync:
        bare[SKIP_SYNC] = True
    return DlqRecord(
        reasons.PROCESSING_ERROR,
        f"{type(exc).__name__}: {exc}",
        user_event.source,
        user_event.ingested_at,
        orjson.dumps(bare),
        user_event.user_key.encode("utf-8"),
        ((PROJECT_HEADER, user_event.project_id.encode("utf-8")),),
    )
