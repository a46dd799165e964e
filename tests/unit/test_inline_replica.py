"""Sync uploads whose bytes travel with the replica request: the peer stores them without fetching them back
from the uploading region, refuses bytes that are not the recorded ones, and still fetches what came
without bytes; an archive copy of an input the standby holds is made from its own bytes. The peer is a
real region's gateway in-process (httpx.ASGITransport) whose source region is not running, so any fetch
back fails; the replicator alone is also checked against a source that counts its fetches."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
from prometheus_client import CollectorRegistry

from regionflow.api import routes
from regionflow.api.wire import auth_header
from regionflow.region.gateway import create_app
from regionflow.region.runtime import Region
from regionflow.replication.replicator import Replicator
from regionflow.replication.source import SourceUnavailable
from regionflow.replication.upload_sync import INLINE_BYTES, UploadReplication
from regionflow.state import open_state_store
from regionflow.state.base import Change
from regionflow.storage.base import ObjectInfo
from regionflow.storage.file import FileObjectStore
from regionflow.workloads.batch.orchestrator import archived_input, chunk_output_key, held_bytes, output_head
from regionflow.workloads.batch.pipeline import default_pipeline

EAST, WEST = "us-east-1", "us-west-2"


def _replica(region: Region, payload: dict[str, Any]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(region))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.post(routes.INTERNAL_REPLICA, json=payload,
                                     headers=auth_header(region.secrets.replication_token))

    return asyncio.run(go())


def _put_change(store: FileObjectStore, key: str, data: bytes, seq: int = 1) -> tuple[ObjectInfo, Change]:
    """An object stored in the uploading region and the feed change that names it."""
    info = store.put(key, data, content_type="text/csv")
    change = Change(seq=seq, table="objects", key=key, row=dataclasses.asdict(info), hlc=1, epoch=1,
                    origin=WEST, created_at=time.time())
    return info, change


def _inline(info: ObjectInfo, data: bytes) -> dict[str, str]:
    return {"key": info.key, "version_id": info.version_id, "data": base64.b64encode(data).decode()}


def test_a_peer_stores_the_bytes_sent_with_the_upload_without_fetching_them(region, tmp_path):
    data = b"id,amount\n1,2\n" * 100
    info, change = _put_change(FileObjectStore(tmp_path / "west-store"), "input/a.csv", data)
    payload = {"source": WEST, "changes": [dataclasses.asdict(change)], "inline": [_inline(info, data)]}
    resp = _replica(region, payload)  # us-west-2 is not running: a fetch back would fail (502)
    assert resp.status_code == 200, resp.text
    assert resp.json()["objects_inline"] == 1
    here = region.objects.head("input/a.csv")
    assert here is not None and (here.version_id, here.etag, here.size) == (info.version_id, info.etag, info.size)
    assert region.objects.get("input/a.csv") == data
    assert region.state.stored_versions(["input/a.csv"]) == {"input/a.csv": info.version_id}
    # re-applying (the feed brings the same change later) changes nothing
    assert _replica(region, payload).status_code == 200
    assert region.objects.head("input/a.csv") == here


def test_bytes_that_are_not_the_recorded_ones_are_refused_and_nothing_is_stored(region, tmp_path):
    data = b"id,amount\n1,2\n"
    info, change = _put_change(FileObjectStore(tmp_path / "west-store"), "input/a.csv", data)
    tampered = b"id,amount\n1,9\n"  # same size, other bytes
    resp = _replica(region, {"source": WEST, "changes": [dataclasses.asdict(change)],
                             "inline": [_inline(info, tampered)]})
    assert resp.status_code == 502 and "damaged" in resp.text
    assert region.objects.head("input/a.csv") is None
    assert region.state.stored_versions(["input/a.csv"]) == {}


def test_bytes_of_a_version_the_request_does_not_put_are_refused(region, tmp_path):
    store = FileObjectStore(tmp_path / "west-store")
    info, change = _put_change(store, "input/a.csv", b"old\n")
    newer, _ = _put_change(store, "input/a.csv", b"new\n")
    resp = _replica(region, {"source": WEST, "changes": [dataclasses.asdict(change)],
                             "inline": [_inline(newer, b"new\n")]})
    assert resp.status_code == 400
    assert region.objects.head("input/a.csv") is None


def test_an_upload_sent_without_its_bytes_is_fetched_back(region, tmp_path):
    info, change = _put_change(FileObjectStore(tmp_path / "west-store"), "input/big.csv", b"x\n")
    resp = _replica(region, {"source": WEST, "changes": [dataclasses.asdict(change)]})
    assert resp.status_code == 502  # it tried the fetch back, and us-west-2 is not there to answer
    assert region.objects.head("input/big.csv") is None


class CountingSource:
    """A source region that serves its objects from a store and counts the fetches."""

    name = WEST

    def __init__(self, store: FileObjectStore):
        self.store = store
        self.fetched: list[str] = []
        self.changes: list[Change] = []  # the feed it serves

    def feed(self, since: int, limit: int, kind: str | None = None) -> tuple[list[Change], int]:
        wanted = [c for c in self.changes if c.seq > since and (kind != "state") == (c.table == "objects")]
        return wanted[:limit], max((c.seq for c in self.changes), default=0)

    def stats(self, since: int) -> dict:
        return {"head": 0, "objects": {"count": 0, "oldest": None}, "state": {"count": 0, "oldest": None}}

    def fetch_object(self, key: str, sink: BinaryIO) -> ObjectInfo | None:
        self.fetched.append(key)
        info = self.store.head(key)
        if info is not None:
            sink.write(self.store.get(key))
        return info


def _replicator(tmp_path: Path) -> tuple[Replicator, CountingSource, FileObjectStore, FileObjectStore]:
    source_store = FileObjectStore(tmp_path / "west")
    source = CountingSource(source_store)
    state = open_state_store(f"sqlite:///{tmp_path / 'east.db'}", EAST)
    here = FileObjectStore(tmp_path / "east")
    return Replicator(source, EAST, state, here), source, source_store, here


def test_the_replicator_uses_inline_bytes_and_fetches_only_what_came_without(tmp_path):
    rep, source, source_store, here = _replicator(tmp_path)
    try:
        small, small_change = _put_change(source_store, "input/small.csv", b"a\n")
        big, big_change = _put_change(source_store, "input/big.csv", b"b\n" * 1000, seq=2)
        answer = rep.apply_upload([small_change, big_change], {("input/small.csv", small.version_id): b"a\n"})
        assert answer["objects_inline"] == 1
        assert source.fetched == ["input/big.csv"]
        for info in (small, big):
            got = here.head(info.key)
            assert got is not None and (got.version_id, got.etag) == (info.version_id, info.etag)
        with pytest.raises(SourceUnavailable):
            _, other = _put_change(source_store, "input/other.csv", b"c\n", seq=3)
            rep.apply_upload([other], {("input/other.csv", other.row["version_id"]): b"C\n"})  # type: ignore[index]
        assert here.head("input/other.csv") is None and source.fetched == ["input/big.csv"]
    finally:
        rep.stop()
        rep.state.close()


class RecordingPeer:
    def __init__(self) -> None:
        self.inline: list[list[dict[str, str]] | None] = []

    def replica_apply(self, source: str, changes: list[dict[str, Any]],
                      inline: list[dict[str, str]] | None = None) -> dict[str, Any]:
        self.inline.append(inline)
        return {"objects": 1}

    def applied_from(self, source: str) -> dict[str, Any]:
        return {"source": source, "reachable": True, "paused": False, "checkpoint": {"objects": 0, "state": 0}}


def test_an_upload_sends_its_bytes_up_to_the_limit_and_larger_ones_go_by_fetch(tmp_path):
    state = open_state_store(f"sqlite:///{tmp_path / 'east.db'}", EAST)
    peer = RecordingPeer()
    sync = UploadReplication(EAST, state, {WEST: peer}, mode="sync", bound=5.0, registry=CollectorRegistry())
    try:
        for key, version, body in (("input/a.csv", "V1", b"x\n" * 10), ("input/b.csv", "V2", b"y" * (INLINE_BYTES + 1)),
                                   ("input/c.csv", "V3", None)):
            since = state.feed_head()
            state.record_object_change(key, {"version_id": version, "key": key})
            assert sync.acknowledge(key, version, None, since, body)["confirmed_by"] == [WEST]
        small, big, none = peer.inline
        assert small == [{"key": "input/a.csv", "version_id": "V1", "data": base64.b64encode(b"x\n" * 10).decode()}]
        assert big is None and none is None
    finally:
        sync.close()
        state.close()


def test_an_archive_copy_of_an_input_held_here_is_made_from_it_without_a_fetch(tmp_path):
    source_store = FileObjectStore(tmp_path / "west")
    source = CountingSource(source_store)
    state = open_state_store(f"sqlite:///{tmp_path / 'east.db'}", EAST)
    here = FileObjectStore(tmp_path / "east")
    rep = Replicator(source, EAST, state, here, held_bytes=functools.partial(held_bytes, default_pipeline()))
    try:
        data = b"id,amount\n1,2\n" * 50
        held, put = _put_change(source_store, "input/a.csv", data)
        rep.apply_upload([put])  # the input arrives (fetched)
        assert source.fetched == ["input/a.csv"]
        copy = source_store.copy("input/a.csv", f"archive/{held.version_id}/a.csv")
        change = Change(seq=2, table="objects", key=copy.key, row=dataclasses.asdict(copy), hlc=1, epoch=1,
                        origin=WEST, created_at=time.time())
        rep.apply_upload([change])
        assert source.fetched == ["input/a.csv"]  # no second fetch: the bytes were here
        got = here.head(copy.key)
        assert got is not None and (got.version_id, got.etag, got.size) == (copy.version_id, copy.etag, copy.size)
        assert here.get(copy.key) == data and state.stored_versions([copy.key]) == {copy.key: copy.version_id}

        # bytes here that are not the copy's (the input was overwritten since) are not used: fetched
        other, _ = _put_change(source_store, "input/b.csv", b"one\n")
        here.put("input/b.csv", b"two\n", version_id=other.version_id)
        copy_b = source_store.copy("input/b.csv", f"archive/{other.version_id}/b.csv")
        rep.apply_upload([Change(seq=3, table="objects", key=copy_b.key, row=dataclasses.asdict(copy_b), hlc=1,
                                 epoch=1, origin=WEST, created_at=time.time())])
        assert source.fetched == ["input/a.csv", copy_b.key]
        assert here.get(copy_b.key) == b"one\n"
    finally:
        rep.stop()
        state.close()


def test_a_merged_output_is_made_from_the_chunk_outputs_held_here_when_it_hashes_the_same(tmp_path):
    pipeline = default_pipeline()
    source_store = FileObjectStore(tmp_path / "west")
    source = CountingSource(source_store)
    state = open_state_store(f"sqlite:///{tmp_path / 'east.db'}", EAST)
    here = FileObjectStore(tmp_path / "east")
    rep = Replicator(source, EAST, state, here, held_bytes=functools.partial(held_bytes, pipeline))

    def job_objects(job: str, seq: int, head: bytes) -> tuple[ObjectInfo, list[Change]]:
        # what a job leaves in its region: two chunk outputs, then the merged output the orchestrator composes
        changes = [_put_change(source_store, chunk_output_key(job, i), f"{job},{i}\n".encode() * 40, seq + i)[1]
                   for i in range(2)]
        merged = source_store.compose(f"output/completed/{job}.csv", [chunk_output_key(job, i) for i in range(2)],
                                      head=head, content_type="text/csv", metadata={"job": job, "chunks": "2"})
        changes.append(Change(seq=seq + 2, table="objects", key=merged.key, row=dataclasses.asdict(merged), hlc=1,
                              epoch=1, origin=WEST, created_at=time.time()))
        return merged, changes

    try:
        # all in one batch: the chunk outputs are stored first, the merged output is made of them
        merged, changes = job_objects("job-a", 1, output_head(pipeline))
        source.changes = changes
        assert rep.run_once() == 3
        assert sorted(source.fetched) == [chunk_output_key("job-a", 0), chunk_output_key("job-a", 1)]
        got = here.head(merged.key)
        assert got is not None and (got.version_id, got.etag, got.size, got.metadata) == (
            merged.version_id, merged.etag, merged.size, merged.metadata)
        assert here.get(merged.key) == source_store.get(merged.key)
        assert state.stored_versions([merged.key]) == {merged.key: merged.version_id}

        # another header than this region's pipeline writes (the bytes differ): fetched, stored as they are
        other, changes = job_objects("job-b", 4, b"other,header\n")
        source.changes += changes
        source.fetched.clear()
        assert rep.run_once() == 3
        assert other.key in source.fetched and here.get(other.key) == source_store.get(other.key)

        # a chunk output that is not here (deleted since): fetched
        third, changes = job_objects("job-c", 7, output_head(pipeline))
        rep.apply_upload(changes[:2])
        here.delete(chunk_output_key("job-c", 1))
        source.fetched.clear()
        rep.apply_upload(changes[2:])
        assert source.fetched == [third.key] and here.get(third.key) == source_store.get(third.key)
    finally:
        rep.stop()
        state.close()


def test_the_recipe_of_a_merged_output_names_its_chunk_outputs_in_order():
    pipeline = default_pipeline()
    meta = {"job": "job-1", "rows": "9", "chunks": "3"}
    recipe = held_bytes(pipeline, "output/completed/a.csv", meta)
    assert recipe is not None and recipe.head == output_head(pipeline) and recipe.head.endswith(b"\n")
    assert recipe.parts == tuple(f"work/job-1/out/{i:06d}.csv" for i in range(3))
    # an output written before the metadata named its chunks, and other keys, have none
    assert held_bytes(pipeline, "output/completed/a.csv", {"job": "job-1", "rows": "9"}) is None
    assert held_bytes(pipeline, "work/x.csv", meta) is None
    archive = held_bytes(pipeline, "archive/V1/a.csv", {})
    assert archive is not None and archive.parts == ("input/a.csv",) and archive.head == b""


@pytest.mark.parametrize("key, expected", [("archive/V1/a.csv", "input/a.csv"), ("archive/V1/d/a.csv", "input/d/a.csv"),
                                           ("archive/V1", None), ("archive/V1/", None), ("output/x.csv", None)])
def test_the_input_an_archive_key_was_copied_from(key, expected):
    assert archived_input(key) == expected


class RecordingStop(threading.Event):
    """The replicator's stop event, recording how long each pause between passes asks to wait."""

    def __init__(self, passes: int):
        super().__init__()
        self.waits: list[float] = []
        self._passes = passes

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        if len(self.waits) >= self._passes:
            self.set()
        return self.is_set()


def test_a_caught_up_replicator_pauses_briefly_and_one_behind_pulls_again_at_once(tmp_path):
    source_store = FileObjectStore(tmp_path / "west")
    source = CountingSource(source_store)
    state = open_state_store(f"sqlite:///{tmp_path / 'east.db'}", EAST)
    rep = Replicator(source, EAST, state, FileObjectStore(tmp_path / "east"), interval=1.0, batch=2)
    try:
        # five changes in batches of two: full, full, then short (caught up), then nothing
        source.changes = [_put_change(source_store, f"work/{i}.csv", b"x\n", seq=i + 1)[1] for i in range(5)]
        rep._stop = RecordingStop(passes=2)
        rep._loop()
        # no pause after the two full batches; a short one after the batch that reached the head;
        # the whole interval once there is nothing to read
        assert rep._stop.waits == [0.25, 1.0]
        assert len(source.fetched) == 5 and rep.checkpoint("objects") == 5
    finally:
        rep.stop()
        state.close()
