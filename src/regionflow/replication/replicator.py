"""A replicator for one direction (source -> this region): tail the source's feed from the checkpoint
kept here, copy objects, apply rows, and advance the checkpoint in the same transaction as the apply."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from regionflow.replication.source import FeedSource, SourceUnavailable
from regionflow.state.base import Change, StateStore
from regionflow.storage.base import ObjectStore

log = logging.getLogger("regionflow.replication")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def version_millis(version_id: str) -> int:
    """The creation time (ms) encoded in a ULID version id."""
    value = 0
    for ch in version_id[:10]:
        value = value * 32 + _CROCKFORD.index(ch)
    return value


@dataclass
class DirectionStatus:
    source: str
    target: str
    reachable: bool = False
    paused: bool = False
    checkpoint: int = 0
    source_head: int = 0
    backlog: dict[str, int] = field(default_factory=lambda: {"objects": 0, "state": 0})
    lag_seconds: dict[str, float] = field(default_factory=lambda: {"objects": 0.0, "state": 0.0})
    last_applied_at: float | None = None
    last_error: str | None = None
    updated_at: float = 0.0

    def as_dict(self) -> dict:
        return {
            "source": self.source, "target": self.target, "reachable": self.reachable, "paused": self.paused,
            "checkpoint": self.checkpoint, "source_head": self.source_head, "backlog": dict(self.backlog),
            "lag_seconds": {k: round(v, 3) for k, v in self.lag_seconds.items()},
            "last_applied_at": self.last_applied_at, "last_error": self.last_error, "updated_at": self.updated_at,
        }


class Replicator:
    def __init__(self, source: FeedSource, target_region: str, state: StateStore, objects: ObjectStore,
                 on_object: Callable[[str], None] | None = None, interval: float = 0.2, batch: int = 500):
        self.source = source
        self.state = state
        self.objects = objects  # the plain store: replicated puts are not fed again
        self.on_object = on_object
        self.interval = interval
        self.batch = batch
        self.status = DirectionStatus(source=source.name, target=target_region)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass ----------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Apply one batch; returns how many changes were read (0 when drained, paused or unreachable)."""
        st = self.status
        st.paused = self.state.is_paused(self.source.name)
        st.checkpoint = self.state.get_checkpoint(self.source.name)
        try:
            if st.paused:
                self._refresh_stats()
                return 0
            changes = self.source.feed(st.checkpoint, self.batch)
            if changes:
                self._apply(changes)
            self._refresh_stats()
            st.reachable, st.last_error = True, None
            return len(changes)
        except SourceUnavailable as exc:
            st.reachable, st.last_error = False, str(exc)
            return 0
        finally:
            st.updated_at = time.time()

    def _refresh_stats(self) -> None:
        st = self.status
        st.checkpoint = self.state.get_checkpoint(self.source.name)
        stats = self.source.stats(st.checkpoint)
        st.reachable = True
        st.source_head = stats["head"]
        now = time.time()
        for kind in ("objects", "state"):
            st.backlog[kind] = stats[kind]["count"]
            oldest = stats[kind]["oldest"]
            st.lag_seconds[kind] = max(0.0, now - oldest) if oldest else 0.0
        link = self.state.replication_link(self.source.name)
        st.last_applied_at = link.get("applied_at")

    def _apply(self, changes: list[Change]) -> None:
        arrived: list[str] = []
        rows = []
        for change in changes:
            if change.table == "objects":
                self._apply_object(change)
                if change.row is not None:
                    # Every replicated put reaches the trigger, even one already superseded at the source:
                    # a standby counts each upload it saw as skipped (DESIGN §2 step 3).
                    arrived.append(change.key)
            else:
                rows.append(change)
        # Objects first: a job row never lands before the objects it names. The checkpoint moves with
        # the rows, in one transaction; re-applying objects after a crash here is harmless.
        self.state.apply_changes_and_checkpoint(self.source.name, rows, changes[-1].seq)
        if self.on_object is not None:
            for key in arrived:
                try:
                    self.on_object(key)
                except Exception:  # a trigger problem must not stop replication
                    log.exception("handling replicated object %s", key)

    def _apply_object(self, change: Change) -> bool:
        local = self.objects.head(change.key)
        if change.row is None:  # a delete: only of a version older than the delete itself
            if local is not None and version_millis(local.version_id) <= change.created_at * 1000:
                self.objects.delete(change.key)
            return False
        wanted = change.row["version_id"]
        if local is not None and local.version_id >= wanted:
            return False
        fetched = self.source.fetch_object(change.key)
        if fetched is None:
            return False  # deleted at the source since; its delete is further down the feed
        info, data = fetched
        if info.version_id != wanted:
            return False  # overwritten at the source since; the newer put is further down the feed
        if hashlib.sha256(data).hexdigest() != info.etag:
            raise SourceUnavailable(f"{self.source.name}: object {change.key} arrived damaged")
        self.objects.put(change.key, data, content_type=info.content_type, metadata=info.metadata,
                         version_id=info.version_id)
        return True

    # -- background loop ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"replicate-{self.source.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                read = self.run_once()
            except Exception as exc:
                log.exception("replication from %s failed", self.source.name)
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                read = 0
            if read < self.batch:
                self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
