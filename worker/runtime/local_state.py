"""Where a partition's stores live: in memory (`state_store=memory`), or in a RocksDB directory
under `state_dir` (`state_store=disk`), one per group, instance and partition:

    <state_dir>/<group_id>/<instance_id>/<user-state topic>-<partition>

An instance restarted under its id (a pod of a StatefulSet, a child `<id>-<n>` of
`run --processes N`) finds its stores there and reads only the changelogs' tail. A directory
another process still holds (RocksDB's lock) is waited for; one that cannot be opened (corrupt,
or not a store) is removed and rebuilt from the changelogs, never trusted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from worker.errors import KafkaFatalError
from worker.runtime.kv import KeyValue, MemoryKV, RocksKV, destroy
from worker.runtime.settings import StateStore, WorkerSettings
from worker.runtime.state import EXPIRY, KafkaStores, StateCache
from worker.serde import Codec

log = logging.getLogger(__name__)
LOCK_RETRY_S = 0.5


class StoreFactory:
    def __init__(self, settings: WorkerSettings, codec: Codec, cache: StateCache,
                 on_rebuild: Callable[[str], None] = lambda reason: None) -> None:
        self.settings, self.codec, self.cache, self.on_rebuild = settings, codec, cache, on_rebuild
        self.root = settings.state_dir / settings.group_id / settings.instance_id

    def path(self, partition: int) -> Path:
        return self.root / f"{self.settings.topics.state}-{partition}"

    def open(self, partition: int) -> KafkaStores:
        kv = MemoryKV(EXPIRY) if self.settings.state_store is StateStore.MEMORY else self.open_disk(partition)
        return KafkaStores(partition, kv, self.cache, self.codec.encode, self.codec.decode)

    def open_usable(self, partition: int) -> KafkaStores:
        """A store whose checkpoint can be read; an unreadable one (or of another format) is rebuilt."""
        stores = self.open(partition)
        if not stores.fresh and stores.trusted is None:
            return self.rebuild(stores, "unreadable", "its checkpoint is unreadable or of another format")
        return stores

    def rebuild(self, stores: KafkaStores, reason: str, why: str) -> KafkaStores:
        """Throw a store away and start an empty one: the changelogs hold everything it held."""
        log.warning("partition %d: rebuilding its store from the changelogs: %s", stores.partition, why)
        self.on_rebuild(reason)
        stores.close()
        if self.settings.state_store is StateStore.DISK:
            destroy(self.path(stores.partition))
        return self.open(stores.partition)

    def open_disk(self, partition: int) -> KeyValue:
        path = self.path(partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.settings.restore_timeout_s
        while True:
            try:
                return RocksKV(path)
            except Exception as exc:  # rocksdict raises plain Exceptions, told apart by their text
                if "lock" not in str(exc).lower():
                    log.warning("partition %d: the store in %s cannot be opened (%s); rebuilding it",
                                partition, path, exc)
                    self.on_rebuild("unreadable")
                    destroy(path)
                    return RocksKV(path)
                if time.monotonic() > deadline:
                    raise KafkaFatalError(f"the store in {path} is held by another process: {exc}") from exc
                time.sleep(LOCK_RETRY_S)  # its previous owner in this pod is still letting it go
