"""Synchronous replication of uploads (RPO 0 for inputs).

In sync mode an upload is acknowledged only when every other region has stored it: the region that took
it sends that region the upload's feed changes (the object put and the job record it created) with, up to
INLINE_BYTES, the object's bytes, and the other region stores the object (the bytes it was sent, checked
against the change's sha256 and version id, or else fetched back from this region) and applies the row
before answering. A region that does not answer within the bound is marked lagging and the upload is
acknowledged anyway, like PostgreSQL's synchronous standby falling back: later uploads stop waiting for it
(each would pay the full bound) until its replicator has caught up with this region's feed again, which a
background loop watches.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from regionflow.state.base import Change, StateStore
from regionflow.state.schema import OBJECTS_FEED

log = logging.getLogger("regionflow.replication")

_FEED_PAGE = 1000
# Uploads up to this size travel with the replica request (base64 in its JSON: a third more on the wire),
# which saves the peer a fetch back of the object, most of what an upload waited for; larger ones are
# fetched as the replicator does, streamed, so that no request body holds more than this much.
INLINE_BYTES = 4 << 20
RECOVERY_INTERVAL = 0.5


class ReplicaPeer(Protocol):
    """How this region reaches another region for sync uploads."""

    def replica_apply(self, source: str, changes: list[dict[str, Any]],
                      inline: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """Have the peer store these changes of source's feed now, the objects named in inline (key,
        version_id, base64 data) from the bytes given there; raises when it cannot (any error)."""
        ...

    def applied_from(self, source: str) -> dict[str, Any]:
        """The peer's replication from source as of its last pass: reachable, paused, checkpoint per kind."""
        ...


@dataclass
class PeerSync:
    """Whether uploads wait for one peer: in_sync, or lagging since a time for a reason."""

    peer: str
    in_sync: bool = True
    lagging_since: float | None = None
    reason: str | None = None
    fallbacks: int = 0


class UploadSyncMetrics:
    def __init__(self, registry: CollectorRegistry, peers: list[str]):
        r = registry
        self.seconds = Histogram("regionflow_upload_replication_seconds",
                                 "Time an upload waited for the other regions (sync mode)", registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0))
        self.lagging = Gauge("regionflow_upload_replication_lagging",
                             "1 while uploads are acknowledged without waiting for this peer", ["peer"],
                             registry=r)
        self.fallbacks = Counter("regionflow_upload_replication_fallbacks_total",
                                 "Uploads acknowledged without this peer's confirmation", ["peer"], registry=r)
        for peer in peers:  # every series exists from the start, at zero
            self.lagging.labels(peer).set(0)
            self.fallbacks.labels(peer)


class UploadReplication:
    def __init__(self, region: str, state: StateStore, peers: Mapping[str, ReplicaPeer], *, mode: str,
                 bound: float, registry: CollectorRegistry, clock: Callable[[], float] = time.time):
        self.region = region
        self.state = state
        self.peers = dict(peers)
        self.mode = mode
        self.bound = bound
        self.metrics = UploadSyncMetrics(registry, list(self.peers))
        self._clock = clock
        self._sync = {name: PeerSync(name) for name in self.peers}
        self._probe_heads: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max(1, len(self.peers)) * 4, thread_name_prefix="upload-sync")

    # -- acknowledging an upload ---------------------------------------------------------------------
    def acknowledge(self, key: str, version_id: str, job_id: str | None, since: int,
                    body: bytes | None = None) -> dict[str, Any]:
        """Block until every in-sync peer stored the upload of key@version_id (fed after seq since), each
        for at most the bound; what happened, for the upload's answer. body: the upload's bytes, when the
        caller holds them in memory (sent along up to INLINE_BYTES)."""
        if self.mode != "sync" or not self.peers:
            return {"mode": self.mode}
        started = time.monotonic()
        changes = [_wire(c) for c in self._upload_changes(key, version_id, job_id, since)]
        waiting = [name for name in self.peers if self._sync[name].in_sync]
        inline = ([{"key": key, "version_id": version_id, "data": base64.b64encode(body).decode("ascii")}]
                  if body is not None and len(body) <= INLINE_BYTES and waiting else None)
        futures = {name: self._pool.submit(self.peers[name].replica_apply, self.region, changes, inline)
                   for name in waiting}
        confirmed: list[str] = []
        for name, future in futures.items():
            left = max(0.0, self.bound - (time.monotonic() - started))
            try:
                future.result(timeout=left)
                confirmed.append(name)
            except Exception as exc:  # timeout, unreachable, refused, paused: all mean "not confirmed"
                self._mark_lagging(name, _reason(exc, self.bound))
        not_confirmed = [name for name in self.peers if name not in confirmed]
        for name in not_confirmed:
            self.metrics.fallbacks.labels(name).inc()
            with self._lock:
                self._sync[name].fallbacks += 1
        elapsed = time.monotonic() - started
        self.metrics.seconds.observe(elapsed)
        return {"mode": "sync", "confirmed_by": confirmed, "not_confirmed_by": not_confirmed,
                "lagging": sorted(set(self.peers) - set(waiting)), "seconds": round(elapsed, 4)}

    def _upload_changes(self, key: str, version_id: str, job_id: str | None, since: int) -> list[Change]:
        """This upload's feed changes: its object put and its job's record (other writers' changes that
        were fed meanwhile are skipped)."""
        head = self.state.feed_head()
        found: list[Change] = []
        # Read by kind: under load most changes fed since are other jobs' rows (rejects above all), which
        # an upload without a job of its own need not read and decode.
        for kind in ("objects", "state") if job_id is not None else ("objects",):
            seq = since
            while seq < head:
                page = self.state.feed_since(seq, _FEED_PAGE, kind)
                if not page:
                    break
                found += [c for c in page if _is_object(c, key, version_id) or (c.table == "jobs" and c.key == job_id)]
                seq = page[-1].seq
        return sorted(found, key=lambda c: c.seq)

    # -- lagging peers -----------------------------------------------------------------------------
    def _mark_lagging(self, name: str, reason: str) -> None:
        with self._lock:
            peer = self._sync[name]
            if peer.in_sync:
                log.warning("uploads no longer wait for %s: %s", name, reason)
                peer.in_sync, peer.lagging_since = False, self._clock()
            peer.reason = reason
        self.metrics.lagging.labels(name).set(1)

    def _mark_in_sync(self, name: str) -> None:
        with self._lock:
            peer = self._sync[name]
            if not peer.in_sync:
                log.info("%s caught up: uploads wait for it again", name)
            peer.in_sync, peer.lagging_since, peer.reason = True, None, None
        self.metrics.lagging.labels(name).set(0)

    def recover_once(self) -> None:
        """Put every lagging peer back in sync once its replicator has applied this region's feed up to
        where it stood at the previous check (a peer's status is as of its last pass, and the feed keeps
        growing under load, so "up to the head now" might never be seen)."""
        for name, peer in list(self._sync.items()):
            if peer.in_sync:
                continue
            target = self._probe_heads.get(name)
            self._probe_heads[name] = self.state.feed_head()
            try:
                mine = self.peers[name].applied_from(self.region)
            except Exception as exc:
                with self._lock:
                    peer.reason = _reason(exc, self.bound)
                continue
            if target is None or mine is None or not mine.get("reachable") or mine.get("paused"):
                continue
            if min(mine.get("checkpoint", {}).values() or [0]) >= target:
                self._mark_in_sync(name)
                self._probe_heads.pop(name, None)

    def recover_lagging(self, stop: threading.Event) -> None:
        """Loop recover_once until stop is set (a region's background thread)."""
        while not stop.wait(RECOVERY_INTERVAL):
            try:
                self.recover_once()
            except Exception:
                log.exception("checking lagging peers failed")

    # -- views -------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The mode, the bound and each peer's sync state (for status pages, the console and tests)."""
        with self._lock:
            peers = {name: asdict(peer) for name, peer in self._sync.items()}
        return {"mode": self.mode, "bound_seconds": self.bound, "peers": peers,
                "lagging": sorted(n for n, p in peers.items() if not p["in_sync"])}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _is_object(change: Change, key: str, version_id: str) -> bool:
    return (change.table == OBJECTS_FEED and change.key == key
            and (change.row or {}).get("version_id") == version_id)


def _wire(change: Change) -> dict[str, Any]:
    return asdict(change)


def _reason(exc: BaseException, bound: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no confirmation within {bound:g}s"
    return str(exc) or type(exc).__name__
