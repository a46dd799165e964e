"""Reconcile and the replicator on the embedded stores, with fakes for the orchestrator and the source
region (no processes, no network)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import BinaryIO

import pytest
from prometheus_client import CollectorRegistry

from regionflow.ids import job_id_for
from regionflow.replication.feeding import FeedingObjectStore
from regionflow.replication.replicator import Replicator
from regionflow.replication.source import SourceUnavailable
from regionflow.state import open_state_store
from regionflow.state.base import Change, ChunkRecord, JobRecord, JobStatus, StateStore
from regionflow.storage.base import ObjectInfo
from regionflow.storage.file import FileObjectStore
from regionflow.workloads.batch.metrics import BatchMetrics
from regionflow.workloads.batch.reconcile import reconcile
from regionflow.workloads.batch.service import BatchService

EAST, WEST = "us-east-1", "us-west-2"


class FakeOrchestrator:
    """Creates the job the way the real trigger does (owner = this region, current epoch)."""

    def __init__(self, service: BatchService, state: StateStore):
        self.service, self.state = service, state

    def trigger(self, key: str) -> str | None:
        info = self.service.objects.head(key)
        assert info is not None
        active, epoch = self.service.owner()
        job = JobRecord(job_id=job_id_for(key, info.version_id), input_key=key, version_id=info.version_id,
                        input_etag=info.etag, pipeline="p", owner_region=self.service.region, owner_epoch=epoch)
        self.state.create_job(job)
        return job.job_id


@pytest.fixture
def west(tmp_path: Path):
    state = open_state_store(f"sqlite:///{tmp_path / 'west.db'}", WEST)
    objects = FeedingObjectStore(FileObjectStore(tmp_path / "west"), state)
    service = BatchService(WEST, objects, state, BatchMetrics(CollectorRegistry()), lambda: (WEST, 2))
    service.attach(FakeOrchestrator(service, state))  # type: ignore[arg-type]
    yield service
    state.close()


def _job(service: BatchService, name: str, status: JobStatus, *, epoch: int = 1, with_input: bool = True) -> JobRecord:
    key = f"input/{name}.csv"
    info = service.objects.put(key, b"a,b\n1,2\n") if with_input else None
    version = info.version_id if info else "01J0000000000000000000000"
    job = JobRecord(job_id=job_id_for(key, version), input_key=key, version_id=version, input_etag="x", pipeline="p",
                    status=status, owner_region=EAST, owner_epoch=epoch)
    service.state.create_job(job)
    return job


def _queued(service: BatchService) -> set[str]:
    return set(service._queued)


def test_reconcile_claims_unfinished_jobs_starts_inputs_without_one_and_reports_missing(west):
    done = _job(west, "done", JobStatus.COMPLETED)
    running = _job(west, "running", JobStatus.INITIALIZED)
    lost = _job(west, "lost", JobStatus.INITIALIZED, with_input=False)
    newer = _job(west, "newer", JobStatus.INITIALIZED, epoch=5)  # owned under a later epoch: not ours
    fresh = west.objects.put("input/fresh.csv", b"a,b\n")  # an upload that has no job yet

    report = reconcile(west, epoch=2)

    assert set(report["claimed"]) == {running.job_id, lost.job_id}
    assert report["resumed"] == [running.job_id]
    assert report["started"] == [job_id_for("input/fresh.csv", fresh.version_id)]
    assert [m["job_id"] for m in report["missing"]] == [lost.job_id]
    assert west.state.get_job(running.job_id).owner_region == WEST
    assert west.state.get_job(running.job_id).owner_epoch == 2
    assert west.state.get_job(newer.job_id).owner_epoch == 5 and west.state.get_job(done.job_id).owner_epoch == 1
    # the job whose input is missing stays claimed but not queued: the sweep starts it when it arrives
    assert _queued(west) == {running.job_id, *report["started"]}


def test_practice_reconcile_reports_and_changes_nothing(west):
    running = _job(west, "running", JobStatus.INITIALIZED)
    report = reconcile(west, epoch=2, practice=True)
    assert report["claimed"] == [running.job_id] and report["practice"] is True
    assert west.state.get_job(running.job_id).owner_region == EAST and _queued(west) == set()


def test_reconcile_lists_a_job_whose_input_is_gone_with_chunks_to_do_as_missing(west):
    job = _job(west, "split", JobStatus.SPLIT, with_input=False)
    west.state.add_chunks(job.job_id, [ChunkRecord(job.job_id, 0, job.input_key, 1, 1, byte_offset=0, byte_length=9)],
                          epoch=1)
    missing = reconcile(west, epoch=2)["missing"]
    assert missing[0]["missing"] == [job.input_key]


class FakeSource:
    """A source region's feed and objects, held in memory; down=True makes it unreachable."""

    name = EAST

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.objects: dict[str, tuple[ObjectInfo, bytes]] = {}
        self.down = False

    def put(self, store: FileObjectStore, key: str, data: bytes) -> None:
        info = store.put(key, data)
        self.objects[key] = (info, data)
        self.changes.append(Change(seq=len(self.changes) + 1, table="objects", key=key,
                                   row={"key": key, "version_id": info.version_id}, hlc=1, epoch=1, origin=EAST,
                                   created_at=time.time()))

    def _check(self) -> None:
        if self.down:
            raise SourceUnavailable(f"{EAST}: ConnectError")

    def feed(self, since: int, limit: int, kind: str | None = None) -> tuple[list[Change], int]:
        self._check()
        wanted = [c for c in self.changes if c.seq > since and (kind != "state")][:limit]
        return wanted, len(self.changes)

    def stats(self, since: int) -> dict:
        self._check()
        count = len([c for c in self.changes if c.seq > since])
        return {"head": len(self.changes), "objects": {"count": count, "oldest": None},
                "state": {"count": 0, "oldest": None}}

    def fetch_object(self, key: str, sink: BinaryIO) -> ObjectInfo | None:
        self._check()
        found = self.objects.get(key)
        if found is None:
            return None
        sink.write(found[1])
        return found[0]


def test_the_replicator_copies_objects_with_their_versions_and_resumes_after_the_source_returns(tmp_path):
    source = FakeSource()
    east_store = FileObjectStore(tmp_path / "east")
    state = open_state_store(f"sqlite:///{tmp_path / 'west.db'}", WEST)
    west_store = FileObjectStore(tmp_path / "west")
    seen: list[str] = []
    rep = Replicator(source, WEST, state, west_store, on_object=seen.append, batch=2)
    try:
        for i in range(3):
            source.put(east_store, f"input/f{i}.csv", f"row {i}\n".encode())
        source.down = True
        assert rep.run_once() == 0 and rep.status.reachable is False  # nothing applied while it is down
        assert west_store.head("input/f0.csv") is None and rep.checkpoint("objects") == 0
        source.down = False
        while rep.run_once():
            pass
        for i in range(3):
            here, there = west_store.head(f"input/f{i}.csv"), source.objects[f"input/f{i}.csv"][0]
            assert here is not None and (here.version_id, here.etag) == (there.version_id, there.etag)
        assert rep.caught_up_to(3) and rep.status.reachable and rep.status.backlog["objects"] == 0
        assert seen == [f"input/f{i}.csv" for i in range(3)]
        assert rep.run_once() == 0 and seen == [f"input/f{i}.csv" for i in range(3)]  # re-running applies nothing
    finally:
        rep.stop()
        state.close()


def test_reconcile_reopens_a_job_completed_elsewhere_whose_output_never_arrived(west):
    # State and objects replicate apart: the old owner's COMPLETED row can arrive without its output.
    here = _job(west, "here", JobStatus.COMPLETED)
    output = west.objects.put("output/completed/here.csv", b"out\n")
    gone = _job(west, "gone", JobStatus.COMPLETED)
    for job, etag in ((here, output.etag), (gone, "etag-that-never-arrived")):
        west.state.claim_job(job.job_id, region=EAST, epoch=1)
        west.state.transition_job(job.job_id, epoch=1, from_status=JobStatus.COMPLETED,
                                  to_status=JobStatus.COMPLETED, output_key=f"output/completed/{job.job_id}.csv"
                                  if job is gone else "output/completed/here.csv", output_etag=etag)

    practice = reconcile(west, epoch=2, practice=True)
    assert practice["reopened"] == [gone.job_id]
    assert west.state.get_job(gone.job_id).status == JobStatus.COMPLETED  # practice changes nothing

    report = reconcile(west, epoch=2)
    assert report["reopened"] == [gone.job_id] and gone.job_id in report["resumed"]
    reopened = west.state.get_job(gone.job_id)
    assert (reopened.status, reopened.owner_region, reopened.owner_epoch) == (JobStatus.PROCESSING, WEST, 2)
    assert gone.job_id in _queued(west)
    kept = west.state.get_job(here.job_id)  # its output is here: left as it was
    assert (kept.status, kept.owner_region, kept.owner_epoch) == (JobStatus.COMPLETED, EAST, 1)
    assert here.job_id not in _queued(west)


class DyingSource(FakeSource):
    """A source that dies while the standby fetches one object: that key's fetch fails, the feed and the
    other fetches still answer (the moment a region goes down in the middle of a batch)."""

    def __init__(self, failing_key: str) -> None:
        super().__init__()
        self.failing_key = failing_key

    def fetch_object(self, key: str, sink: BinaryIO) -> ObjectInfo | None:
        if key == self.failing_key:
            raise SourceUnavailable(f"{EAST}: connection reset while sending {key}")
        return super().fetch_object(key, sink)

    def delete(self, store: FileObjectStore, key: str) -> None:
        store.delete(key)
        self.objects.pop(key, None)
        self.changes.append(Change(seq=len(self.changes) + 1, table="objects", key=key, row=None, hlc=1, epoch=1,
                                   origin=EAST, created_at=time.time() + 1))


def test_a_delete_is_not_applied_while_a_put_before_it_in_the_feed_has_not_arrived(tmp_path):
    # The job's last step archives its input (archive/ copy, then input/ delete). If the region dies while
    # the standby fetches the copy, the standby must keep its input: it is then the only copy it has.
    source = DyingSource(failing_key="archive/f.csv")
    east_store = FileObjectStore(tmp_path / "east")
    state = open_state_store(f"sqlite:///{tmp_path / 'west.db'}", WEST)
    west_store = FileObjectStore(tmp_path / "west")
    rep = Replicator(source, WEST, state, west_store, batch=10)
    try:
        source.put(east_store, "input/f.csv", b"a,b\n1,2\n")
        assert rep.run_once() == 1 and west_store.head("input/f.csv") is not None
        source.put(east_store, "archive/f.csv", b"a,b\n1,2\n")
        source.delete(east_store, "input/f.csv")
        rep.run_once()
        assert west_store.head("input/f.csv") is not None, "the delete overtook the copy that never arrived"
        assert west_store.head("archive/f.csv") is None and rep.checkpoint("objects") == 1
        source.failing_key = ""  # the region is back: the same batch now applies whole
        while rep.run_once():
            pass
        assert west_store.head("archive/f.csv") is not None and west_store.head("input/f.csv") is None
    finally:
        rep.stop()
        state.close()


class KindedSource(DyingSource):
    """A source whose feed holds state rows too, each kind served to its own cursor."""

    def __init__(self) -> None:
        super().__init__(failing_key="")

    def add_rows(self, changes: list[Change]) -> None:
        for change in changes:
            self.changes.append(dataclasses.replace(change, seq=len(self.changes) + 1))

    def feed(self, since: int, limit: int, kind: str | None = None) -> tuple[list[Change], int]:
        self._check()
        wanted = [c for c in self.changes
                  if c.seq > since and (kind is None or (c.table == "objects") == (kind == "objects"))]
        return wanted[:limit], len(self.changes)


def test_an_input_is_deleted_here_only_after_the_state_rows_before_its_delete(tmp_path):
    # A job writes its rows, archives its input, then deletes it. Were the delete applied here ahead of the
    # rows (the kinds replicate on two cursors), a region taking over would hold neither the input nor the
    # job, and would forget the file.
    source = KindedSource()
    east_store = FileObjectStore(tmp_path / "east")
    east = open_state_store(f"sqlite:///{tmp_path / 'east.db'}", EAST)
    state = open_state_store(f"sqlite:///{tmp_path / 'west.db'}", WEST)
    west_store = FileObjectStore(tmp_path / "west")
    rep = Replicator(source, WEST, state, west_store, batch=10, ordered_delete=lambda key: key.startswith("input/"))
    try:
        source.put(east_store, "input/f.csv", b"a,b\n1,2\n")
        source.put(east_store, "work/job-f/layout.json", b"{}")
        assert rep.run_once() == 2 and west_store.head("input/f.csv") is not None  # the upload, replicated
        job = JobRecord(job_id="job-f", input_key="input/f.csv", version_id="v1", input_etag="e", pipeline="p",
                        owner_region=EAST, owner_epoch=1, created_at=time.time())
        east.create_job(job)
        source.add_rows(east.feed_since(0))
        source.put(east_store, "archive/v1/f.csv", b"a,b\n1,2\n")
        source.delete(east_store, "work/job-f/layout.json")  # a work file's delete need not wait
        source.delete(east_store, "input/f.csv")
        state.set_paused(rep.cursor("state"), True)  # the rows lag (paused here; a slow apply in life)
        for _ in range(3):
            rep.run_once()
        assert west_store.head("archive/v1/f.csv") is not None  # the puts before the delete arrive
        assert west_store.head("work/job-f/layout.json") is None
        assert west_store.head("input/f.csv") is not None, "the delete overtook the job's rows"
        assert state.get_job("job-f") is None and rep.checkpoint("objects") == len(source.changes) - 1
        assert rep.run_once() == 0  # a pass that only waits for the rows reads nothing (no busy loop)
        state.set_paused(rep.cursor("state"), False)
        while rep.run_once():
            pass
        assert state.get_job("job-f") is not None and west_store.head("input/f.csv") is None
        assert rep.caught_up_to(len(source.changes))
    finally:
        rep.stop()
        state.close()
        east.close()
