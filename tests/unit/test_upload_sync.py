"""Sync upload replication against fake peers and a real (SQLite) state store: what an upload waits for,
the fallback to lagging at the bound, and coming back in sync once the peer caught up."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry

from regionflow.ids import job_id_for
from regionflow.replication.upload_sync import UploadReplication
from regionflow.state import JobRecord, open_state_store
from regionflow.state.base import StateStore

EAST, WEST = "us-east-1", "us-west-2"


class FakePeer:
    def __init__(self) -> None:
        self.received: list[list[dict[str, Any]]] = []
        self.inline: list[list[dict[str, str]] | None] = []
        self.release = threading.Event()
        self.release.set()
        self.fail: Exception | None = None
        self.checkpoint = 0

    def replica_apply(self, source: str, changes: list[dict[str, Any]],
                      inline: list[dict[str, str]] | None = None) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        self.release.wait(10)
        self.received.append(changes)
        self.inline.append(inline)
        return {"objects": 1}

    def applied_from(self, source: str) -> dict[str, Any]:
        return {"source": source, "reachable": True, "paused": False,
                "checkpoint": {"objects": self.checkpoint, "state": self.checkpoint}}


def _upload(state: StateStore, key: str, version: str) -> tuple[int, str]:
    """What the gateway does before acknowledging: feed the object, create its job (plus unrelated noise)."""
    since = state.feed_head()
    state.record_object_change("work/other/chunk-0", {"version_id": "V0", "key": "work/other/chunk-0"})
    state.record_object_change(key, {"version_id": version, "key": key})
    job_id = job_id_for(key, version)
    state.create_job(JobRecord(job_id=job_id, input_key=key, version_id=version, input_etag="e", pipeline="default",
                               owner_region=EAST, owner_epoch=1, created_at=0.0))
    return since, job_id


def _sync(tmp_path, peer: FakePeer, bound: float = 5.0) -> tuple[UploadReplication, StateStore]:
    state = open_state_store(f"sqlite:///{tmp_path / 'east.db'}", EAST)
    return UploadReplication(EAST, state, {WEST: peer}, mode="sync", bound=bound,
                             registry=CollectorRegistry()), state


def test_an_upload_waits_for_the_peer_and_sends_only_its_own_changes(tmp_path):
    peer = FakePeer()
    sync, state = _sync(tmp_path, peer)
    since, job_id = _upload(state, "input/a.csv", "V1")
    answer = sync.acknowledge("input/a.csv", "V1", job_id, since)
    assert answer["confirmed_by"] == [WEST] and answer["not_confirmed_by"] == [] and answer["lagging"] == []
    (sent,) = peer.received
    assert [(c["table"], c["key"]) for c in sent] == [("objects", "input/a.csv"), ("jobs", job_id)]
    assert sync.status()["lagging"] == []


def test_a_peer_that_does_not_confirm_within_the_bound_is_marked_lagging_and_not_waited_for(tmp_path):
    peer = FakePeer()
    peer.release.clear()  # it never answers in time
    sync, state = _sync(tmp_path, peer, bound=0.3)
    since, job_id = _upload(state, "input/a.csv", "V1")
    answer = sync.acknowledge("input/a.csv", "V1", job_id, since)
    assert answer["confirmed_by"] == [] and answer["not_confirmed_by"] == [WEST]
    status = sync.status()
    assert status["lagging"] == [WEST] and "0.3s" in status["peers"][WEST]["reason"]
    assert sync.metrics.lagging.labels(WEST)._value.get() == 1
    since, job_id = _upload(state, "input/b.csv", "V2")
    later = sync.acknowledge("input/b.csv", "V2", job_id, since)
    assert later["lagging"] == [WEST] and later["confirmed_by"] == []
    assert sync.metrics.fallbacks.labels(WEST)._value.get() == 2
    peer.release.set()
    sync.close()


def test_a_lagging_peer_is_waited_for_again_once_it_applied_the_feed_up_to_the_previous_check(tmp_path):
    peer = FakePeer()
    peer.fail = ConnectionError("connection refused")
    sync, state = _sync(tmp_path, peer)
    since, job_id = _upload(state, "input/a.csv", "V1")
    assert sync.acknowledge("input/a.csv", "V1", job_id, since)["not_confirmed_by"] == [WEST]
    assert sync.status()["peers"][WEST]["reason"] == "connection refused"
    peer.fail = None
    sync.recover_once()  # first check: notes where the feed stands
    assert sync.status()["lagging"] == [WEST]
    head = state.feed_head()
    peer.checkpoint = head - 1
    sync.recover_once()  # behind what the first check saw
    assert sync.status()["lagging"] == [WEST]
    peer.checkpoint = head
    _upload(state, "input/noise.csv", "V9")  # the feed keeps growing: not a reason to stay lagging
    sync.recover_once()
    assert sync.status()["lagging"] == [] and sync.metrics.lagging.labels(WEST)._value.get() == 0
    since, job_id = _upload(state, "input/c.csv", "V3")
    assert sync.acknowledge("input/c.csv", "V3", job_id, since)["confirmed_by"] == [WEST]


def test_async_mode_waits_for_nobody(tmp_path):
    peer = FakePeer()
    state = open_state_store(f"sqlite:///{tmp_path / 'east.db'}", EAST)
    sync = UploadReplication(EAST, state, {WEST: peer}, mode="async", bound=2, registry=CollectorRegistry())
    since, job_id = _upload(state, "input/a.csv", "V1")
    assert sync.acknowledge("input/a.csv", "V1", job_id, since) == {"mode": "async"}
    assert peer.received == []
