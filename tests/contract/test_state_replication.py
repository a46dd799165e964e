"""StateStore replication: applying another region's feed (DESIGN §3, §4), run on SQLite and PostgreSQL.

Two stores on separate databases: A (us-east-1) and B (us-west-2). A's feed is shipped to B the way the
replicator does it: object changes filtered out, the rest applied with the checkpoint in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from statekit import complete, make_chunks, make_job, make_rejects

from regionflow.errors import FencedOut
from regionflow.state import (
    Change,
    JobStatus,
    NotificationRecord,
    StateStore,
    open_state_store,
)
from regionflow.state.hlc import LOGICAL_BITS
from regionflow.state.schema import FEED_TABLES, row_versions

EAST, WEST = "us-east-1", "us-west-2"
HOUR = (3_600_000 << LOGICAL_BITS)  # one hour of hlc


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("pgserver", marks=pytest.mark.pgserver)])
def urls(request: pytest.FixtureRequest, tmp_path) -> tuple[str, str]:
    """sqlite: two files; postgresql: two databases on the machine's server; pgserver: on regionflow's own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/a/state.db", f"sqlite:///{tmp_path}/b/state.db"
    fixture = "pgserver_url_factory" if request.param == "pgserver" else "pg_url_factory"
    factory: Callable[[], str] = request.getfixturevalue(fixture)
    return factory(), factory()


@pytest.fixture
def stores(urls: tuple[str, str]) -> Iterator[tuple[StateStore, StateStore]]:
    a = open_state_store(urls[0], EAST)
    b = open_state_store(urls[1], WEST)
    try:
        yield a, b
    finally:
        a.close()
        b.close()










def notification(job_id: str = "job-1", region: str = EAST) -> NotificationRecord:
    return NotificationRecord(job_id=job_id, recipients=["ops@example.com", "b@example.com"], subject="done",
                              link="http://x/y?sig=1", rows_ok=9, rows_rejected=1, region=region,
                              channel="outbox")


def ship(source: StateStore, target: StateStore, since: int | None = None) -> int:
    """Ship source's feed after the target's checkpoint (or since) like the replicator; return how many
    changes the target applied."""
    start = target.get_checkpoint(source.region) if since is None else since
    changes = source.feed_since(start, limit=100_000)
    if not changes:
        return 0
    rows = [c for c in changes if c.table != "objects"]
    return target.apply_changes_and_checkpoint(source.region, rows, changes[-1].seq)


def dump(store: StateStore) -> dict[str, list[dict[str, Any]]]:
    """Every replicated table's rows (and the row versions), in primary-key order."""
    engine = store._engine  # type: ignore[attr-defined]
    out = {}
    with engine.connect() as conn:
        for table in [*FEED_TABLES.values(), row_versions]:
            stmt = select(table).order_by(*table.primary_key.columns)
            out[table.name] = [dict(r._mapping) for r in conn.execute(stmt)]
    return out


def build_history(a: StateStore) -> None:
    """A workload touching every table: jobs through their life, chunks, rejects replaced by a retry, a
    reclaim, two reference loads (the second drops parts), a notification sent, and object changes."""
    a.record_object_change("input/job-1.csv", {"key": "input/job-1.csv", "etag": "e1", "version_id": "V1",
                                               "size": 3, "content_type": "text/csv", "metadata": {},
                                               "last_modified": 1.5})
    a.create_job(make_job("job-1", created_at=100.0))
    a.create_job(make_job("job-2", created_at=200.0))
    a.transition_job("job-1", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT,
                     rows_in=30, chunks_total=3)
    a.add_chunks("job-1", make_chunks("job-1", 3), epoch=1)
    a.start_chunk("job-1", 0, epoch=1)
    complete(a, "job-1", 0, make_rejects("job-1", 0, [2, 4, 7]))
    complete(a, "job-1", 0, make_rejects("job-1", 0, [2, 5], tag="-retry"))  # deletes 4 and 7
    complete(a, "job-1", 1, make_rejects("job-1", 1, [12]))
    a.claim_job("job-2", region=EAST, epoch=3)
    a.load_reference("customers", "id", ["id", "name"], ["id,name\n1,a\n", "id,name\n2,b\n", "id,name\n3,c\n"], 3)
    a.load_reference("customers", "id", ["id", "name"], ["id,name\n9,z\n"], 1)
    a.record_notification(notification("job-1"))
    a.mark_notification_sent("job-1")
    a.record_object_change("input/job-1.csv", None)


# ---------------------------------------------------------------------------------------------- shipping


def test_shipping_the_whole_feed_yields_equal_rows(stores: tuple[StateStore, StateStore]) -> None:
    a, b = stores
    build_history(a)
    feed = a.feed_since(0, limit=100_000)
    state_changes = [c for c in feed if c.table != "objects"]
    assert ship(a, b) == len(state_changes)
    assert b.get_checkpoint(EAST) == a.feed_head() == feed[-1].seq
    assert dump(b) == dump(a)
    # through the public API as well
    assert b.list_jobs() == a.list_jobs()
    assert b.list_chunks("job-1") == a.list_chunks("job-1")
    assert b.list_rejects("job-1") == a.list_rejects("job-1")
    assert [r.row_no for r in b.list_rejects("job-1")] == [2, 5, 12]
    assert b.reference_info("customers") == a.reference_info("customers")
    assert b.reference_parts("customers") == ["id,name\n9,z\n"]
    assert b.list_notifications() == a.list_notifications()
    # applied changes are not re-shipped: B's own feed is still empty
    assert b.feed_head() == 0 and b.feed_since(0) == []


def test_reapplying_is_harmless(stores: tuple[StateStore, StateStore]) -> None:
    a, b = stores
    build_history(a)
    ship(a, b)
    before = dump(b)
    checkpoint = b.get_checkpoint(EAST)
    # the same batch again (as after a crash before the checkpoint moved), and change by change
    again = ship(a, b, since=0)
    assert dump(b) == before
    for c in a.feed_since(0, limit=100_000):
        if c.table != "objects":
            b.apply_change(c)
    assert dump(b) == before
    assert b.get_checkpoint(EAST) == checkpoint and b.feed_head() == 0
    # only the rejects (upserted as they come) count as applied again; every other row is discarded as
    # not newer (reference parts: not newer than their reference table's row)
    assert again == len([c for c in a.feed_since(0, limit=100_000) if c.table == "rejects"])


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5])
def test_shipping_in_small_batches_yields_equal_rows(stores: tuple[StateStore, StateStore], batch: int) -> None:
    """Batch boundaries fall anywhere, also between a reference load's parts and its row."""
    a, b = stores
    b.load_reference("customers", "id", ["id"], [f"id\n{i}\n" for i in range(6)], 6)  # B's older, longer load
    build_history(a)
    a.load_reference("products", "sku", ["sku"], ["sku\nx\n"], 1)  # then a load with more parts, right after
    a.load_reference("products", "sku", ["sku"], [f"sku\n{i}\n" for i in range(4)], 4)
    while changes := a.feed_since(b.get_checkpoint(EAST), limit=batch):
        b.apply_changes_and_checkpoint(EAST, [c for c in changes if c.table != "objects"], changes[-1].seq)
    got, want = dump(b), dump(a)
    assert {t: rows for t, rows in got.items() if t != "row_versions"} == {
        t: rows for t, rows in want.items() if t != "row_versions"}
    assert b.reference_parts("customers") == ["id,name\n9,z\n"]
    assert len(b.reference_parts("products")) == 4


def test_incremental_shipping_matches(stores: tuple[StateStore, StateStore]) -> None:
    a, b = stores
    a.create_job(make_job("job-1"))
    assert ship(a, b) == 1
    a.add_chunks("job-1", make_chunks("job-1", 2), epoch=1)
    complete(a, "job-1", 1, make_rejects("job-1", 1, [11, 13]))
    assert ship(a, b) == 2 + 2 + 1
    assert ship(a, b) == 0
    assert dump(b) == dump(a)


def test_objects_are_not_the_stores_business(stores: tuple[StateStore, StateStore]) -> None:
    a, b = stores
    a.create_job(make_job("job-1"))
    a.record_object_change("input/x.csv", {"key": "input/x.csv"})
    changes = a.feed_since(0)
    with pytest.raises(ValueError, match="object change"):
        b.apply_change(changes[1])
    with pytest.raises(ValueError, match="object change"):
        b.apply_changes_and_checkpoint(EAST, changes, changes[-1].seq)
    # the whole batch was refused: nothing applied, the checkpoint did not move
    assert b.get_job("job-1") is None and b.get_checkpoint(EAST) == 0
    unknown = Change(seq=9, table="colours", key="red", row={"x": 1}, hlc=1, epoch=0, origin=EAST)
    with pytest.raises(ValueError, match="unknown table 'colours'"):
        b.apply_changes([changes[0], unknown])
    assert b.get_job("job-1") is None
    assert b.apply_changes([]) == 0


def test_applying_1000_rejects_is_fast(tmp_path) -> None:
    a = open_state_store(f"sqlite:///{tmp_path}/a.db", EAST)
    b = open_state_store(f"sqlite:///{tmp_path}/b.db", WEST)
    try:
        a.create_job(make_job("job-1"))
        a.add_chunks("job-1", make_chunks("job-1", 1, rows=2000), epoch=1)
        ship(a, b)
        head = a.feed_head()
        complete(a, "job-1", 0, make_rejects("job-1", 0, list(range(1, 1001))), rows=2000)
        changes = a.feed_since(head, limit=10_000)
        assert len(changes) == 1001
        started = time.perf_counter()
        assert b.apply_changes_and_checkpoint(EAST, changes, changes[-1].seq) == 1001
        elapsed = time.perf_counter() - started
        assert b.count_rejects("job-1") == 1000
        assert elapsed < 0.5, f"applying 1,000 rejects took {elapsed:.2f}s"
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------------------------- merge rules


def test_a_lower_epoch_never_overrides_a_job_owned_under_a_higher_one(
        stores: tuple[StateStore, StateStore]) -> None:
    a, b = stores
    a.create_job(make_job("job-1", epoch=1))
    a.add_chunks("job-1", make_chunks("job-1", 2), epoch=1)
    ship(a, b)
    # failover: B claims the job under epoch 2 and works on it
    b.claim_job("job-1", region=WEST, epoch=2)
    b.transition_job("job-1", epoch=2, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT,
                     rows_in=20, chunks_total=2)
    complete(b, "job-1", 0, make_rejects("job-1", 0, [3]), epoch=2)
    b_rows = dump(b)
    # stale A (still epoch 1, clock far ahead so its hlc is higher) keeps writing
    a._clock.update(b.feed_since(0)[-1].hlc + HOUR)  # type: ignore[attr-defined]
    a.transition_job("job-1", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.FAILED,
                     reason="stale")
    a.start_chunk("job-1", 0, epoch=1)
    complete(a, "job-1", 0, make_rejects("job-1", 0, [1, 2]), epoch=1)
    complete(a, "job-1", 1, make_rejects("job-1", 1, [14]), epoch=1)
    stale = [c for c in a.feed_since(b.get_checkpoint(EAST), limit=1000)]
    assert {c.table for c in stale} == {"jobs", "chunks", "rejects"}
    assert all(c.hlc > max(x.hlc for x in b.feed_since(0)) for c in stale)
    assert all(b.apply_change(c) is False for c in stale)
    assert ship(a, b) == 0
    job = b.get_job("job-1")
    assert job is not None and (job.owner_region, job.owner_epoch, job.status) == (WEST, 2, JobStatus.SPLIT)
    assert [r.row_no for r in b.list_rejects("job-1")] == [3]
    assert dump(b) == b_rows
    # the other way, B's writes under epoch 2 (lower hlc) win over A's stale epoch-1 rows on A
    assert ship(b, a) == len(b.feed_since(0))
    assert a.get_job("job-1") == b.get_job("job-1")
    assert a.list_chunks("job-1")[0] == b.list_chunks("job-1")[0]
    # and A, fenced out by the replicated claim, can no longer write the job
    with pytest.raises(FencedOut):
        a.start_chunk("job-1", 1, epoch=1)


def test_last_writer_wins_within_one_epoch(stores: tuple[StateStore, StateStore]) -> None:
    a, b = stores
    a.create_job(make_job("job-1"))
    a.add_chunks("job-1", make_chunks("job-1", 1), epoch=1)
    a.load_reference("t", "k", ["k"], ["k\n1\n"], 1)
    ship(a, b)
    # both write the same rows under epoch 1; A writes later (its clock is ahead)
    b.transition_job("job-1", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT, rows_in=1)
    b.start_chunk("job-1", 0, epoch=1)
    b.load_reference("t", "k", ["k"], ["k\n2\n", "k\n4\n", "k\n5\n"], 3)
    b_head = b.feed_head()
    a._clock.update(b.feed_since(0)[-1].hlc + HOUR)  # type: ignore[attr-defined]
    a_since = a.feed_head()
    a.transition_job("job-1", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT, rows_in=2)
    a.start_chunk("job-1", 0, epoch=1)
    a.start_chunk("job-1", 0, epoch=1)
    a.load_reference("t", "k", ["k", "v"], ["k,v\n3,x\n"], 1)
    # A's later writes win on B; B's earlier ones lose on A: both converge to A's rows
    assert ship(a, b, since=a_since) == 1 + 2 + 1 + 1  # job, 2 chunk writes, reference part and table
    b_feed = b.feed_since(0, limit=1000)
    assert [c.table for c in b_feed] == ["jobs", "chunks"] + ["reference_parts"] * 3 + ["reference_tables"]
    assert len(b_feed) == b_head
    assert [a.apply_change(c) for c in b_feed] == [False] * len(b_feed)  # B's parts lost with their table
    for store in (a, b):
        job = store.get_job("job-1")
        assert job is not None and job.rows_in == 2
        assert store.list_chunks("job-1")[0].attempts == 2
        info = store.reference_info("t")
        assert info is not None and info.columns == ["k", "v"] and info.parts == 1
        # B's own load had 3 parts: the winning load's row leaves only its single part
        assert store.reference_parts("t") == ["k,v\n3,x\n"]


def test_a_sent_notification_stays_sent(stores: tuple[StateStore, StateStore]) -> None:
    a, b = stores
    a.record_notification(notification("job-1"))
    a.mark_notification_sent("job-1")
    ship(a, b)
    sent = b.get_notification("job-1")
    assert sent is not None and sent.status == "sent"
    sending_row = dict(a.feed_since(0)[0].row or {})
    assert sending_row["status"] == "sending"
    late = Change(seq=99, table="notifications", key="job-1", row=sending_row, hlc=b._clock.now() + HOUR,  # type: ignore[attr-defined]
                  epoch=0, origin=EAST)
    assert b.apply_change(late) is False
    assert b.get_notification("job-1") == sent
    # and a delivery recorded elsewhere wins over a local 'sending', whatever the hlc
    b.record_notification(notification("job-2", region=WEST))
    a.record_notification(notification("job-2"))
    a.mark_notification_sent("job-2")
    delivered = a.feed_since(0)[-1]
    assert delivered.row is not None and delivered.row["status"] == "sent"
    assert b.apply_change(Change(**{**delivered.__dict__, "hlc": 1})) is True
    got = b.get_notification("job-2")
    assert got is not None and got.status == "sent"


def test_local_writes_order_after_applied_changes(stores: tuple[StateStore, StateStore],
                                                  urls: tuple[str, str]) -> None:
    a, b = stores
    a._clock.update(a._clock.now() + HOUR)  # type: ignore[attr-defined]  # A's clock runs an hour ahead
    a.create_job(make_job("job-1"))
    a.create_job(make_job("job-2"))
    ship(a, b)
    applied = max(c.hlc for c in a.feed_since(0))
    # another process on B's database (its clock never saw A's, B's feed is empty) writing an applied row
    # still orders after the applied write
    other = open_state_store(urls[1], WEST)
    try:
        other.claim_job("job-2", region=WEST, epoch=1)
        mine = other.feed_since(0)[-1]
        assert (mine.table, mine.key) == ("jobs", "job-2") and mine.hlc > applied
    finally:
        other.close()
    b.create_job(make_job("job-3", region=WEST))
    assert b.feed_since(0)[-1].hlc > applied
    # so B's write of job-2 wins on A (same epoch, higher hlc)
    assert ship(b, a) == 2
    job = a.get_job("job-2")
    assert job is not None and job.owner_region == WEST


# ---------------------------------------------------------------------------------------------- links


def test_checkpoint_only_moves_forward(stores: tuple[StateStore, StateStore]) -> None:
    _, b = stores
    assert b.get_checkpoint(EAST) == 0
    assert b.replication_link(EAST) == {"source": EAST, "seq": 0, "paused": False, "applied_at": None,
                                        "updated_at": None}
    before = time.time()
    b.set_checkpoint(EAST, 5)
    assert b.get_checkpoint(EAST) == 5
    b.set_checkpoint(EAST, 3)
    assert b.get_checkpoint(EAST) == 5
    assert b.apply_changes_and_checkpoint(EAST, [], 4) == 0
    assert b.get_checkpoint(EAST) == 5
    b.apply_changes_and_checkpoint(EAST, [], 8)
    link = b.replication_link(EAST)
    assert link["seq"] == 8 and link["paused"] is False
    assert link["applied_at"] is not None and link["applied_at"] >= before
    assert b.get_checkpoint("eu-west-1") == 0  # per source
    b.set_checkpoint("eu-west-1", 2)
    assert (b.get_checkpoint(EAST), b.get_checkpoint("eu-west-1")) == (8, 2)


def test_pause_flag_roundtrip(stores: tuple[StateStore, StateStore]) -> None:
    _, b = stores
    assert b.is_paused(EAST) is False
    b.set_paused(EAST, True)
    assert b.is_paused(EAST) is True and b.is_paused("eu-west-1") is False
    link = b.replication_link(EAST)
    assert link["seq"] == 0 and link["paused"] is True and link["applied_at"] is None
    b.set_checkpoint(EAST, 7)
    assert b.is_paused(EAST) is True  # advancing keeps the pause
    b.set_paused(EAST, False)
    assert b.is_paused(EAST) is False and b.get_checkpoint(EAST) == 7  # pausing keeps the checkpoint


# ---------------------------------------------------------------------------------------------- feed


def test_record_object_change_enters_the_feed(stores: tuple[StateStore, StateStore]) -> None:
    a, _ = stores
    info = {"key": "input/f.csv", "etag": "ab" * 32, "version_id": "01HX", "size": 12, "content_type": "text/csv",
            "metadata": {"owner": "ops", "note": "ünïcode"}, "last_modified": 1700000000.25}
    a.record_object_change("input/f.csv", info)
    a.create_job(make_job("job-1"))
    a.record_object_change("input/f.csv", None, epoch=4)
    feed = a.feed_since(0)
    assert [(c.table, c.key) for c in feed] == [("objects", "input/f.csv"), ("jobs", "job-1"),
                                                ("objects", "input/f.csv")]
    assert feed[0].row == info and feed[0].epoch == 0 and feed[0].origin == EAST
    assert feed[2].row is None and feed[2].epoch == 4
    assert feed[0].hlc < feed[1].hlc < feed[2].hlc


def test_feed_stats(stores: tuple[StateStore, StateStore]) -> None:
    a, _ = stores
    empty = {"head": 0, "objects": {"count": 0, "oldest": None}, "state": {"count": 0, "oldest": None}}
    assert a.feed_stats(0) == empty
    a.record_object_change("input/a.csv", {"key": "input/a.csv"})
    a.create_job(make_job("job-1"))
    a.add_chunks("job-1", make_chunks("job-1", 2), epoch=1)
    a.record_object_change("input/b.csv", {"key": "input/b.csv"})
    a.record_object_change("input/a.csv", None)
    feed = a.feed_since(0)
    head = feed[-1].seq
    stats = a.feed_stats(0)
    assert stats == {"head": head, "objects": {"count": 3, "oldest": feed[0].created_at},
                     "state": {"count": 3, "oldest": feed[1].created_at}}
    stats = a.feed_stats(feed[1].seq)
    assert stats == {"head": head, "objects": {"count": 2, "oldest": feed[4].created_at},
                     "state": {"count": 2, "oldest": feed[2].created_at}}
    assert a.feed_stats(head) == {**empty, "head": head}


def test_list_jobs_unfinished(stores: tuple[StateStore, StateStore]) -> None:
    a, _ = stores
    for i, created in enumerate([300.0, 100.0, 200.0, 400.0]):
        a.create_job(make_job(f"job-{i}", created_at=created))
    a.transition_job("job-1", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.FAILED)
    a.transition_job("job-2", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.SPLIT)
    a.transition_job("job-3", epoch=1, from_status=JobStatus.INITIALIZED, to_status=JobStatus.COMPLETED)
    assert [j.job_id for j in a.list_jobs_unfinished()] == ["job-2", "job-0"]
