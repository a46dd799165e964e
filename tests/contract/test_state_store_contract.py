"""The StateStore contract, run against every adapter (SQLite file and PostgreSQL), bare and behind the
fault-injection wrapper."""

from __future__ import annotations

import dataclasses
import inspect
import json
import multiprocessing
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from statekit import complete, make_chunks, make_job, make_rejects

from regionflow.chaos.faults import FaultRegistry
from regionflow.chaos.guards import GuardedStateStore
from regionflow.errors import ConfigError, FencedOut, RegionflowError
from regionflow.state import (
    Change,
    ChunkRecord,
    ChunkStatus,
    JobRecord,
    JobStatus,
    NotificationRecord,
    RejectRecord,
    StateStore,
    open_state_store,
)
from regionflow.state.hlc import HybridClock

REGION = "us-east-1"


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("pgserver", marks=pytest.mark.pgserver)])
def state_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """sqlite: a file; postgresql: the machine's server; pgserver: a cluster regionflow started itself."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/regionflow.db"
    if request.param == "pgserver":
        return request.getfixturevalue("pgserver_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["plain", "guarded"])
def state(request: pytest.FixtureRequest, state_url: str, tmp_path) -> Iterator[StateStore]:
    store = open_state_store(state_url, REGION)
    if request.param == "guarded":
        # the fault-injection wrapper with an empty registry must behave exactly like the store
        store = GuardedStateStore(store, FaultRegistry(tmp_path / "faults.json"))
    try:
        yield store
    finally:
        store.close()








def new_changes(state: StateStore, since: int) -> list[Change]:
    return state.feed_since(since, limit=100_000)




# ---------------------------------------------------------------------------------------------- jobs


def test_store_satisfies_protocol(state: StateStore) -> None:
    assert isinstance(state, StateStore)
    assert state.region == REGION
    for name, member in vars(StateStore).items():
        if callable(member) and not name.startswith("_"):
            want = inspect.signature(member)
            got = inspect.signature(getattr(type(state), name))
            assert list(got.parameters) == list(want.parameters), name
            kinds = [p.kind for p in got.parameters.values()]
            assert kinds == [p.kind for p in want.parameters.values()], name


def test_create_job_is_insert_if_absent(state: StateStore) -> None:
    assert state.create_job(make_job("job-1")) is True
    other = make_job("job-1", epoch=7)
    other.input_etag = "different"
    assert state.create_job(other) is False
    job = state.get_job("job-1")
    assert job is not None
    assert job.owner_epoch == 1 and job.input_etag == "etag-in"
    assert job.status == JobStatus.INITIALIZED
    assert job.created_at > 0 and job.updated_at == job.created_at


def test_get_and_list_jobs(state: StateStore) -> None:
    assert state.get_job("nope") is None
    assert state.list_jobs() == []
    for i, created in enumerate([100.0, 300.0, 200.0]):
        state.create_job(make_job(f"job-{i}", created_at=created))
    state.transition_job("job-2", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT)
    assert [j.job_id for j in state.list_jobs()] == ["job-1", "job-2", "job-0"]
    assert [j.job_id for j in state.list_jobs(limit=2)] == ["job-1", "job-2"]
    assert [j.job_id for j in state.list_jobs(status=JobStatus.INITIALIZED)] == ["job-1", "job-0"]
    assert [j.job_id for j in state.list_jobs(status="SPLIT")] == ["job-2"]
    assert state.list_jobs(status=JobStatus.COMPLETED) == []
    # a second version of job-0's input: both jobs are found by their input key, newest first
    state.create_job(dataclasses.replace(make_job("job-3", created_at=400.0), input_key="input/job-0.csv",
                                         version_id="v2"))
    assert [j.job_id for j in state.list_jobs(input_key="input/job-0.csv")] == ["job-3", "job-0"]
    assert [j.job_id for j in state.list_jobs(status="SPLIT", input_key="input/job-2.csv")] == ["job-2"]
    assert state.list_jobs(input_key="input/none.csv") == []
    # by key prefix: LIKE's wildcards in the prefix are plain characters
    assert [j.job_id for j in state.list_jobs(input_prefix="input/job-")] == ["job-3", "job-1", "job-2", "job-0"]
    assert [j.job_id for j in state.list_jobs(input_prefix="input/job-0")] == ["job-3", "job-0"]
    assert [j.job_id for j in state.list_jobs(status="SPLIT", input_prefix="input/")] == ["job-2"]
    assert state.list_jobs(input_prefix="input/job_") == [] and state.list_jobs(input_prefix="input/%") == []
    got = state.get_job("job-0")
    assert got == make_job("job-0", created_at=100.0, updated_at=100.0)


def test_transition_job(state: StateStore) -> None:
    state.create_job(make_job("job-1", created_at=100.0))
    job = state.transition_job("job-1", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT,
                               rows_in=30, chunks_total=3)
    assert job.status == JobStatus.SPLIT and job.rows_in == 30 and job.chunks_total == 3
    assert job.updated_at > job.created_at == 100.0
    assert state.get_job("job-1") == job
    # from_status may name several statuses
    job = state.transition_job("job-1", epoch=1, from_status=(JobStatus.SPLIT, JobStatus.PROCESSING),
                               to_status=JobStatus.FAILED, reason="boom")
    assert job.status == JobStatus.FAILED and job.reason == "boom" and job.rows_in == 30


def test_transition_job_refusals(state: StateStore) -> None:
    state.create_job(make_job("job-1", epoch=2))
    before = state.get_job("job-1")
    head = state.feed_head()
    with pytest.raises(FencedOut, match=r"epoch 2, not epoch 1"):
        state.transition_job("job-1", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT)
    with pytest.raises(FencedOut, match=r"job-1 is INITIALIZED, not SPLIT or PROCESSING"):
        state.transition_job("job-1", epoch=2, from_status=(JobStatus.SPLIT, JobStatus.PROCESSING),
                             to_status=JobStatus.MERGED)
    with pytest.raises(FencedOut, match=r"job nope does not exist"):
        state.transition_job("nope", epoch=2, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT)
    with pytest.raises(ValueError, match="owner_epoch"):
        state.transition_job("job-1", epoch=2, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT,
                             owner_epoch=9)
    with pytest.raises(ValueError, match="colour"):
        state.transition_job("job-1", epoch=2, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT,
                             colour="red")
    assert state.get_job("job-1") == before
    assert state.feed_head() == head


def test_claim_job_fences_the_old_epoch(state: StateStore) -> None:
    state.create_job(make_job("job-1", epoch=1))
    claimed = state.claim_job("job-1", region="us-west-2", epoch=3)
    assert claimed.owner_region == "us-west-2" and claimed.owner_epoch == 3
    with pytest.raises(FencedOut, match=r"owned by us-west-2 under epoch 3, not epoch 1") as info:
        state.transition_job("job-1", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT)
    assert "\n" not in str(info.value)
    # re-claiming under the same epoch is allowed; a lower epoch is refused
    assert state.claim_job("job-1", region="us-west-2", epoch=3).owner_epoch == 3
    with pytest.raises(FencedOut, match=r"higher epoch 3"):
        state.claim_job("job-1", region=REGION, epoch=2)
    with pytest.raises(FencedOut, match=r"does not exist"):
        state.claim_job("nope", region=REGION, epoch=5)
    job = state.transition_job("job-1", epoch=3, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT)
    assert job.owner_region == "us-west-2" and job.owner_epoch == 3


# ---------------------------------------------------------------------------------------------- chunks


def test_add_chunks_is_idempotent(state: StateStore) -> None:
    state.create_job(make_job("job-1"))
    state.add_chunks("job-1", make_chunks("job-1", 2), epoch=1)
    assert state.start_chunk("job-1", 0, epoch=1) == 1
    assert state.start_chunk("job-1", 0, epoch=1) == 2
    complete(state, "job-1", 1, [])
    state.add_chunks("job-1", chunks=make_chunks("job-1", 3), epoch=1)
    got = state.list_chunks("job-1")
    assert [c.idx for c in got] == [0, 1, 2]
    assert got[0].attempts == 2 and got[0].status == ChunkStatus.PENDING
    assert got[1].status == ChunkStatus.DONE and got[1].out_etag == "etag-1" and got[1].rows_ok == 10
    assert got[2] == make_chunks("job-1", 3)[2]
    assert state.list_chunks("other") == []


def test_record_split_adds_the_chunks_and_moves_the_job_together_or_not_at_all(state: StateStore) -> None:
    state.create_job(make_job("job-1", epoch=2))
    head = state.feed_head()
    # a stale owner adds no chunk and leaves the job where it was
    with pytest.raises(FencedOut, match=r"epoch 2, not epoch 1"):
        state.record_split("job-1", make_chunks("job-1", 3), epoch=1, rows_in=30)
    assert state.list_chunks("job-1") == [] and state.get_job("job-1").status == JobStatus.INITIALIZED
    assert state.feed_head() == head
    # chunks recorded by an earlier, interrupted split are kept as they are
    state.add_chunks("job-1", make_chunks("job-1", 1), epoch=2)
    assert state.start_chunk("job-1", 0, epoch=2) == 1
    head = state.feed_head()
    job = state.record_split("job-1", make_chunks("job-1", 3), epoch=2, rows_in=30)
    assert job.status == JobStatus.SPLIT and job.rows_in == 30 and job.chunks_total == 3
    assert state.get_job("job-1") == job
    assert [(c.idx, c.attempts) for c in state.list_chunks("job-1")] == [(0, 1), (1, 0), (2, 0)]
    # the chunks before the job in the feed, as a standby applies them
    assert [(c.table, c.key) for c in new_changes(state, head)] == [
        ("chunks", "job-1/1"), ("chunks", "job-1/2"), ("jobs", "job-1")]
    with pytest.raises(FencedOut, match=r"job-1 is SPLIT, not INITIALIZED"):
        state.record_split("job-1", make_chunks("job-1", 4), epoch=2, rows_in=40)
    assert len(state.list_chunks("job-1")) == 3 and state.get_job("job-1") == job


def test_chunk_writes_are_fenced(state: StateStore) -> None:
    state.create_job(make_job("job-1", epoch=1))
    with pytest.raises(FencedOut, match="does not exist"):
        state.add_chunks("nope", make_chunks("nope", 1), epoch=1)
    state.add_chunks("job-1", make_chunks("job-1", 2), epoch=1)
    state.claim_job("job-1", region="us-west-2", epoch=2)
    head = state.feed_head()
    with pytest.raises(FencedOut, match="under epoch 2, not epoch 1"):
        state.add_chunks("job-1", make_chunks("job-1", 4), epoch=1)
    with pytest.raises(FencedOut, match="under epoch 2, not epoch 1"):
        state.start_chunk("job-1", 0, epoch=1)
    assert state.feed_head() == head
    assert [(c.idx, c.attempts) for c in state.list_chunks("job-1")] == [(0, 0), (1, 0)]
    with pytest.raises(RegionflowError, match="no such chunk"):
        state.start_chunk("job-1", 9, epoch=2)
    assert state.start_chunk("job-1", 1, epoch=2) == 1


def test_complete_chunk_stores_and_replaces_rejects(state: StateStore) -> None:
    state.create_job(make_job("job-1"))
    state.add_chunks("job-1", make_chunks("job-1", 2), epoch=1)
    complete(state, "job-1", 1, make_rejects("job-1", 1, [12, 15]))
    complete(state, "job-1", 0, make_rejects("job-1", 0, [2, 3, 7]))
    assert state.count_rejects("job-1") == 5
    # a later attempt of chunk 0 replaces that chunk's rejects only
    complete(state, "job-1", 0, make_rejects("job-1", 0, [3, 5], tag="-retry"))
    got = state.list_rejects("job-1")
    assert [(r.row_no, r.chunk_idx) for r in got] == [(3, 0), (5, 0), (12, 1), (15, 1)]
    assert got[0] == RejectRecord("job-1", 3, 0, "a,b,3-retry", "bad amount-retry")
    assert state.count_rejects("job-1") == 4
    chunk0 = state.list_chunks("job-1")[0]
    assert chunk0.status == ChunkStatus.DONE
    assert (chunk0.out_key, chunk0.out_etag) == ("work/job-1/out/0", "etag-0")
    assert (chunk0.rows_ok, chunk0.rows_rejected) == (8, 2)
    # completing with no rejects clears them
    complete(state, "job-1", 1, [])
    assert [r.row_no for r in state.list_rejects("job-1")] == [3, 5]
    with pytest.raises(ValueError, match="reject of job job-1 chunk 1"):
        complete(state, "job-1", 0, make_rejects("job-1", 1, [4]))
    with pytest.raises(RegionflowError, match="no such chunk"):
        complete(state, "job-1", 5, make_rejects("job-1", 5, [51]))
    assert state.count_rejects("job-1") == 2


def test_complete_chunk_under_stale_epoch_changes_nothing(state: StateStore) -> None:
    state.create_job(make_job("job-1", epoch=1))
    state.add_chunks("job-1", make_chunks("job-1", 2), epoch=1)
    complete(state, "job-1", 1, make_rejects("job-1", 1, [11]))
    state.claim_job("job-1", region="us-west-2", epoch=2)
    head = state.feed_head()
    with pytest.raises(FencedOut, match=r"cannot complete chunk 0 of job job-1: .* epoch 2, not epoch 1"):
        complete(state, "job-1", 0, make_rejects("job-1", 0, [1, 2]))
    with pytest.raises(FencedOut):
        complete(state, "job-1", 1, [])
    assert state.count_rejects("job-1") == 1
    chunks = state.list_chunks("job-1")
    assert chunks[0].status == ChunkStatus.PENDING and chunks[0].out_etag is None
    assert chunks[1].rows_rejected == 1
    assert state.feed_head() == head


def test_list_rejects_order_and_paging(state: StateStore) -> None:
    state.create_job(make_job("job-1"))
    state.create_job(make_job("job-2"))
    state.add_chunks("job-1", make_chunks("job-1", 3), epoch=1)
    state.add_chunks("job-2", make_chunks("job-2", 1), epoch=1)
    complete(state, "job-1", 2, make_rejects("job-1", 2, [29, 21, 25]))
    complete(state, "job-1", 0, make_rejects("job-1", 0, [9, 1]))
    complete(state, "job-1", 1, make_rejects("job-1", 1, [14]))
    complete(state, "job-2", 0, make_rejects("job-2", 0, [1, 2]))
    assert [r.row_no for r in state.list_rejects("job-1")] == [1, 9, 14, 21, 25, 29]
    assert [r.row_no for r in state.list_rejects("job-1", limit=2)] == [1, 9]
    assert [r.row_no for r in state.list_rejects("job-1", limit=2, offset=2)] == [14, 21]
    assert [r.row_no for r in state.list_rejects("job-1", offset=4)] == [25, 29]
    assert state.list_rejects("job-1", limit=5, offset=10) == []
    assert state.count_rejects("job-1") == 6 and state.count_rejects("job-2") == 2
    assert state.count_rejects("nope") == 0 and state.list_rejects("nope") == []


# ---------------------------------------------------------------------------------------------- reference


def test_load_reference_replaces_parts_and_bumps_revision(state: StateStore) -> None:
    assert state.reference_info("customers") is None and state.reference_parts("customers") == []
    parts = ["id,name\n1,a\n2,b\n", "id,name\n3,c\n", "id,name\n4,d\n"]
    info = state.load_reference("customers", "id", ["id", "name"], parts, 4)
    assert (info.table, info.key_column, info.columns, info.rows, info.parts, info.revision) == (
        "customers", "id", ["id", "name"], 4, 3, 1)
    assert state.reference_parts("customers") == parts
    head = state.feed_head()
    info2 = state.load_reference("customers", "id", ["id", "name", "tier"], ["id,name,tier\n9,z,gold\n"], 1)
    assert info2.revision == 2 and info2.parts == 1 and info2.loaded_at >= info.loaded_at
    assert state.reference_info("customers") == info2
    assert state.reference_parts("customers") == ["id,name,tier\n9,z,gold\n"]
    changes = new_changes(state, head)
    assert [(c.table, c.key, c.row is None) for c in changes] == [
        ("reference_parts", "customers/1", True),
        ("reference_parts", "customers/2", True),
        ("reference_parts", "customers/0", False),
        ("reference_tables", "customers", False),
    ]
    assert changes[-1].row is not None and changes[-1].row["revision"] == 2
    assert json.loads(changes[-1].row["columns"]) == ["id", "name", "tier"]
    # another table is independent
    assert state.load_reference("products", "sku", ["sku"], ["sku\nx\n"], 1).revision == 1


# ---------------------------------------------------------------------------------------------- notifications


def test_notifications(state: StateStore) -> None:
    rec = NotificationRecord(job_id="job-1", recipients=["ops@example.com", "b@example.com"],
                             subject="done", link="http://x/y?sig=1", rows_ok=9, rows_rejected=1,
                             region=REGION, channel="outbox")
    assert state.get_notification("job-1") is None
    assert state.record_notification(rec) is True
    dup = NotificationRecord(**{**rec.__dict__, "subject": "other", "recipients": ["z@example.com"]})
    assert state.record_notification(dup) is False
    got = state.get_notification("job-1")
    assert got is not None
    assert got.recipients == ["ops@example.com", "b@example.com"] and got.subject == "done"
    assert got.status == "sending" and got.sent_at is None and got.created_at > 0
    state.mark_notification_sent("job-1")
    sent = state.get_notification("job-1")
    assert sent is not None and sent.status == "sent" and sent.sent_at is not None
    head = state.feed_head()
    state.mark_notification_sent("job-1")  # idempotent: keeps the first sent_at, no new change
    assert state.get_notification("job-1") == sent and state.feed_head() == head
    with pytest.raises(RegionflowError, match="none was recorded"):
        state.mark_notification_sent("nope")
    later = NotificationRecord(**{**rec.__dict__, "job_id": "job-2", "created_at": sent.created_at + 10})
    state.record_notification(later)
    assert [n.job_id for n in state.list_notifications()] == ["job-1", "job-2"]


def test_mark_notified_marks_the_notification_and_moves_the_job_together_or_not_at_all(state: StateStore) -> None:
    state.create_job(make_job("job-1", epoch=2))
    state.transition_job("job-1", epoch=2, from_status=JobStatus.INITIALIZED, to_status=JobStatus.MERGED)
    state.record_notification(NotificationRecord(job_id="job-1", recipients=["ops@example.com"], subject="done",
                                                 link="http://x/y?sig=1", rows_ok=9, rows_rejected=1,
                                                 region=REGION, channel="outbox"))
    head = state.feed_head()
    # a stale owner (a region that lost the job) changes neither the notification nor the job
    with pytest.raises(FencedOut, match=r"epoch 2, not epoch 1"):
        state.mark_notified("job-1", epoch=1)
    unsent = state.get_notification("job-1")
    assert unsent is not None and unsent.status == "sending" and unsent.sent_at is None
    assert state.get_job("job-1").status == JobStatus.MERGED and state.feed_head() == head
    job = state.mark_notified("job-1", epoch=2)
    sent = state.get_notification("job-1")
    assert job.status == JobStatus.NOTIFIED and state.get_job("job-1") == job
    assert sent is not None and sent.status == "sent" and sent.sent_at is not None
    assert [(c.table, c.key) for c in new_changes(state, head)] == [("notifications", "job-1"), ("jobs", "job-1")]
    # done once: a second call finds the job past MERGED and leaves the first sent_at
    with pytest.raises(FencedOut, match=r"job-1 is NOTIFIED, not MERGED"):
        state.mark_notified("job-1", epoch=2)
    assert state.get_notification("job-1") == sent
    state.create_job(make_job("job-2", epoch=2))
    state.transition_job("job-2", epoch=2, from_status=JobStatus.INITIALIZED, to_status=JobStatus.MERGED)
    with pytest.raises(RegionflowError, match="none was recorded"):
        state.mark_notified("job-2", epoch=2)
    assert state.get_job("job-2").status == JobStatus.MERGED


# ---------------------------------------------------------------------------------------------- change feed


def test_change_feed_records_every_mutation(state: StateStore) -> None:
    assert state.feed_head() == 0 and state.feed_since(0) == []
    steps: list[tuple[str, list[tuple[str, str, bool]]]] = []

    def step(label: str, fn, expect: list[tuple[str, str, bool]]) -> None:
        head = state.feed_head()
        fn()
        got = new_changes(state, head)
        assert [(c.table, c.key, c.row is None) for c in got] == expect, label
        steps.append((label, expect))

    step("create", lambda: state.create_job(make_job("job-1")), [("jobs", "job-1", False)])
    step("create again", lambda: state.create_job(make_job("job-1")), [])
    step("split", lambda: state.transition_job("job-1", epoch=1, from_status="INITIALIZED", to_status="SPLIT",
                                               chunks_total=2), [("jobs", "job-1", False)])
    step("add chunks", lambda: state.add_chunks("job-1", make_chunks("job-1", 2), epoch=1),
         [("chunks", "job-1/0", False), ("chunks", "job-1/1", False)])
    step("add again", lambda: state.add_chunks("job-1", make_chunks("job-1", 2), epoch=1), [])
    step("start", lambda: state.start_chunk("job-1", 0, epoch=1), [("chunks", "job-1/0", False)])
    step("complete", lambda: complete(state, "job-1", 0, make_rejects("job-1", 0, [4, 2])),
         [("rejects", "job-1/4", False), ("rejects", "job-1/2", False), ("chunks", "job-1/0", False)])
    step("retry", lambda: complete(state, "job-1", 0, make_rejects("job-1", 0, [2, 3])),
         [("rejects", "job-1/4", True), ("rejects", "job-1/2", False), ("rejects", "job-1/3", False),
          ("chunks", "job-1/0", False)])
    step("claim", lambda: state.claim_job("job-1", region="us-west-2", epoch=2), [("jobs", "job-1", False)])
    step("reference", lambda: state.load_reference("t", "k", ["k"], ["k\n1\n"], 1),
         [("reference_parts", "t/0", False), ("reference_tables", "t", False)])
    rec = NotificationRecord("job-1", ["a@example.com"], "s", "l", 1, 1, REGION, "outbox")
    step("notify", lambda: state.record_notification(rec), [("notifications", "job-1", False)])
    step("sent", lambda: state.mark_notification_sent("job-1"), [("notifications", "job-1", False)])

    feed = state.feed_since(0, limit=1000)
    assert len(feed) == sum(len(e) for _, e in steps)
    seqs = [c.seq for c in feed]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert state.feed_head() == seqs[-1]
    hlcs = [c.hlc for c in feed]
    assert all(b > a for a, b in zip(hlcs, hlcs[1:], strict=False))
    assert {c.origin for c in feed} == {REGION}
    assert all(c.created_at > 0 for c in feed)
    # paging
    assert [c.seq for c in state.feed_since(seqs[2], limit=3)] == seqs[3:6]
    assert state.feed_since(seqs[-1]) == []
    # row images are the full rows after the change; epochs name the job's owner epoch
    by_key = {(c.table, c.key): c for c in feed}  # the last change of each key
    job = state.get_job("job-1")
    assert job is not None and by_key[("jobs", "job-1")].row == job.__dict__
    assert by_key[("jobs", "job-1")].epoch == 2
    chunk0 = state.list_chunks("job-1")[0]
    assert by_key[("chunks", "job-1/0")].row == chunk0.__dict__ and by_key[("chunks", "job-1/0")].epoch == 1
    assert by_key[("rejects", "job-1/3")].row == state.list_rejects("job-1")[1].__dict__
    note = state.get_notification("job-1")
    assert note is not None
    stored_recipients = json.dumps(note.recipients, separators=(",", ":"))  # JSON text in the row
    assert by_key[("notifications", "job-1")].row == {**note.__dict__, "recipients": stored_recipients}
    assert by_key[("notifications", "job-1")].epoch == 0
    assert all(isinstance(c.row, dict) or c.row is None for c in feed)


def test_feed_page_json_is_feed_since_as_json(state: StateStore) -> None:
    state.create_job(make_job("job-ü"))  # non-ASCII in keys and row images
    state.record_object_change("input/été.csv", {"key": "input/été.csv", "version_id": "v1", "size": 3})
    state.record_object_change("input/été.csv", None)  # a delete: row null
    state.transition_job("job-ü", epoch=1, from_status="INITIALIZED", to_status="SPLIT", chunks_total=0)
    feed = state.feed_since(0)
    assert any(c.row is None for c in feed)

    def page(seq: int, limit: int = 1000, kind: str | None = None) -> list[Change]:
        return [Change(**c) for c in json.loads(state.feed_page_json(seq, limit, kind))]

    assert page(0) == feed
    assert page(feed[0].seq, limit=2) == state.feed_since(feed[0].seq, limit=2) == feed[1:3]
    assert page(0, kind="objects") == state.feed_since(0, kind="objects") and len(page(0, kind="objects")) == 2
    assert page(0, kind="state") == state.feed_since(0, kind="state")
    assert json.loads(state.feed_page_json(feed[-1].seq)) == []
    with pytest.raises(ValueError):
        state.feed_page_json(0, kind="rows")


def test_a_store_made_before_an_index_existed_gets_it_when_opened(state_url: str) -> None:
    from sqlalchemy import inspect, text

    old = open_state_store(state_url, REGION)
    try:
        with old._engine.begin() as conn:  # what an earlier release created: the table without the index
            conn.execute(text("DROP INDEX ix_jobs_input_key"))
        old.create_job(make_job("job-old"))
    finally:
        old.close()
    reopened = open_state_store(state_url, REGION)
    try:
        with reopened._engine.connect() as conn:
            assert "ix_jobs_input_key" in {i["name"] for i in inspect(conn).get_indexes("jobs")}
        assert [j.job_id for j in reopened.list_jobs(input_key=make_job("job-old").input_key)] == ["job-old"]
    finally:
        reopened.close()


def test_feed_hlc_keeps_growing_across_store_instances(state_url: str) -> None:
    a = open_state_store(state_url, "us-east-1")
    b = open_state_store(state_url, "us-west-2")
    try:
        # b's clock is far ahead: a's next change must still order after it
        b._clock.update(b._clock.now() + (10_000 << 16))  # type: ignore[attr-defined]
        a.create_job(make_job("job-1"))
        b.create_job(make_job("job-2"))
        a.create_job(make_job("job-3"))
        feed = a.feed_since(0)
        assert [c.origin for c in feed] == ["us-east-1", "us-west-2", "us-east-1"]
        assert feed[0].hlc < feed[1].hlc < feed[2].hlc
    finally:
        a.close()
        b.close()


def test_a_store_without_feed_records_its_rows_and_no_changes(state_url: str) -> None:
    # `regionflow process`: no region replicates from this store, so nothing is fed (and the reference's
    # text is not stored twice), while every read answers as in a store that keeps a feed.
    store = open_state_store(state_url, REGION, feed=False)
    try:
        store.create_job(make_job("job-1"))
        store.add_chunks("job-1", make_chunks("job-1", 2), epoch=1)
        complete(store, "job-1", 0, make_rejects("job-1", 0, [3]))
        info = store.load_reference("customers", "id", ["id", "name"], ["id,name\n1,a\n", "id,name\n2,b\n"], 2)
        assert info.revision == 1
        assert store.load_reference("customers", "id", ["id", "name"], ["id,name\n9,z\n"], 1).revision == 2
        assert store.reference_parts("customers") == ["id,name\n9,z\n"]
        done = store.list_chunks("job-1")[0]
        assert (done.status, done.rows_ok, done.rows_rejected) == ("DONE", 9, 1)
        assert [r.row_no for r in store.list_rejects("job-1")] == [3]
        assert store.feed_since(0) == [] and store.feed_head() == 0
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------- concurrency


def _race_create_jobs(url: str, job_ids: list[str], barrier: Any, results: Any) -> None:
    try:
        store = open_state_store(url, "racer")
        won = []
        for job_id in job_ids:
            barrier.wait(timeout=60)
            won.append(store.create_job(make_job(job_id)))
        store.close()
        results.put(("ok", won))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def test_create_job_race_between_processes(state: StateStore, state_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    job_ids = [f"race-{i}" for i in range(15)]
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    args = (state_url, job_ids, barrier, results)
    procs = [ctx.Process(target=_race_create_jobs, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [detail for kind, detail in outcomes if kind == "error"]
    assert not errors, errors
    first, second = (won for _, won in outcomes)
    assert all(a != b for a, b in zip(first, second, strict=True)), (first, second)
    assert len(state.list_jobs()) == len(job_ids)
    assert len([c for c in state.feed_since(0, limit=1000) if c.table == "jobs"]) == len(job_ids)


def test_concurrent_writers_keep_a_gapless_ordered_feed(state: StateStore, state_url: str) -> None:
    """Threads writing at once: every change lands once in the feed, hlc grows along seq."""
    state.create_job(make_job("job-1"))
    state.add_chunks("job-1", make_chunks("job-1", 8), epoch=1)
    errors: list[BaseException] = []

    def worker(idx: int) -> None:
        try:
            for _ in range(3):
                state.start_chunk("job-1", idx, epoch=1)
            complete(state, "job-1", idx, make_rejects("job-1", idx, [idx * 10 + 1, idx * 10 + 2]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(c.attempts == 3 and c.status == ChunkStatus.DONE for c in state.list_chunks("job-1"))
    assert state.count_rejects("job-1") == 16
    feed = state.feed_since(0, limit=1000)
    assert len(feed) == 1 + 8 + 8 * 3 + 8 * 3
    hlcs = [c.hlc for c in feed]
    assert all(b > a for a, b in zip(hlcs, hlcs[1:], strict=False))


# ---------------------------------------------------------------------------------------------- misc


def test_many_rejects_are_fast(tmp_path) -> None:
    store = open_state_store(f"sqlite:///{tmp_path}/state.db", REGION)
    try:
        store.create_job(make_job("job-1"))
        store.add_chunks("job-1", make_chunks("job-1", 1, rows=100_000), epoch=1)
        rejects = make_rejects("job-1", 0, list(range(1, 100_001)))
        started = time.perf_counter()
        complete(store, "job-1", 0, rejects, rows=100_000)
        elapsed = time.perf_counter() - started
        assert store.count_rejects("job-1") == 100_000
        assert store.feed_head() == 1 + 1 + 100_000 + 1
        assert elapsed < 2.0, f"100k rejects took {elapsed:.2f}s"
    finally:
        store.close()


@pytest.mark.parametrize("url", ["file:///tmp/x", "mysql://u@h/db", "etcd://h:2379", "not a url", "sqlite://",
                                 "sqlite:///:memory:"])
def test_open_state_store_rejects_other_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="state store url"):
        open_state_store(url, REGION)


def test_hybrid_clock_is_monotonic() -> None:
    wall = [1000.0]
    clock = HybridClock(wall=lambda: wall[0])
    a = clock.now()
    assert HybridClock.physical_ms(a) == 1_000_000 and HybridClock.logical(a) == 0
    b = clock.now()
    assert b == a + 1  # same millisecond: the logical counter advances
    wall[0] = 999.0  # the wall clock steps back
    c = clock.now()
    assert c > b
    wall[0] = 1001.0
    d = clock.now()
    assert d > c and HybridClock.physical_ms(d) == 1_001_000 and HybridClock.logical(d) == 0
    # merging a remote timestamp from the future
    remote = (1_005_000 << 16) | 7
    e = clock.update(remote)
    assert e > remote and clock.now() > e
    # merging an old remote timestamp still moves forward
    assert clock.update(a) > e
    first = clock.reserve(5)
    assert clock.now() == first + 5
    real = HybridClock()
    stamps = [real.now() for _ in range(10_000)]
    assert all(y > x for x, y in zip(stamps, stamps[1:], strict=False))
    assert stamps[-1] < 2**63


def test_hybrid_clock_is_thread_safe() -> None:
    clock = HybridClock()
    out: list[list[int]] = [[] for _ in range(4)]

    def run(i: int) -> None:
        out[i].extend(clock.now() for _ in range(5000))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [s for chunk in out for s in chunk]
    assert len(set(everything)) == len(everything)


def test_start_chunks_counts_one_attempt_each_in_one_call_and_is_fenced(state):
    job = JobRecord(job_id="job-sc", input_key="input/a.csv", version_id="v1", input_etag="e", pipeline="p",
                    owner_region="r", owner_epoch=1)
    state.create_job(job)
    state.add_chunks("job-sc", [ChunkRecord(job_id="job-sc", idx=i, object_key=f"c{i}", first_row=1 + i * 10,
                                            rows=10) for i in range(4)], epoch=1)
    head = state.feed_head()
    assert state.start_chunks("job-sc", [0, 2, 3], epoch=1) == {0: 1, 2: 1, 3: 1}
    assert state.start_chunks("job-sc", [2], epoch=1) == {2: 2}
    assert [c.attempts for c in state.list_chunks("job-sc")] == [1, 0, 2, 1]
    assert [c.key for c in state.feed_since(head)] == ["job-sc/0", "job-sc/2", "job-sc/3", "job-sc/2"]
    with pytest.raises(FencedOut):
        state.start_chunks("job-sc", [1], epoch=7)
    assert state.list_chunks("job-sc")[1].attempts == 0


def test_stored_versions_follow_fed_puts_and_deletes_and_noted_copies(state: StateStore) -> None:
    assert state.stored_versions(["input/a.csv"]) == {}
    head = state.feed_head()
    state.record_object_change("input/a.csv", {"key": "input/a.csv", "etag": "e", "version_id": "V1", "size": 1,
                                               "content_type": "text/csv", "metadata": {}, "last_modified": 1.0})
    assert state.stored_versions(["input/a.csv", "input/b.csv"]) == {"input/a.csv": "V1"}
    state.note_stored_object("input/b.csv", "V7")  # a replicated copy: known, and not fed
    assert state.stored_versions(["input/a.csv", "input/b.csv"]) == {"input/a.csv": "V1", "input/b.csv": "V7"}
    assert [c.key for c in state.feed_since(head)] == ["input/a.csv"]
    state.record_object_change("input/a.csv", None)
    state.note_stored_object("input/b.csv", None)
    assert state.stored_versions(["input/a.csv", "input/b.csv"]) == {}
    many = [f"k/{i}" for i in range(1200)]  # more keys than one IN list takes
    for k in many[::100]:
        state.note_stored_object(k, "V")
    assert state.stored_versions(many) == {k: "V" for k in many[::100]}
