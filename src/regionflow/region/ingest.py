"""Taking in an object that is already in the region's store but not (yet) in its feed: an S3 PUT the
access point passed through, or what the store watcher found.

It gets the same promises as a gateway upload (objects.store_upload): the object is recorded in the change
feed, the other regions get it as the replication mode says (sync: before the answer), and only then does
the active region start its job. One key is taken in by one caller at a time, so an access point's
notice and the watcher finding the same object make one feed record and one wait.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from regionflow.crashpoints import crash_point
from regionflow.ids import job_id_for
from regionflow.replication.feeding import FeedingObjectStore
from regionflow.replication.upload_sync import UploadReplication
from regionflow.state.base import StateStore
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX
from regionflow.workloads.batch.service import BatchService


class Ingest:
    def __init__(self, region: str, objects: FeedingObjectStore, state: StateStore, uploads: UploadReplication,
                 batch: BatchService):
        self.region = region
        self.objects = objects
        self.state = state
        self.uploads = uploads
        self.batch = batch
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def _one_at_a_time(self, key: str) -> Iterator[None]:
        with self._lock:
            lock, users = self._keys.get(key, (threading.Lock(), 0))
            self._keys[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._keys[key]
                if users == 1:
                    del self._keys[key]
                else:
                    self._keys[key] = (lock, users - 1)

    def take_in(self, key: str) -> dict[str, Any]:
        """Feed key's object if the region does not know it at its current version, wait for the other
        regions as the replication mode says, then start its job (input/, active region). The answer
        (like an upload's, with "fed": whether this call fed it). No object at key: its delete is fed
        (if the region knew it) and the answer says "deleted".
        Blocks; raises the stores' errors (StoreUnavailable, StateUnavailable)."""
        with self._one_at_a_time(key), self.batch.holding(key):
            info = self.objects.adopt(key)
            if info is None:
                # Deleted (through the access point, or since it was seen): the other regions delete it too.
                fed = key in self.state.stored_versions([key])
                if fed:
                    self.state.record_object_change(key, None)
                return {"region": self.region, "key": key, "deleted": True, "fed": fed}
            known = self.state.stored_versions([key]).get(key)
            job_id = job_id_for(key, info.version_id) if key.startswith(INPUT_PREFIX) else None
            answer = {"region": self.region, "key": key, "version_id": info.version_id, "etag": info.etag,
                      "size": info.size, "job_id": job_id}
            if known is not None and known >= info.version_id:
                # Fed already (by the watcher, or an earlier notice), which waited as this call would have.
                return {**answer, "fed": False, "started_here": False, "replication": {"mode": "already fed"}}
            # The object is in the store and no feed names it yet: the gap the store watcher closes.
            crash_point("ingest:before_feed")
            since = self.state.feed_head()
            self.objects.record(info)
            replicated = self.uploads.acknowledge(key, info.version_id, None, since)
        started = self.batch.object_created(key)
        return {**answer, "fed": True, "started_here": started is not None, "replication": replicated}
