"""The store watcher: a region learns of every object in its object store, however it got there.

Objects reach a region's store through the gateway (fed as they are written), through the access point's
S3 pass-through, or straight from an S3 client on the store's own endpoint; and a crash between a put and
its feed record leaves an object no feed names. Each pass lists the store (one cheap listing, no request
per object), looks closer only at keys whose listing fingerprint changed since the previous pass, and hands
to `found` every key whose object the region does not know at that version (state.stored_versions): an
object written around regionflow (no regionflow metadata yet), or one of regionflow's newer than the
version the region recorded. Replicated copies are recorded by the replicator before they are stored, so
they are never fed back.

A put of regionflow's own that is younger than `settle` seconds is left to its writer, which records it
itself a moment later (a worker's chunk output, an upload being replicated); it is looked at again on the
next pass. Deletes made straight in a store are not fed: like S3 replication's default, removing an
object from one region's store does not remove it from the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from regionflow.errors import RegionflowError
from regionflow.state.base import StateStore
from regionflow.storage.base import ObjectStore

log = logging.getLogger("regionflow.replication")

SETTLE_SECONDS = 10.0


class StoreWatcher:
    def __init__(self, store: ObjectStore, state: StateStore, found: Callable[[str], object], *,
                 settle: float = SETTLE_SECONDS, clock: Callable[[], float] = time.time):
        self.store = store  # the plain store (what is really there)
        self.state = state
        self.found = found
        self.settle = settle
        self._clock = clock
        self._checked: dict[str, str] = {}  # key -> the fingerprint last found known (or handed over)
        self.passes = 0
        self.fed = 0

    def pass_once(self) -> list[str]:
        """One pass: the keys handed to found."""
        listing = dict(self.store.scan())
        for key in [k for k in self._checked if k not in listing]:
            del self._checked[key]
        changed = [k for k, fp in listing.items() if self._checked.get(k) != fp]
        known = self.state.stored_versions(changed) if changed else {}
        handed: list[str] = []
        for key in changed:
            info = self.store.head(key)
            if info is None:
                continue  # deleted since the listing
            ours = bool(info.etag)  # an object written around regionflow has no sha256 etag yet
            if ours and key in known and known[key] >= info.version_id:
                self._checked[key] = listing[key]
                continue
            if ours and self._clock() - info.last_modified < self.settle:
                continue  # its writer is about to record it; looked at again next pass
            try:
                self.found(key)
            except RegionflowError as exc:
                log.warning("store watcher: %s: %s", key, exc)
                continue  # tried again on the next pass
            handed.append(key)
            self._checked[key] = listing[key]
        self.passes += 1
        self.fed += len(handed)
        return handed

    def run(self, stop: threading.Event, interval: float) -> None:
        """Pass every interval seconds until stop is set (a region's background thread)."""
        while not stop.wait(interval):
            try:
                handed = self.pass_once()
                if handed:
                    log.info("store watcher fed %d object(s) the feed did not name: %s", len(handed),
                             ", ".join(handed[:5]) + (" ..." if len(handed) > 5 else ""))
            except RegionflowError as exc:
                log.warning("store watcher: %s", exc)
            except Exception:
                log.exception("store watcher pass failed")
