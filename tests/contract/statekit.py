"""Records the StateStore suites build their cases from (the contract and the replication suites)."""

from __future__ import annotations

from typing import Any

from regionflow.state import ChunkRecord, JobRecord, RejectRecord, StateStore

EAST = "us-east-1"


def make_job(job_id: str = "job-1", *, epoch: int = 1, region: str = EAST, created_at: float = 0.0,
             **fields: Any) -> JobRecord:
    return JobRecord(job_id=job_id, input_key=f"input/{job_id}.csv", version_id="v1", input_etag="etag-in",
                     pipeline="default", owner_region=region, owner_epoch=epoch, created_at=created_at, **fields)


def make_chunks(job_id: str, n: int, rows: int = 10) -> list[ChunkRecord]:
    return [ChunkRecord(job_id=job_id, idx=i, object_key=f"work/{job_id}/chunks/{i}", first_row=1 + i * rows,
                        rows=rows) for i in range(n)]


def make_rejects(job_id: str, chunk_idx: int, row_nos: list[int], tag: str = "") -> list[RejectRecord]:
    return [RejectRecord(job_id=job_id, row_no=n, chunk_idx=chunk_idx, raw=f"a,b,{n}{tag}",
                         reason=f"bad amount{tag}") for n in row_nos]


def complete(state: StateStore, job_id: str, idx: int, rejects: list[RejectRecord], *, epoch: int = 1,
             rows: int = 10) -> None:
    """Complete chunk idx with the given rejects (the rest of its rows ok)."""
    state.complete_chunk(job_id, idx, epoch=epoch, out_key=f"work/{job_id}/out/{idx}", out_etag=f"etag-{idx}",
                         rows_ok=rows - len(rejects), rows_rejected=len(rejects), rejects=rejects)
