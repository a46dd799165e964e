"""A replicator for one direction (source -> this region). It tails the source's feed with two cursors,
one for objects and one for state rows, each stored here with its own pause flag: objects are copied
(version ids kept), rows are applied with the checkpoint in the same transaction. Like object and table
replication in the cloud, the two kinds may drift apart; reconcile and the orchestrator cope with a
job whose objects have not arrived yet.

One way they may not drift: an object that a workload finds its work by (batch: its inputs; the
`ordered_delete` predicate) is deleted here only once every state row before its delete in the feed is
applied. A job archives and deletes its input after its rows are written; were the delete to overtake
them, a region taking over would hold neither the input nor the job, and forget the file. Other deletes
(a job's work files) do not wait: holding them would tie every object behind them to the rows' pace."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, BinaryIO, cast

from regionflow.errors import ObjectNotFound
from regionflow.replication.source import FeedSource, SourceUnavailable
from regionflow.state.base import Change, StateStore
from regionflow.state.schema import OBJECTS_FEED
from regionflow.storage.base import ObjectInfo, ObjectStore

log = logging.getLogger("regionflow.replication")

_SPOOL_BYTES = 8 << 20
_COPY_BLOCK = 1 << 20
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
KINDS = ("objects", "state")
APPLY_ORDER = ("state", "objects")  # rows first: a delete waits for the rows before it (see above)
FETCHERS = 4
CAUGHT_UP_PAUSE = 0.25  # of the interval, after a pass that applied changes and reached the source's head
# Backlog and lag are asked of the source at most this often: each ask scans the source's feed tail, once
# per kind, and a busy pass takes a few milliseconds. A pass that drains a backlog the last ask reported
# asks at once, so a drained direction shows 0 at once; an idle one (nothing read, nothing reported)
# has nothing new to learn but the odd change that arrived since, which the next ask or pass finds.
STATS_EVERY = 0.5


@dataclass(frozen=True)
class HeldRecipe:
    """How an object's bytes may be made from objects this region holds already: head, then the parts'
    bytes in order (a workload's merged output from its chunk outputs, an archive copy from its input).
    Only a result whose sha256 and size are the change's is stored; otherwise the object is fetched."""

    head: bytes
    parts: tuple[str, ...]


# What a workload knows of its objects: the recipe of an object put (its key and user metadata as the
# source stored it), or None when its bytes can only be fetched.
HeldBytes = Callable[[str, Mapping[str, str]], HeldRecipe | None]


def no_recipe(_key: str, _metadata: Mapping[str, str]) -> HeldRecipe | None:
    return None


def _recipe_of(held_bytes: HeldBytes, change: Change) -> HeldRecipe | None:
    return held_bytes(change.key, (change.row or {}).get("metadata") or {})


def _change_info(change: Change) -> ObjectInfo:
    """The object a put change names (its row is the ObjectInfo the source stored)."""
    row = change.row or {}
    return ObjectInfo(key=change.key, etag=row["etag"], version_id=row["version_id"], size=int(row["size"]),
                      content_type=row.get("content_type", "application/octet-stream"),
                      metadata=dict(row.get("metadata") or {}), last_modified=float(row.get("last_modified", 0.0)))


def version_millis(version_id: str) -> int:
    """The creation time (ms) encoded in a ULID version id."""
    value = 0
    for ch in version_id[:10]:
        value = value * 32 + _CROCKFORD.index(ch)
    return value


class ReplicationPaused(Exception):
    """The direction an upload would be applied through is paused."""


class _HashingSink:
    """A write-only file that hashes what passes through it."""

    def __init__(self, inner: IO[bytes]):
        self.inner = inner
        self._sha = hashlib.sha256()

    def write(self, block: bytes) -> int:
        self._sha.update(block)
        return self.inner.write(block)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


@dataclass
class DirectionStatus:
    source: str
    target: str
    reachable: bool = False
    paused: bool = False
    paused_kinds: list[str] = field(default_factory=list)
    checkpoint: dict[str, int] = field(default_factory=lambda: {"objects": 0, "state": 0})
    source_head: int = 0
    backlog: dict[str, int] = field(default_factory=lambda: {"objects": 0, "state": 0})
    lag_seconds: dict[str, float] = field(default_factory=lambda: {"objects": 0.0, "state": 0.0})
    last_applied_at: float | None = None
    last_error: str | None = None
    updated_at: float = 0.0

    def as_dict(self) -> dict:
        return {
            "source": self.source, "target": self.target, "reachable": self.reachable, "paused": self.paused,
            "paused_kinds": list(self.paused_kinds), "checkpoint": dict(self.checkpoint),
            "source_head": self.source_head, "backlog": dict(self.backlog),
            "lag_seconds": {k: round(v, 3) for k, v in self.lag_seconds.items()},
            "last_applied_at": self.last_applied_at, "last_error": self.last_error, "updated_at": self.updated_at,
        }


class Replicator:
    def __init__(self, source: FeedSource, target_region: str, state: StateStore, objects: ObjectStore,
                 on_object: Callable[[str], None] | None = None, interval: float = 0.2, batch: int = 500,
                 ordered_delete: Callable[[str], bool] = lambda key: True, held_bytes: HeldBytes = no_recipe):
        self.source = source
        self.ordered_delete = ordered_delete  # keys whose deletes wait for the state rows before them
        # Objects whose bytes may be made from objects held here (batch: an archive copy from its input, a
        # merged output from its chunk outputs), read instead of fetched when the sha256 is the change's.
        self.held_bytes = held_bytes
        self.state = state
        self.objects = objects  # the plain store: replicated puts are not fed again
        self.on_object = on_object
        self.interval = interval
        self.batch = batch
        self.status = DirectionStatus(source=source.name, target=target_region)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(FETCHERS, thread_name_prefix=f"fetch-{source.name}")
        self._stats_at = 0.0  # monotonic time of the last stats refresh
        self._behind = False  # the last pass read a full batch of a kind: more is waiting

    def cursor(self, kind: str) -> str:
        """The name under which this direction's cursor (checkpoint + pause flag) of one kind is stored."""
        return self.source.name if kind == "state" else f"{self.source.name}#objects"

    def checkpoint(self, kind: str) -> int:
        return self.state.get_checkpoint(self.cursor(kind))

    def caught_up_to(self, seq: int) -> bool:
        """Whether both kinds have applied every change up to seq."""
        return all(self.checkpoint(k) >= seq for k in KINDS)

    # -- one pass ----------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Apply one batch of each kind; returns how many changes were read (0: drained, paused, unreachable)."""
        st = self.status
        read = 0
        self._behind = False
        try:
            for kind in APPLY_ORDER:
                if self.state.is_paused(self.cursor(kind)):
                    continue
                since = self.checkpoint(kind)
                changes, head = self.source.feed(since, self.batch, kind)
                self._behind = self._behind or len(changes) >= self.batch
                st.source_head = max(st.source_head, head)
                # A short batch holds every change of this kind up to head, so the cursor may pass head.
                upto = max(head, changes[-1].seq if changes else 0) if len(changes) < self.batch else changes[-1].seq
                if kind == "objects":
                    changes, upto = self._before_early_delete(changes, upto)
                read += len(changes)  # (a held delete is not read: a pass that only waits for it reads 0)
                if upto > since:
                    if kind == "objects":
                        self._apply_objects(changes, upto)
                    else:
                        self.state.apply_changes_and_checkpoint(self.cursor("state"), changes, upto)
            drained = read == 0 and any(st.backlog.values())
            if drained or time.monotonic() - self._stats_at >= STATS_EVERY:
                self._refresh_stats()
            st.reachable, st.last_error = True, None
        except SourceUnavailable as exc:
            st.reachable, st.last_error = False, str(exc)
        finally:
            st.updated_at = time.time()
            st.paused_kinds = [k for k in KINDS if self.state.is_paused(self.cursor(k))]
            st.paused = bool(st.paused_kinds)
            st.checkpoint = {k: self.checkpoint(k) for k in KINDS}
        return read

    def _refresh_stats(self) -> None:
        st = self.status
        now = time.time()
        self._stats_at = time.monotonic()
        for kind in KINDS:
            stats = self.source.stats(self.checkpoint(kind))
            st.source_head = stats["head"]
            st.backlog[kind] = stats[kind]["count"]
            oldest = stats[kind]["oldest"]
            st.lag_seconds[kind] = max(0.0, now - oldest) if oldest else 0.0
        st.last_applied_at = self.state.replication_link(self.cursor("state")).get("applied_at")

    def _before_early_delete(self, changes: list[Change], upto: int) -> tuple[list[Change], int]:
        """The object changes (and how far the cursor may go) up to the first delete that the state rows
        applied here have not reached: the cursor stops just before it until they have."""
        rows_applied = self.checkpoint("state")
        for i, change in enumerate(changes):
            if change.row is None and change.seq > rows_applied and self.ordered_delete(change.key):
                return changes[:i], change.seq - 1
        return changes, upto

    def _apply_objects(self, changes: list[Change], upto: int) -> None:
        # Only the last change of each key in the batch matters; distinct keys are fetched in parallel.
        last: dict[str, Change] = {}
        for change in changes:
            last.pop(change.key, None)
            last[change.key] = change
        # Puts first, deletes only once every put has arrived: a delete often follows a copy of the same
        # bytes (a job archives its input, then deletes it), and a source that dies before the copy is
        # fetched must not leave this region with neither.
        # Objects that may be made of others go after them: a merged output whose chunk outputs arrive in
        # the same batch is then composed here, not fetched.
        fetched: list[Change] = []
        made_here: list[Change] = []
        for c in last.values():
            if c.row is not None:
                (fetched if _recipe_of(self.held_bytes, c) is None else made_here).append(c)
        list(self._pool.map(self._apply_object, fetched))
        list(self._pool.map(self._apply_object, made_here))
        list(self._pool.map(self._apply_object, [c for c in last.values() if c.row is None]))
        self.state.set_checkpoint(self.cursor("objects"), upto)
        if self.on_object is not None:
            for change in changes:
                if change.row is None:
                    continue
                # Every replicated put reaches the trigger, even one already superseded at the source:
                # a standby counts each upload it saw as skipped (DESIGN §2 step 3).
                try:
                    self.on_object(change.key)
                except Exception:  # a trigger problem must not stop replication
                    log.exception("handling replicated object %s", change.key)

    def _apply_object(self, change: Change, inline: bytes | None = None) -> None:
        """Store one change's object here: its bytes fetched from the source, or inline (the bytes its
        region sent with a sync upload, which are of the change's own version)."""
        local = self.objects.head(change.key)
        if change.row is None:  # a delete: only of a version older than the delete itself
            if local is not None and version_millis(local.version_id) <= change.created_at * 1000:
                self.objects.delete(change.key)
                self.state.note_stored_object(change.key, None)
            return
        wanted = change.row["version_id"]
        if local is not None and local.version_id >= wanted:
            return
        if inline is not None:
            info = _change_info(change)
            # Checked as a fetched copy is: bytes that are not the recorded ones are never stored.
            if hashlib.sha256(inline).hexdigest() != info.etag or len(inline) != info.size:
                raise SourceUnavailable(f"{self.source.name}: object {change.key} arrived damaged")
            self._store(info, inline)
            return
        if self._copy_held(change):
            return
        # Small objects stay in memory, large ones spill to disk: memory is bounded whatever the size.
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            sink = _HashingSink(spool)
            fetched = self.source.fetch_object(change.key, cast(BinaryIO, sink))
            if fetched is None:
                return  # deleted at the source since; its delete is further down the feed
            # Overwritten at the source since: a newer version is taken as it is (the source's store
            # watcher may feed an object after a newer put of its key), an older one is left alone.
            if fetched.version_id < wanted or (local is not None and local.version_id >= fetched.version_id):
                return
            if sink.hexdigest() != fetched.etag:
                raise SourceUnavailable(f"{self.source.name}: object {change.key} arrived damaged")
            spool.seek(0)
            self._store(fetched, cast(BinaryIO, spool))

    def _copy_held(self, change: Change) -> bool:
        """Store change's object made from bytes held here (held_bytes), checked against its sha256 and size
        as a fetched copy is; False when they are not all here or make other bytes (then it is fetched)."""
        recipe = _recipe_of(self.held_bytes, change)
        if recipe is None or not recipe.parts:
            return False
        info = _change_info(change)
        heads = [self.objects.head(part) for part in recipe.parts]
        if any(h is None for h in heads) or len(recipe.head) + sum(h.size for h in heads if h) != info.size:
            return False
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            sink = _HashingSink(spool)
            sink.write(recipe.head)
            try:
                for part in recipe.parts:
                    with self.objects.open(part) as fh:
                        shutil.copyfileobj(fh, cast(IO[bytes], sink), _COPY_BLOCK)
            except ObjectNotFound:
                return False  # deleted meanwhile (its delete applied here)
            if sink.hexdigest() != info.etag:
                return False  # overwritten meanwhile, or not made as the recipe says
            spool.seek(0)
            self._store(info, cast(BinaryIO, spool))
        return True

    def _store(self, info: ObjectInfo, data: bytes | BinaryIO) -> None:
        # Known before it is stored: the store watcher must never take a replicated copy for an object
        # written around regionflow and feed it back (a crash in between re-applies it from the feed).
        self.state.note_stored_object(info.key, info.version_id)
        self.objects.put(info.key, data, content_type=info.content_type, metadata=info.metadata,
                         version_id=info.version_id)

    # -- an upload pushed by its region (sync mode) ------------------------------------------------
    def apply_upload(self, changes: list[Change], inline: Mapping[tuple[str, str], bytes] | None = None
                     ) -> dict[str, int]:
        """Store one upload now, ahead of the feed: its objects (the bytes in inline, by (key, version id),
        else fetched from the source), then its state rows. The feed brings the same changes later; both
        applies are idempotent (version ids, row versions). Refused (Paused) while a kind it needs is
        paused: a paused direction must not move."""
        inline = inline or {}
        objects = [c for c in changes if c.table == OBJECTS_FEED]
        rows = [c for c in changes if c.table != OBJECTS_FEED]
        paused = [k for k, wanted in (("objects", objects), ("state", rows))
                  if wanted and self.state.is_paused(self.cursor(k))]
        if paused:
            raise ReplicationPaused(f"replication of {', '.join(paused)} from {self.source.name} is paused")
        sent = 0
        for change in objects:
            body = inline.get((change.key, change.row["version_id"])) if change.row is not None else None
            sent += body is not None
            self._apply_object(change, body)
        applied = self.state.apply_changes(rows) if rows else 0
        return {"objects": len(objects), "objects_inline": sent, "rows": len(rows), "rows_applied": applied}

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
            if read == 0:
                self._stop.wait(self.interval)
            elif not self._behind:
                # Caught up: a short pause lets the source's next changes gather into one pull instead of a
                # pull per change (each costs both regions a request); a full batch pulls again at once.
                self._stop.wait(self.interval * CAUGHT_UP_PAUSE)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
