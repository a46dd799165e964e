"""JobsMixin: jobs, their chunks and rejects, each write fenced by the job's owner epoch.

Writes in a job's lifecycle are fenced by epoch with conditional UPDATEs on the job row. Chunk writes
fence with a no-op update of the job row (``owner_epoch = owner_epoch WHERE owner_epoch = :epoch``): it
changes nothing, so it adds no feed row, but it locks the row until commit, so a concurrent claim under a
higher epoch cannot interleave with the chunk write.
"""

from __future__ import annotations

import time
from dataclasses import fields as dc_fields
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update

from regionflow.errors import FencedOut, RegionflowError
from regionflow.state.base import TERMINAL_STATUSES, ChunkRecord, ChunkStatus, JobRecord, JobStatus, RejectRecord
from regionflow.state.core import FeedEntry, StoreCore, change_entry, deletion_entry
from regionflow.state.records import mark_sent
from regionflow.state.schema import chunks as chunks_table  # add_chunks' `chunks` parameter shadows it
from regionflow.state.schema import jobs
from regionflow.state.schema import rejects as rejects_table  # so does complete_chunk's `rejects`
from regionflow.state.sql import bulk_insert, bulk_insert_dicts, fetch_row, insert_if_absent

_REJECT_COLUMNS = ("job_id", "row_no", "chunk_idx", "raw", "reason")

_JOB_COLUMNS = frozenset(f.name for f in dc_fields(JobRecord))
# Columns transition_job never sets from **fields: identity, ownership, and what it sets itself.
_PROTECTED_JOB_COLUMNS = frozenset(
    {"job_id", "status", "owner_region", "owner_epoch", "created_at", "updated_at"}
)


_GET_JOB = select(jobs).where(jobs.c.job_id == bindparam("job_id"))  # built once: the orchestrator reads it per step


def _job(row: Any) -> JobRecord:
    return JobRecord(**row._mapping)


def _chunk(row: Any) -> ChunkRecord:
    return ChunkRecord(**row._mapping)


def _fenced(conn: Connection, job_id: str, epoch: int, action: str,
            from_status: tuple[str, ...] | None = None) -> FencedOut:
    """Explain why a fenced write matched no row."""
    job = fetch_row(conn, jobs, job_id=job_id)
    if job is None:
        why = f"job {job_id} does not exist"
    elif job["owner_epoch"] != epoch:
        why = (f"job {job_id} is owned by {job['owner_region'] or '?'} under epoch {job['owner_epoch']}, "
               f"not epoch {epoch}")
    elif from_status is not None and job["status"] not in from_status:
        why = f"job {job_id} is {job['status']}, not {' or '.join(from_status)}"
    else:
        why = f"job {job_id} changed concurrently"
    return FencedOut(f"cannot {action}: {why}")


def _fence(conn: Connection, job_id: str, epoch: int, action: str) -> None:
    """Lock the job row until commit if it is owned under epoch; else raise FencedOut."""
    res = conn.execute(
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.owner_epoch == epoch)
        .values(owner_epoch=jobs.c.owner_epoch)
    )
    if res.rowcount == 0:
        raise _fenced(conn, job_id, epoch, action)


def _transition(conn: Connection, job_id: str, epoch: int, froms: tuple[str, ...],
                values: dict[str, Any]) -> dict[str, Any]:
    """In conn's write transaction: set values (a status among them) on the job if it is owned under epoch
    and in one of froms, else raise FencedOut; the job's row as updated."""
    res = conn.execute(
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.owner_epoch == epoch, jobs.c.status.in_(froms))
        .values(**values)
    )
    if res.rowcount == 0:
        raise _fenced(conn, job_id, epoch, f"move job {job_id} to {values['status']}", froms)
    row = fetch_row(conn, jobs, job_id=job_id)
    assert row is not None
    return row


def _check_chunks_of(job_id: str, chunks: list[ChunkRecord]) -> None:
    for c in chunks:
        if c.job_id != job_id:
            raise ValueError(f"add_chunks for job {job_id} got a chunk of job {c.job_id}")


def _insert_chunks(conn: Connection, job_id: str, chunks: list[ChunkRecord], epoch: int) -> list[FeedEntry]:
    """In conn's write transaction: insert the chunks the job does not have yet; their feed entries."""
    present = set(conn.execute(select(chunks_table.c.idx).where(chunks_table.c.job_id == job_id)).scalars())
    new: list[dict[str, Any]] = []
    for c in chunks:
        if c.idx in present:
            continue
        present.add(c.idx)
        values = {f.name: getattr(c, f.name) for f in dc_fields(ChunkRecord)}
        values["status"] = str(values["status"])
        new.append(values)
    bulk_insert_dicts(conn, chunks_table, new)
    return [change_entry(chunks_table, v, epoch) for v in new]


class JobsMixin(StoreCore):
    """The jobs, chunks and rejects part of the StateStore."""

    # ------------------------------------------------------------------ jobs

    def create_job(self, job: JobRecord) -> bool:
        """Insert the job unless one with its id exists; True when inserted."""
        values = {f.name: getattr(job, f.name) for f in dc_fields(JobRecord)}
        values["status"] = str(values["status"])
        values["created_at"] = values["created_at"] or time.time()
        values["updated_at"] = values["updated_at"] or values["created_at"]
        with self._write() as conn:
            if not insert_if_absent(conn, jobs, values):
                return False
            self._append_feed(conn, [change_entry(jobs, values, values["owner_epoch"])])
        return True

    def get_job(self, job_id: str) -> JobRecord | None:
        """The job, or None."""
        with self._read() as conn:
            row = conn.execute(_GET_JOB, {"job_id": job_id}).first()
        return _job(row) if row is not None else None

    def list_jobs(self, status: str | None = None, limit: int | None = None,
                  input_key: str | None = None, input_prefix: str | None = None) -> list[JobRecord]:
        """Jobs, newest first, optionally only those in one status, of one input key and/or of input keys
        that start with input_prefix."""
        stmt = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc())
        if status is not None:
            stmt = stmt.where(jobs.c.status == str(status))
        if input_key is not None:
            stmt = stmt.where(jobs.c.input_key == input_key)
        if input_prefix:
            stmt = stmt.where(jobs.c.input_key.startswith(input_prefix, autoescape=True))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return [_job(r) for r in conn.execute(stmt)]

    def list_jobs_unfinished(self) -> list[JobRecord]:
        """Jobs not in a terminal status, oldest first."""
        stmt = (select(jobs).where(jobs.c.status.not_in([str(s) for s in sorted(TERMINAL_STATUSES)]))
                .order_by(jobs.c.created_at, jobs.c.job_id))
        with self._read() as conn:
            return [_job(r) for r in conn.execute(stmt)]

    def transition_job(
        self, job_id: str, *, epoch: int, from_status: str | tuple[str, ...], to_status: str, **fields: Any
    ) -> JobRecord:
        """Move the job from one of from_status to to_status and set fields, fenced by epoch."""
        froms = (str(from_status),) if isinstance(from_status, str) else tuple(str(s) for s in from_status)
        unknown = sorted(set(fields) - _JOB_COLUMNS)
        protected = sorted(set(fields) & _PROTECTED_JOB_COLUMNS)
        if unknown or protected:
            raise ValueError(f"transition_job cannot set {unknown + protected} (not settable job fields)")
        values = {**fields, "status": str(to_status), "updated_at": time.time()}
        with self._write() as conn:
            row = _transition(conn, job_id, epoch, froms, values)
            self._append_feed(conn, [change_entry(jobs, row, epoch)])
        return JobRecord(**row)

    def mark_notified(self, job_id: str, *, epoch: int) -> JobRecord:
        """Mark the job's notification sent and move the job from MERGED to NOTIFIED, in one transaction
        fenced by epoch (a fenced job keeps its notification unmarked). Returns the updated job."""
        values = {"status": str(JobStatus.NOTIFIED), "updated_at": time.time()}
        with self._write() as conn:
            feed = mark_sent(conn, job_id)
            row = _transition(conn, job_id, epoch, (str(JobStatus.MERGED),), values)
            self._append_feed(conn, [*feed, change_entry(jobs, row, epoch)])
        return JobRecord(**row)

    def claim_job(self, job_id: str, *, region: str, epoch: int) -> JobRecord:
        """Take ownership of the job for region under epoch (never from a higher epoch)."""
        with self._write() as conn:
            res = conn.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.owner_epoch <= epoch)
                .values(owner_region=region, owner_epoch=epoch, updated_at=time.time())
            )
            if res.rowcount == 0:
                job = fetch_row(conn, jobs, job_id=job_id)
                why = (f"job {job_id} does not exist" if job is None else
                       f"job {job_id} is owned by {job['owner_region'] or '?'} under higher epoch "
                       f"{job['owner_epoch']}")
                raise FencedOut(f"cannot claim job {job_id} for {region} under epoch {epoch}: {why}")
            row = fetch_row(conn, jobs, job_id=job_id)
            assert row is not None
            self._append_feed(conn, [change_entry(jobs, row, epoch)])
        return JobRecord(**row)

    # ------------------------------------------------------------------ chunks

    def add_chunks(self, job_id: str, chunks: list[ChunkRecord], *, epoch: int) -> None:
        """Add the job's chunks that are not there yet, fenced by epoch."""
        _check_chunks_of(job_id, chunks)
        with self._write() as conn:
            _fence(conn, job_id, epoch, f"add chunks to job {job_id}")
            self._append_feed(conn, _insert_chunks(conn, job_id, chunks, epoch))

    def record_split(self, job_id: str, chunks: list[ChunkRecord], *, epoch: int, rows_in: int) -> JobRecord:
        """add_chunks and the job's move from INITIALIZED to SPLIT (with rows_in and chunks_total), in one
        transaction fenced by epoch. Returns the updated job."""
        _check_chunks_of(job_id, chunks)
        values = {"status": str(JobStatus.SPLIT), "updated_at": time.time(), "rows_in": rows_in,
                  "chunks_total": len(chunks)}
        with self._write() as conn:
            row = _transition(conn, job_id, epoch, (str(JobStatus.INITIALIZED),), values)
            # the chunks before the job in the feed, as when they were two writes
            self._append_feed(conn, [*_insert_chunks(conn, job_id, chunks, epoch), change_entry(jobs, row, epoch)])
        return JobRecord(**row)

    def list_chunks(self, job_id: str) -> list[ChunkRecord]:
        """The job's chunks in index order."""
        stmt = select(chunks_table).where(chunks_table.c.job_id == job_id).order_by(chunks_table.c.idx)
        with self._read() as conn:
            return [_chunk(r) for r in conn.execute(stmt)]

    def start_chunk(self, job_id: str, idx: int, *, epoch: int) -> int:
        """Count an attempt at the chunk, fenced by epoch; return its attempts so far."""
        with self._write() as conn:
            _fence(conn, job_id, epoch, f"start chunk {idx} of job {job_id}")
            res = conn.execute(
                update(chunks_table)
                .where(chunks_table.c.job_id == job_id, chunks_table.c.idx == idx)
                .values(attempts=chunks_table.c.attempts + 1)
            )
            if res.rowcount == 0:
                raise RegionflowError(f"cannot start chunk {idx} of job {job_id}: no such chunk")
            row = fetch_row(conn, chunks_table, job_id=job_id, idx=idx)
            assert row is not None
            self._append_feed(conn, [change_entry(chunks_table, row, epoch)])
        return row["attempts"]

    def start_chunks(self, job_id: str, idxs: list[int], *, epoch: int) -> dict[int, int]:
        """start_chunk for several chunks in one transaction; {idx: attempts}."""
        if not idxs:
            return {}
        with self._write() as conn:
            _fence(conn, job_id, epoch, f"start {len(idxs)} chunk(s) of job {job_id}")
            c = chunks_table.c
            conn.execute(update(chunks_table).where(c.job_id == job_id, c.idx == bindparam("i"))
                         .values(attempts=c.attempts + 1), [{"i": i} for i in idxs])
            rows = [dict(r._mapping) for r in conn.execute(
                select(chunks_table).where(c.job_id == job_id, c.idx.in_(idxs)).order_by(c.idx))]
            if len(rows) != len(set(idxs)):
                missing = sorted(set(idxs) - {r["idx"] for r in rows})
                raise RegionflowError(f"cannot start chunks {missing[:5]} of job {job_id}: no such chunk")
            self._append_feed(conn, [change_entry(chunks_table, r, epoch) for r in rows])
        return {r["idx"]: r["attempts"] for r in rows}

    def complete_chunk(
        self,
        job_id: str,
        idx: int,
        *,
        epoch: int,
        out_key: str,
        out_etag: str,
        rows_ok: int,
        rows_rejected: int,
        rejects: list[RejectRecord],
    ) -> None:
        """Mark the chunk done with its output and replace its rejects, fenced by epoch."""
        rows: list[tuple[str, int, int, str, str]] = []
        for r in rejects:
            if r.job_id != job_id or r.chunk_idx != idx:
                raise ValueError(f"complete_chunk for job {job_id} chunk {idx} got a reject of job "
                                 f"{r.job_id} chunk {r.chunk_idx}")
            rows.append((job_id, int(r.row_no), idx, r.raw, r.reason))
        table = rejects_table
        with self._write() as conn:
            _fence(conn, job_id, epoch, f"complete chunk {idx} of job {job_id}")
            of_chunk = (table.c.job_id == job_id, table.c.chunk_idx == idx)
            previous = set(conn.execute(select(table.c.row_no).where(*of_chunk)).scalars())
            if previous:
                conn.execute(delete(table).where(*of_chunk))
            bulk_insert(conn, table, _REJECT_COLUMNS, rows)
            res = conn.execute(
                update(chunks_table)
                .where(chunks_table.c.job_id == job_id, chunks_table.c.idx == idx)
                .values(status=str(ChunkStatus.DONE), out_key=out_key, out_etag=out_etag, rows_ok=rows_ok,
                        rows_rejected=rows_rejected)
            )
            if res.rowcount == 0:
                raise RegionflowError(f"cannot complete chunk {idx} of job {job_id}: no such chunk")
            chunk_row = fetch_row(conn, chunks_table, job_id=job_id, idx=idx)
            assert chunk_row is not None
            previous.difference_update(row[1] for row in rows)
            feed = [deletion_entry(table, f"{job_id}/{row_no}", epoch) for row_no in sorted(previous)]
            # Reject row images are built by hand: the same JSON as dumps gives, several times faster.
            head = f'{{"job_id":{encode_basestring(job_id)},"row_no":'
            mid = f',"chunk_idx":{int(idx)},"raw":'
            feed.extend(
                ("rejects", f"{job_id}/{row_no}",
                 f'{head}{row_no}{mid}{encode_basestring(raw)},"reason":{encode_basestring(reason)}}}', epoch)
                for _, row_no, _, raw, reason in rows
            )
            feed.append(change_entry(chunks_table, chunk_row, epoch))
            self._append_feed(conn, feed)

    # ------------------------------------------------------------------ rejects

    def list_rejects(self, job_id: str, limit: int | None = None, offset: int = 0) -> list[RejectRecord]:
        """The job's rejects in row order, optionally one page of them."""
        table = rejects_table
        stmt = select(table).where(table.c.job_id == job_id).order_by(table.c.row_no)
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        with self._read() as conn:
            return [RejectRecord(**r._mapping) for r in conn.execute(stmt)]

    def count_rejects(self, job_id: str) -> int:
        """How many rejects the job has."""
        stmt = select(func.count()).select_from(rejects_table).where(rejects_table.c.job_id == job_id)
        with self._read() as conn:
            return conn.execute(stmt).scalar_one()
